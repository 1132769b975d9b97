//! The RSNA Intracranial Aneurysm Detection dataset layout:
//! `series/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`, `train.csv`,
//! `train_localizers.csv`, and for some series the vessel segmentations
//! `segmentations/<SeriesInstanceUID>/<SeriesInstanceUID>_cowseg.nii`
//! (labels: [`VESSEL_LABELS`]) next to `<SeriesInstanceUID>.nii` (the
//! series as NIfTI).
//!
//! [`RsnaDataset::open`] reads the two CSVs and lists the series folders
//! (following symbolic links). Problems with single rows or series are
//! collected as [`DatasetIssue`]s; they never abort the whole dataset, and
//! none is dropped without a word: each series the input names (a folder,
//! a `train.csv` row, a localizer) is either one of
//! [`RsnaDataset::series_uids`] or a [`Rejection`] with its reason.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::dicom::{DicomSeries, ReadOptions, SeriesMeta};
use crate::geometry::{Voxel, WorldPoint};
use crate::{Error, Result};

/// The 13 RSNA aneurysm locations, in the column order of `train.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Location {
    LeftInfraclinoidIca,
    RightInfraclinoidIca,
    LeftSupraclinoidIca,
    RightSupraclinoidIca,
    LeftMca,
    RightMca,
    AcomA,
    LeftAca,
    RightAca,
    LeftPcomA,
    RightPcomA,
    BasilarTip,
    OtherPosterior,
}

impl Location {
    /// All 13 locations in `train.csv` column order.
    pub const ALL: [Location; 13] = [
        Location::LeftInfraclinoidIca,
        Location::RightInfraclinoidIca,
        Location::LeftSupraclinoidIca,
        Location::RightSupraclinoidIca,
        Location::LeftMca,
        Location::RightMca,
        Location::AcomA,
        Location::LeftAca,
        Location::RightAca,
        Location::LeftPcomA,
        Location::RightPcomA,
        Location::BasilarTip,
        Location::OtherPosterior,
    ];

    /// The exact RSNA column name.
    pub fn name(self) -> &'static str {
        match self {
            Location::LeftInfraclinoidIca => "Left Infraclinoid Internal Carotid Artery",
            Location::RightInfraclinoidIca => "Right Infraclinoid Internal Carotid Artery",
            Location::LeftSupraclinoidIca => "Left Supraclinoid Internal Carotid Artery",
            Location::RightSupraclinoidIca => "Right Supraclinoid Internal Carotid Artery",
            Location::LeftMca => "Left Middle Cerebral Artery",
            Location::RightMca => "Right Middle Cerebral Artery",
            Location::AcomA => "Anterior Communicating Artery",
            Location::LeftAca => "Left Anterior Cerebral Artery",
            Location::RightAca => "Right Anterior Cerebral Artery",
            Location::LeftPcomA => "Left Posterior Communicating Artery",
            Location::RightPcomA => "Right Posterior Communicating Artery",
            Location::BasilarTip => "Basilar Tip",
            Location::OtherPosterior => "Other Posterior Circulation",
        }
    }

    /// The column index (0..13).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The value of this location's artery in the RSNA vessel
    /// segmentations (`*_cowseg.nii`, [`VESSEL_LABELS`]): 1 to 13, in an
    /// order of its own (not the column order).
    ///
    /// ```
    /// use aneu_io::Location;
    /// assert_eq!(Location::OtherPosterior.vessel_label(), 1);
    /// assert_eq!(Location::AcomA.vessel_label(), 13);
    /// for l in Location::ALL {
    ///     assert_eq!(Location::from_vessel_label(l.vessel_label()), Some(l));
    /// }
    /// ```
    pub fn vessel_label(self) -> u8 {
        // the table is the one source; every location's name is in it
        VESSEL_LABELS
            .iter()
            .find(|(_, name)| *name == self.name())
            .map_or(0, |(label, _)| *label)
    }

    /// The location whose artery has vessel label `label` (1 to 13);
    /// `None` for background (0) and any other value.
    pub fn from_vessel_label(label: u8) -> Option<Location> {
        Location::ALL.into_iter().find(|l| l.vessel_label() == label)
    }

    /// The same site on the other side: left ↔ right, midline sites
    /// (AComA, basilar tip, other posterior) unchanged. This is what a
    /// left-right flip of the image does to a label.
    ///
    /// ```
    /// use aneu_io::Location;
    /// assert_eq!(Location::LeftMca.mirrored(), Location::RightMca);
    /// assert_eq!(Location::AcomA.mirrored(), Location::AcomA);
    /// ```
    pub fn mirrored(self) -> Location {
        use Location::*;
        match self {
            LeftInfraclinoidIca => RightInfraclinoidIca,
            RightInfraclinoidIca => LeftInfraclinoidIca,
            LeftSupraclinoidIca => RightSupraclinoidIca,
            RightSupraclinoidIca => LeftSupraclinoidIca,
            LeftMca => RightMca,
            RightMca => LeftMca,
            LeftAca => RightAca,
            RightAca => LeftAca,
            LeftPcomA => RightPcomA,
            RightPcomA => LeftPcomA,
            AcomA | BasilarTip | OtherPosterior => self,
        }
    }
}

impl Location {
    /// Whether the location has a left and a right artery (ICA, MCA, ACA,
    /// PComm); the AComm, the basilar tip and "Other Posterior
    /// Circulation" are midline (their own mirror).
    pub fn is_lateral(self) -> bool {
        self.mirrored() != self
    }

    /// This location's artery on the patient's right (`right`) or left
    /// side: itself or its mirror for a lateral location; a midline one
    /// unchanged.
    ///
    /// ```
    /// use aneu_io::Location;
    /// assert_eq!(Location::LeftMca.on_side(true), Location::RightMca);
    /// assert_eq!(Location::LeftMca.on_side(false), Location::LeftMca);
    /// assert_eq!(Location::RightPcomA.on_side(false), Location::LeftPcomA);
    /// assert_eq!(Location::AcomA.on_side(true), Location::AcomA);
    /// ```
    pub fn on_side(self, right: bool) -> Location {
        use Location::*;
        let is_right = matches!(
            self,
            RightInfraclinoidIca | RightSupraclinoidIca | RightMca | RightAca | RightPcomA
        );
        if self.is_lateral() && is_right != right {
            self.mirrored()
        } else {
            self
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Location {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        Location::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| format!("unknown location {s:?}"))
    }
}

/// The label table of the RSNA vessel segmentations
/// (`segmentations/<uid>/<uid>_cowseg.nii`): value, artery. 0 is
/// background. The names are the `train.csv` columns of the locations
/// (see [`Location::vessel_label`]).
pub const VESSEL_LABELS: [(u8, &str); 13] = [
    (1, "Other Posterior Circulation"),
    (2, "Basilar Tip"),
    (3, "Right Posterior Communicating Artery"),
    (4, "Left Posterior Communicating Artery"),
    (5, "Right Infraclinoid Internal Carotid Artery"),
    (6, "Left Infraclinoid Internal Carotid Artery"),
    (7, "Right Supraclinoid Internal Carotid Artery"),
    (8, "Left Supraclinoid Internal Carotid Artery"),
    (9, "Right Middle Cerebral Artery"),
    (10, "Left Middle Cerebral Artery"),
    (11, "Right Anterior Cerebral Artery"),
    (12, "Left Anterior Cerebral Artery"),
    (13, "Anterior Communicating Artery"),
];

/// The largest vessel label of [`VESSEL_LABELS`].
pub const MAX_VESSEL_LABEL: u8 = 13;

/// The files of one series' vessel segmentation, as
/// [`RsnaDataset::open`] found them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentationFiles {
    /// `<uid>_cowseg.nii` (or `.nii.gz`): the label map.
    pub labels: PathBuf,
    /// `<uid>.nii` (or `.nii.gz`): the series as NIfTI, when present.
    pub image: Option<PathBuf>,
}

/// Reads a vessel label map (`*_cowseg.nii`) in its own geometry.
///
/// # Errors
/// The NIfTI errors of [`crate::read_nifti`], and
/// [`Error::InvalidLabels`] (naming the file, the value and its voxel)
/// when a voxel is not an integer in 0..=[`MAX_VESSEL_LABEL`].
pub fn read_vessel_labels(path: impl AsRef<Path>) -> Result<crate::Volume<u8>> {
    let path = path.as_ref();
    let v = crate::read_nifti(path)?;
    if let Some((at, value)) = v
        .as_slice()
        .iter()
        .enumerate()
        .find(|(_, x)| !(x.fract() == 0.0 && (0.0..=f32::from(MAX_VESSEL_LABEL)).contains(*x)))
    {
        let [ni, nj, _] = v.size().to_ijk();
        return Err(Error::InvalidLabels {
            path: path.to_path_buf(),
            reason: format!(
                "value {value} at voxel (i, j, k) = ({}, {}, {}) is not a label 0..={MAX_VESSEL_LABEL}",
                at % ni,
                (at / ni) % nj,
                at / (ni * nj)
            ),
        });
    }
    Ok(v.map(|x| *x as u8))
}

/// The name of the 14th label column.
pub const ANEURYSM_PRESENT: &str = "Aneurysm Present";

/// The RSNA modality classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Modality {
    /// CT angiography.
    Cta,
    /// Time-of-flight MR angiography.
    Mra,
    /// T2-weighted MRI.
    MriT2,
    /// T1-weighted MRI after contrast.
    MriT1post,
}

impl Modality {
    /// The four classes, in the order of their weights wherever aneu takes
    /// one weight per modality (CTA, MRA, MRI T2, MRI T1post).
    pub const ALL: [Modality; 4] = [Modality::Cta, Modality::Mra, Modality::MriT2, Modality::MriT1post];

    /// The exact `train.csv` value.
    pub fn name(self) -> &'static str {
        match self {
            Modality::Cta => "CTA",
            Modality::Mra => "MRA",
            Modality::MriT2 => "MRI T2",
            Modality::MriT1post => "MRI T1post",
        }
    }

    /// The DICOM Modality attribute value (`CT` or `MR`).
    pub fn dicom_modality(self) -> &'static str {
        match self {
            Modality::Cta => "CT",
            _ => "MR",
        }
    }
}

impl Modality {
    /// The modality class of a series from its DICOM attributes, for a
    /// series without a `train.csv` row: `CT` is CTA; for `MR` the series
    /// description decides (T2, T1, else TOF-MRA).
    ///
    /// ```
    /// use aneu_io::{Modality, SeriesMeta};
    /// let mut m = SeriesMeta { modality: "MR".into(), series_description: "Ax T2 FLAIR".into(), ..Default::default() };
    /// assert_eq!(Modality::guess(&m), Modality::MriT2);
    /// m.series_description = "TOF 3D multi-slab".into();
    /// assert_eq!(Modality::guess(&m), Modality::Mra);
    /// ```
    pub fn guess(meta: &SeriesMeta) -> Modality {
        if meta.modality.trim().eq_ignore_ascii_case("CT") {
            return Modality::Cta;
        }
        let d = meta.series_description.to_ascii_uppercase();
        if d.contains("MRA") || d.contains("TOF") || d.contains("ANGIO") {
            Modality::Mra
        } else if d.contains("T2") {
            Modality::MriT2
        } else if d.contains("T1") {
            Modality::MriT1post
        } else {
            Modality::Mra
        }
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Modality {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "CTA" => Ok(Modality::Cta),
            "MRA" => Ok(Modality::Mra),
            "MRI T2" => Ok(Modality::MriT2),
            "MRI T1post" => Ok(Modality::MriT1post),
            o => Err(format!("unknown modality {o:?}")),
        }
    }
}

/// One row of `train.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesLabels {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// PatientAge in years, if given.
    pub patient_age: Option<u32>,
    /// PatientSex as written (`Male`, `Female`), if given.
    pub patient_sex: Option<String>,
    /// Modality class.
    pub modality: Modality,
    /// The 13 location labels, indexed by [`Location::index`].
    pub locations: [bool; 13],
    /// `Aneurysm Present`.
    pub aneurysm_present: bool,
}

impl SeriesLabels {
    /// The label of one location.
    pub fn has(&self, l: Location) -> bool {
        self.locations[l.index()]
    }
}

/// One row of `train_localizers.csv`: a point on one instance (and frame).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Localizer {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// SOPInstanceUID of the annotated instance.
    pub sop_uid: String,
    /// Column (pixel x; pixel centres at integers).
    pub x: f64,
    /// Row (pixel y).
    pub y: f64,
    /// 0-based frame inside a multi-frame instance (`'f'`).
    pub frame: Option<u32>,
    /// The location label.
    pub location: Location,
}

impl Localizer {
    /// The `coordinates` string in the RSNA (Python dict) form.
    pub fn coordinates_string(&self) -> String {
        match self.frame {
            Some(f) => format!("{{'x': {}, 'y': {}, 'f': {f}}}", self.x, self.y),
            None => format!("{{'x': {}, 'y': {}}}", self.x, self.y),
        }
    }
}

/// Parses an RSNA `coordinates` string such as `{'x': 258.36, 'y': 261.36}`
/// or `{'x': 12.0, 'y': 40.5, 'f': 57}` into `(x, y, frame)`.
///
/// ```
/// let (x, y, f) = aneu_io::parse_coordinates("{'x': 258.36, 'y': 261.36, 'f': 57}").unwrap();
/// assert_eq!((x, y, f), (258.36, 261.36, Some(57)));
/// assert!(aneu_io::parse_coordinates("{'x': 1.0}").is_err());
/// ```
///
/// # Errors
/// [`Error::LocalizerParse`] for anything else: missing braces, `x` or
/// `y`, unknown or repeated keys, values that are not finite numbers, or a
/// frame that is not a non-negative integer.
pub fn parse_coordinates(s: &str) -> Result<(f64, f64, Option<u32>)> {
    let err = |reason: &str| Error::LocalizerParse {
        input: s.to_string(),
        reason: reason.to_string(),
    };
    let inner = s
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| err("not enclosed in braces"))?;
    let (mut x, mut y, mut f) = (None, None, None);
    for part in inner.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once(':').ok_or_else(|| err("an entry has no ':'"))?;
        let k = k.trim();
        let key = k
            .strip_prefix('\'')
            .and_then(|t| t.strip_suffix('\''))
            .or_else(|| k.strip_prefix('"').and_then(|t| t.strip_suffix('"')))
            .ok_or_else(|| err("a key is not quoted"))?;
        let v: f64 = v.trim().parse().map_err(|_| err("a value is not a number"))?;
        if !v.is_finite() {
            return Err(err("a value is not finite"));
        }
        let slot = match key {
            "x" => &mut x,
            "y" => &mut y,
            "f" => &mut f,
            _ => return Err(err("unknown key")),
        };
        if slot.replace(v).is_some() {
            return Err(err("a key is repeated"));
        }
    }
    let x = x.ok_or_else(|| err("no 'x'"))?;
    let y = y.ok_or_else(|| err("no 'y'"))?;
    let f = match f {
        None => None,
        Some(v) if v >= 0.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX) => Some(v as u32),
        Some(_) => return Err(err("'f' is not a non-negative integer")),
    };
    Ok((x, y, f))
}

fn csv_err(path: &Path, source: csv::Error) -> Error {
    Error::Csv {
        path: path.to_path_buf(),
        source,
    }
}

fn train_header() -> Vec<String> {
    let mut h: Vec<String> = ["SeriesInstanceUID", "PatientAge", "PatientSex", "Modality"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    h.extend(Location::ALL.iter().map(|l| l.name().to_string()));
    h.push(ANEURYSM_PRESENT.to_string());
    h
}

fn parse_flag(v: &str) -> Option<bool> {
    match v.trim() {
        "0" | "0.0" => Some(false),
        "1" | "1.0" => Some(true),
        _ => None,
    }
}

/// Reads `train.csv`. Rows that cannot be parsed are returned as issues
/// ([`DatasetIssue::BadRow`], naming the line, the field and, when it
/// can be read, the series).
///
/// # Errors
/// [`Error::Csv`] if the file cannot be read; [`Error::InvalidCsv`] if the
/// header is not the RSNA header.
pub fn read_train_csv(path: impl AsRef<Path>) -> Result<(Vec<SeriesLabels>, Vec<DatasetIssue>)> {
    let (rows, issues) = read_train_rows(path.as_ref())?;
    Ok((rows.into_iter().map(|(_, r)| r).collect(), issues))
}

/// The first field of a record, trimmed, when it is not empty: the series
/// a malformed row belongs to.
fn row_series(rec: &csv::StringRecord) -> Option<String> {
    rec.get(0).map(str::trim).filter(|u| !u.is_empty()).map(str::to_string)
}

/// Label rows with their 1-based lines, and the issues of the others.
type TrainRows = (Vec<(u64, SeriesLabels)>, Vec<DatasetIssue>);

/// [`read_train_csv`] with the 1-based line of each row.
fn read_train_rows(path: &Path) -> Result<TrainRows> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| csv_err(path, e))?;
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| csv_err(path, e))?
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    if header != train_header() {
        return Err(Error::InvalidCsv {
            path: path.to_path_buf(),
            line: 1,
            reason: format!("header {header:?} is not the RSNA train.csv header"),
        });
    }
    let mut rows = Vec::new();
    let mut issues = Vec::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                issues.push(DatasetIssue::BadRow {
                    path: path.to_path_buf(),
                    line,
                    series_uid: None,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let parsed = (|| -> std::result::Result<SeriesLabels, String> {
            if rec.len() != 18 {
                return Err(format!("{} fields, 18 expected", rec.len()));
            }
            let uid = rec[0].trim().to_string();
            if uid.is_empty() {
                return Err("empty SeriesInstanceUID".into());
            }
            let age = rec[1].trim();
            let patient_age = if age.is_empty() {
                None
            } else {
                let a = age
                    .parse::<f64>()
                    .ok()
                    .filter(|a| a.is_finite() && (0.0..=150.0).contains(a))
                    .ok_or_else(|| format!("PatientAge {age:?} is not an age in years"))?;
                Some(a.round() as u32)
            };
            let sex = rec[2].trim();
            let modality: Modality = rec[3].parse().map_err(|e| format!("Modality: {e}"))?;
            let mut locations = [false; 13];
            for (n, loc) in locations.iter_mut().enumerate() {
                *loc = parse_flag(&rec[4 + n])
                    .ok_or_else(|| format!("{}: {:?} is not 0/1", Location::ALL[n], &rec[4 + n]))?;
            }
            let aneurysm_present =
                parse_flag(&rec[17]).ok_or_else(|| format!("Aneurysm Present {:?} is not 0/1", &rec[17]))?;
            Ok(SeriesLabels {
                series_uid: uid,
                patient_age,
                patient_sex: (!sex.is_empty()).then(|| sex.to_string()),
                modality,
                locations,
                aneurysm_present,
            })
        })();
        match parsed {
            Ok(r) => {
                if r.aneurysm_present != r.locations.iter().any(|&b| b) {
                    issues.push(DatasetIssue::InconsistentLabels {
                        series_uid: r.series_uid.clone(),
                    });
                }
                rows.push((line, r));
            }
            Err(reason) => issues.push(DatasetIssue::BadRow {
                path: path.to_path_buf(),
                line,
                series_uid: row_series(&rec),
                reason,
            }),
        }
    }
    Ok((rows, issues))
}

/// Reads `train_localizers.csv`. Rows that cannot be parsed are returned as
/// issues.
///
/// # Errors
/// [`Error::Csv`] if the file cannot be read; [`Error::InvalidCsv`] if the
/// header is wrong.
pub fn read_localizers_csv(path: impl AsRef<Path>) -> Result<(Vec<Localizer>, Vec<DatasetIssue>)> {
    let path = path.as_ref();
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| csv_err(path, e))?;
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| csv_err(path, e))?
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    if header != ["SeriesInstanceUID", "SOPInstanceUID", "coordinates", "location"] {
        return Err(Error::InvalidCsv {
            path: path.to_path_buf(),
            line: 1,
            reason: format!("header {header:?} is not the RSNA train_localizers.csv header"),
        });
    }
    let mut out = Vec::new();
    let mut issues = Vec::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                issues.push(DatasetIssue::BadRow {
                    path: path.to_path_buf(),
                    line: e.position().map_or(0, |p| p.line()),
                    series_uid: None,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let parsed = (|| -> std::result::Result<Localizer, String> {
            if rec.len() != 4 {
                return Err(format!("{} fields, 4 expected", rec.len()));
            }
            let (x, y, frame) = parse_coordinates(&rec[2]).map_err(|e| format!("coordinates: {e}"))?;
            Ok(Localizer {
                series_uid: rec[0].trim().to_string(),
                sop_uid: rec[1].trim().to_string(),
                x,
                y,
                frame,
                location: rec[3].parse().map_err(|e| format!("location: {e}"))?,
            })
        })();
        match parsed {
            Ok(l) => out.push(l),
            Err(reason) => issues.push(DatasetIssue::BadRow {
                path: path.to_path_buf(),
                line,
                series_uid: row_series(&rec),
                reason,
            }),
        }
    }
    Ok((out, issues))
}

/// Writes `train.csv` with the RSNA header and column order.
///
/// # Errors
/// [`Error::Csv`] or [`Error::Io`].
pub fn write_train_csv(path: impl AsRef<Path>, rows: &[SeriesLabels]) -> Result<()> {
    let path = path.as_ref();
    let mut w = csv::Writer::from_path(path).map_err(|e| csv_err(path, e))?;
    w.write_record(train_header()).map_err(|e| csv_err(path, e))?;
    for r in rows {
        let mut rec = vec![
            r.series_uid.clone(),
            r.patient_age.map(|a| a.to_string()).unwrap_or_default(),
            r.patient_sex.clone().unwrap_or_default(),
            r.modality.name().to_string(),
        ];
        rec.extend(r.locations.iter().map(|&b| u8::from(b).to_string()));
        rec.push(u8::from(r.aneurysm_present).to_string());
        w.write_record(&rec).map_err(|e| csv_err(path, e))?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

/// Writes `train_localizers.csv` with the RSNA header.
///
/// # Errors
/// [`Error::Csv`] or [`Error::Io`].
pub fn write_localizers_csv(path: impl AsRef<Path>, rows: &[Localizer]) -> Result<()> {
    let path = path.as_ref();
    let mut w = csv::Writer::from_path(path).map_err(|e| csv_err(path, e))?;
    w.write_record(["SeriesInstanceUID", "SOPInstanceUID", "coordinates", "location"])
        .map_err(|e| csv_err(path, e))?;
    for l in rows {
        w.write_record([
            l.series_uid.as_str(),
            l.sop_uid.as_str(),
            &l.coordinates_string(),
            l.location.name(),
        ])
        .map_err(|e| csv_err(path, e))?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

/// A problem found in a dataset that does not stop the others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DatasetIssue {
    /// A CSV row could not be parsed. When its series can be read, that
    /// series is rejected: its labels or one of its annotations are lost.
    BadRow {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The row's SeriesInstanceUID, when its first field holds one.
        series_uid: Option<String>,
        /// Which field, and why.
        reason: String,
    },
    /// Two `train.csv` rows of one series disagree; the series is
    /// rejected (neither row is trusted).
    ConflictingRows {
        /// The series.
        series_uid: String,
        /// The 1-based lines of the two rows.
        lines: (u64, u64),
    },
    /// A series is listed twice in `train.csv` with identical rows; one
    /// is used.
    DuplicateRow {
        /// The series.
        series_uid: String,
        /// The 1-based lines of the two rows.
        lines: (u64, u64),
    },
    /// An entry of `series/` that is not a readable series folder: a plain
    /// file, a link to nothing, a name that is not UTF-8 text.
    NotASeriesFolder {
        /// The entry.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `Aneurysm Present` disagrees with the location columns.
    InconsistentLabels {
        /// The series.
        series_uid: String,
    },
    /// A labelled series has no folder under `series/`.
    MissingSeriesFolder {
        /// The series.
        series_uid: String,
    },
    /// A folder under `series/` has no row in `train.csv`.
    UnlabelledSeries {
        /// The series.
        series_uid: String,
    },
    /// A localizer refers to a series without a label row.
    OrphanLocalizer {
        /// The series.
        series_uid: String,
        /// The instance.
        sop_uid: String,
    },
    /// `train_localizers.csv` is absent.
    NoLocalizerFile {
        /// The expected path.
        path: PathBuf,
    },
    /// An entry of `segmentations/` that cannot be used: not a folder, a
    /// folder without `<uid>_cowseg.nii`, or a segmentation of a series
    /// the dataset does not have. The series itself is processed (without
    /// vessel labels).
    BadSegmentation {
        /// The entry.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl DatasetIssue {
    /// The series this issue is about, when there is one.
    pub fn series_uid(&self) -> Option<&str> {
        match self {
            DatasetIssue::BadRow { series_uid, .. } => series_uid.as_deref(),
            DatasetIssue::ConflictingRows { series_uid, .. }
            | DatasetIssue::DuplicateRow { series_uid, .. }
            | DatasetIssue::InconsistentLabels { series_uid }
            | DatasetIssue::MissingSeriesFolder { series_uid }
            | DatasetIssue::UnlabelledSeries { series_uid }
            | DatasetIssue::OrphanLocalizer { series_uid, .. } => Some(series_uid),
            DatasetIssue::NotASeriesFolder { .. }
            | DatasetIssue::NoLocalizerFile { .. }
            | DatasetIssue::BadSegmentation { .. } => None,
        }
    }

    /// Whether the input this issue is about cannot be processed (a
    /// [`Rejection`]) rather than processed with a warning.
    pub fn rejects(&self) -> bool {
        matches!(
            self,
            DatasetIssue::BadRow { .. }
                | DatasetIssue::ConflictingRows { .. }
                | DatasetIssue::MissingSeriesFolder { .. }
                | DatasetIssue::NotASeriesFolder { .. }
        )
    }
}

impl fmt::Display for DatasetIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetIssue::BadRow { path, line, reason, .. } => write!(f, "{}:{line}: {reason}", path.display()),
            DatasetIssue::ConflictingRows { series_uid, lines } => write!(
                f,
                "series {series_uid}: train.csv lines {} and {} disagree",
                lines.0, lines.1
            ),
            DatasetIssue::DuplicateRow { series_uid, lines } => write!(
                f,
                "series {series_uid}: train.csv lines {} and {} repeat the same row",
                lines.0, lines.1
            ),
            DatasetIssue::NotASeriesFolder { path, reason } => write!(f, "{}: {reason}", path.display()),
            DatasetIssue::InconsistentLabels { series_uid } => {
                write!(
                    f,
                    "series {series_uid}: Aneurysm Present disagrees with the location columns"
                )
            }
            DatasetIssue::MissingSeriesFolder { series_uid } => {
                write!(f, "series {series_uid}: listed but missing (no folder under series/)")
            }
            DatasetIssue::UnlabelledSeries { series_uid } => {
                write!(f, "series {series_uid}: no row in train.csv (processed unlabelled)")
            }
            DatasetIssue::OrphanLocalizer { series_uid, sop_uid } => {
                write!(f, "localizer on {sop_uid}: series {series_uid} has no row in train.csv")
            }
            DatasetIssue::NoLocalizerFile { path } => write!(f, "{}: missing", path.display()),
            DatasetIssue::BadSegmentation { path, reason } => {
                write!(f, "{}: vessel segmentation not used: {reason}", path.display())
            }
        }
    }
}

/// A localizer mapped through its slice's geometry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MappedLocalizer {
    /// The annotation.
    pub localizer: Localizer,
    /// The point in RAS+ mm.
    pub world: WorldPoint,
    /// The point in the series volume's voxel grid.
    pub voxel: Voxel,
}

/// An input that a dataset names but that cannot be processed: a series
/// listed in `train.csv` without a folder, a malformed or conflicting row,
/// an annotation that cannot be read, an entry of `series/` that is not a
/// series folder. Dataset runs write each to their `errors.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// The series (or the entry's name under `series/`), or `None` for a
    /// CSV row whose series cannot be read.
    pub series_uid: Option<String>,
    /// Why.
    pub issue: DatasetIssue,
}

impl Rejection {
    /// Whether this is a series listed in `train.csv` without a folder.
    pub fn is_missing(&self) -> bool {
        matches!(self.issue, DatasetIssue::MissingSeriesFolder { .. })
    }
}

/// The usable entries of `segmentations/` (absent: none), by series UID;
/// every other entry becomes a [`DatasetIssue::BadSegmentation`].
fn list_segmentations(
    dir: &Path,
    series: &BTreeMap<String, PathBuf>,
    issues: &mut Vec<DatasetIssue>,
) -> BTreeMap<String, SegmentationFiles> {
    let mut found = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        if dir.exists() {
            issues.push(DatasetIssue::BadSegmentation {
                path: dir.to_path_buf(),
                reason: "cannot be listed".into(),
            });
        }
        return found;
    };
    // the first existing of `<uid><suffix>` and `<uid><suffix>.gz`
    let either = |folder: &Path, name: String| {
        [folder.join(&name), folder.join(format!("{name}.gz"))]
            .into_iter()
            .find(|p| p.is_file())
    };
    for e in rd {
        let e = match e {
            Ok(e) => e,
            Err(err) => {
                issues.push(DatasetIssue::BadSegmentation {
                    path: dir.to_path_buf(),
                    reason: format!("an entry cannot be read: {err}"),
                });
                continue;
            }
        };
        let path = e.path();
        let bad = |reason: &str| DatasetIssue::BadSegmentation {
            path: path.clone(),
            reason: reason.into(),
        };
        let Some(uid) = e.file_name().to_str().map(str::to_string) else {
            issues.push(bad("its name is not UTF-8 text"));
            continue;
        };
        if !path.is_dir() {
            issues.push(bad("not a folder (expected segmentations/<uid>/<uid>_cowseg.nii)"));
            continue;
        }
        let Some(labels) = either(&path, format!("{uid}_cowseg.nii")) else {
            issues.push(bad(&format!("no {uid}_cowseg.nii in it")));
            continue;
        };
        if !series.contains_key(&uid) {
            issues.push(bad("the dataset has no such series under series/"));
            continue;
        }
        let image = either(&path, format!("{uid}.nii"));
        found.insert(uid, SegmentationFiles { labels, image });
    }
    found
}

/// The folders under `series_root`, by name, following symbolic links (a
/// dataset assembled from several disks links its series folders). Entries
/// that are not series folders (plain files, links to nothing, names that
/// are not UTF-8 text, unreadable entries) are returned as
/// [`DatasetIssue::NotASeriesFolder`], never skipped silently.
///
/// # Errors
/// [`Error::Io`] when `series_root` cannot be listed.
pub fn list_series_folders(series_root: &Path) -> Result<(BTreeMap<String, PathBuf>, Vec<DatasetIssue>)> {
    let mut folders = BTreeMap::new();
    let mut issues = Vec::new();
    let rd = std::fs::read_dir(series_root).map_err(|e| Error::io(series_root, e))?;
    for e in rd {
        let e = e.map_err(|e| Error::io(series_root, e))?;
        let path = e.path();
        let not_series = |reason: String| DatasetIssue::NotASeriesFolder {
            path: path.clone(),
            reason,
        };
        // metadata() follows links, unlike DirEntry::file_type()
        let name = e.file_name();
        if name.as_encoded_bytes().starts_with(b".") {
            // hidden entries (.DS_Store, editors' files) are not inputs:
            // a SeriesInstanceUID starts with a digit
            tracing::debug!(path = %path.display(), "skipping a hidden entry of series/");
            continue;
        }
        let issue = match (name.to_str(), std::fs::metadata(&path)) {
            (None, _) => not_series("the name is not UTF-8 text, so it cannot be a SeriesInstanceUID".into()),
            (Some(name), Ok(md)) if md.is_dir() => {
                folders.insert(name.to_string(), path.clone());
                continue;
            }
            (Some(_), Ok(_)) => not_series("not a folder".into()),
            (Some(_), Err(err)) => not_series(format!("cannot be opened ({err}); a link to nothing?")),
        };
        issues.push(issue);
    }
    Ok((folders, issues))
}

/// The issues that the rows of `train.csv` raise together: an identical
/// repeat is a warning, a disagreeing one rejects the series.
fn label_map(rows: Vec<(u64, SeriesLabels)>, issues: &mut Vec<DatasetIssue>) -> BTreeMap<String, (u64, SeriesLabels)> {
    let mut labels: BTreeMap<String, (u64, SeriesLabels)> = BTreeMap::new();
    for (line, r) in rows {
        match labels.get(&r.series_uid) {
            None => {
                labels.insert(r.series_uid.clone(), (line, r));
            }
            Some((first, kept)) => {
                let lines = (*first, line);
                let series_uid = r.series_uid.clone();
                issues.push(if *kept == r {
                    DatasetIssue::DuplicateRow { series_uid, lines }
                } else {
                    DatasetIssue::ConflictingRows { series_uid, lines }
                });
            }
        }
    }
    labels
}

/// A dataset in the RSNA layout.
///
/// ```no_run
/// use aneu_io::RsnaDataset;
/// let ds = RsnaDataset::open("/data/rsna")?;
/// for r in ds.rejections() { eprintln!("not processed: {}", r.issue); }
/// for uid in ds.series_uids() {
///     match ds.read_series(uid) {
///         Ok(s) => println!("{uid}: {:?}", s.volume.size()),
///         Err(e) => eprintln!("{uid}: {e}"),   // one bad series never stops the rest
///     }
/// }
/// # Ok::<(), aneu_io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RsnaDataset {
    root: PathBuf,
    labels: BTreeMap<String, SeriesLabels>,
    localizers: BTreeMap<String, Vec<Localizer>>,
    folders: BTreeMap<String, PathBuf>,
    segmentations: BTreeMap<String, SegmentationFiles>,
    issues: Vec<DatasetIssue>,
    rejections: Vec<Rejection>,
}

impl RsnaDataset {
    /// Opens a dataset root holding `train.csv`, `train_localizers.csv` and
    /// `series/`. Series folders may be symbolic links.
    ///
    /// # Errors
    /// [`Error::Io`] if `series/` cannot be listed, and the errors of
    /// [`read_train_csv`]. Row-level and folder-level problems become
    /// [`DatasetIssue`]s, and those that stop a series from being
    /// processed also [`Rejection`]s.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let (rows, mut issues) = read_train_rows(&root.join("train.csv"))?;
        let mut labels = label_map(rows, &mut issues);
        let loc_path = root.join("train_localizers.csv");
        let mut localizers: BTreeMap<String, Vec<Localizer>> = BTreeMap::new();
        if loc_path.exists() {
            let (locs, li) = read_localizers_csv(&loc_path)?;
            issues.extend(li);
            for l in locs {
                if !labels.contains_key(&l.series_uid) {
                    issues.push(DatasetIssue::OrphanLocalizer {
                        series_uid: l.series_uid.clone(),
                        sop_uid: l.sop_uid.clone(),
                    });
                }
                localizers.entry(l.series_uid.clone()).or_default().push(l);
            }
        } else {
            issues.push(DatasetIssue::NoLocalizerFile { path: loc_path });
        }
        let (folders, folder_issues) = list_series_folders(&root.join("series"))?;
        issues.extend(folder_issues);
        for uid in labels.keys() {
            if !folders.contains_key(uid) {
                issues.push(DatasetIssue::MissingSeriesFolder {
                    series_uid: uid.clone(),
                });
            }
        }
        for uid in folders.keys() {
            if !labels.contains_key(uid) && !issues.iter().any(|i| i.rejects() && i.series_uid() == Some(uid)) {
                issues.push(DatasetIssue::UnlabelledSeries {
                    series_uid: uid.clone(),
                });
            }
        }
        let segmentations = list_segmentations(&root.join("segmentations"), &folders, &mut issues);
        let rejections: Vec<Rejection> = issues
            .iter()
            .filter(|i| i.rejects())
            .map(|i| Rejection {
                series_uid: match i {
                    DatasetIssue::NotASeriesFolder { path, .. } => {
                        path.file_name().map(|n| n.to_string_lossy().to_string())
                    }
                    _ => i.series_uid().map(str::to_string),
                },
                issue: i.clone(),
            })
            .collect();
        // a rejected series' row is not used
        labels.retain(|uid, _| !rejections.iter().any(|r| r.series_uid.as_deref() == Some(uid)));
        for i in &issues {
            if i.rejects() {
                tracing::error!(issue = %i, "dataset input not processed");
            } else {
                tracing::warn!(issue = %i, "dataset issue");
            }
        }
        Ok(Self {
            root,
            labels: labels.into_iter().map(|(u, (_, l))| (u, l)).collect(),
            localizers,
            folders,
            segmentations,
            issues,
            rejections,
        })
    }

    /// The vessel segmentation of a series, when `segmentations/` has a
    /// usable one.
    pub fn segmentation(&self, uid: &str) -> Option<&SegmentationFiles> {
        self.segmentations.get(uid)
    }

    /// The vessel labels of a series ([`VESSEL_LABELS`]) in the
    /// segmentation's own geometry; `Ok(None)` when the series has no
    /// segmentation. Put them on a grid in world space with nearest
    /// neighbour (`aneu_preproc::labels_on_grid`).
    ///
    /// # Errors
    /// As [`read_vessel_labels`], naming the file.
    pub fn read_vessel_labels(&self, uid: &str) -> Result<Option<crate::Volume<u8>>> {
        self.segmentation(uid)
            .map(|s| read_vessel_labels(&s.labels))
            .transpose()
    }

    /// The dataset root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every problem found while opening, warnings and rejections alike.
    pub fn issues(&self) -> &[DatasetIssue] {
        &self.issues
    }

    /// The inputs that will not be processed, each with its reason.
    pub fn rejections(&self) -> &[Rejection] {
        &self.rejections
    }

    /// The series to process, in UID order: every series folder that no
    /// [`Rejection`] names, with its `train.csv` row or, when it has none,
    /// unlabelled ([`RsnaDataset::labels`] is then `None`; a
    /// [`DatasetIssue::UnlabelledSeries`] warns of it).
    pub fn series_uids(&self) -> impl Iterator<Item = &str> {
        self.folders
            .keys()
            .filter(|u| {
                !self
                    .rejections
                    .iter()
                    .any(|r| r.series_uid.as_deref() == Some(u.as_str()))
            })
            .map(String::as_str)
    }

    /// The labels of a series.
    pub fn labels(&self, uid: &str) -> Option<&SeriesLabels> {
        self.labels.get(uid)
    }

    /// All label rows.
    pub fn all_labels(&self) -> impl Iterator<Item = &SeriesLabels> {
        self.labels.values()
    }

    /// The localizers of a series (empty if none).
    pub fn localizers(&self, uid: &str) -> &[Localizer] {
        self.localizers.get(uid).map_or(&[], Vec::as_slice)
    }

    /// The folder of a series (a symbolic link is returned as listed).
    pub fn series_dir(&self, uid: &str) -> PathBuf {
        self.folders
            .get(uid)
            .cloned()
            .unwrap_or_else(|| self.root.join("series").join(uid))
    }

    /// Reads a series with default options.
    ///
    /// # Errors
    /// As [`DicomSeries::read_with_options`].
    pub fn read_series(&self, uid: &str) -> Result<DicomSeries> {
        self.read_series_with_options(uid, &ReadOptions::default())
    }

    /// Reads a series. The folder is expected to hold this series only;
    /// other series in it are ignored.
    ///
    /// # Errors
    /// As [`DicomSeries::read_with_options`].
    pub fn read_series_with_options(&self, uid: &str, opts: &ReadOptions) -> Result<DicomSeries> {
        let opts = opts.clone().with_series_uid(uid);
        DicomSeries::read_with_options(self.series_dir(uid), &opts)
    }

    /// Maps each localizer of a series through the slice it names. A
    /// localizer on an instance the series lacks gives an
    /// [`Error::UnknownInstance`] for that localizer only.
    pub fn map_localizers(&self, series: &DicomSeries) -> Vec<Result<MappedLocalizer>> {
        self.localizers(&series.meta.series_uid)
            .iter()
            .map(|l| {
                let world = series.localizer_to_world(&l.sop_uid, l.frame, l.x, l.y)?;
                Ok(MappedLocalizer {
                    localizer: l.clone(),
                    world,
                    voxel: series.volume.world_to_voxel(world),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_parse_variants() {
        assert_eq!(
            parse_coordinates("{'x': 258.36, 'y': 261.36}").unwrap(),
            (258.36, 261.36, None)
        );
        assert_eq!(
            parse_coordinates(" {\"x\":1,\"y\":2,\"f\":0} ").unwrap(),
            (1.0, 2.0, Some(0))
        );
        assert_eq!(
            parse_coordinates("{'f': 57.0, 'y': 2e1, 'x': -1}").unwrap(),
            (-1.0, 20.0, Some(57))
        );
        for bad in [
            "",
            "{}",
            "{'x': 1}",
            "'x': 1, 'y': 2",
            "{'x': 1, 'y': nan}",
            "{'x': 1, 'y': 2, 'f': 1.5}",
            "{'x': 1, 'y': 2, 'f': -1}",
            "{'x': 1, 'x': 2, 'y': 3}",
            "{'z': 1, 'x': 1, 'y': 2}",
            "{x: 1, y: 2}",
            "{'x': 1; 'y': 2}",
            "{'x': inf, 'y': 2}",
        ] {
            assert!(parse_coordinates(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn location_names_round_trip() {
        for (n, l) in Location::ALL.iter().enumerate() {
            assert_eq!(l.index(), n);
            assert_eq!(l.name().parse::<Location>().unwrap(), *l);
        }
        assert!("Left MCA".parse::<Location>().is_err());
        for m in [Modality::Cta, Modality::Mra, Modality::MriT2, Modality::MriT1post] {
            assert_eq!(m.name().parse::<Modality>().unwrap(), m);
        }
    }

    #[test]
    fn localizer_coordinates_round_trip() {
        let l = Localizer {
            series_uid: "1".into(),
            sop_uid: "2".into(),
            x: 258.36,
            y: 0.1,
            frame: Some(3),
            location: Location::BasilarTip,
        };
        assert_eq!(
            parse_coordinates(&l.coordinates_string()).unwrap(),
            (258.36, 0.1, Some(3))
        );
    }
}

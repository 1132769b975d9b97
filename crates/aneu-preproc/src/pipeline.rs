//! The per-series preprocessing and the restartable, parallel dataset run.
//!
//! Steps per modality (from [`PreprocessConfig`]): reorientation to
//! canonical RAS (exact), a mask (skull stripping by default), N4 (MR only
//! by default), resampling
//! of image (chosen
//! interpolator) and mask (nearest), normalisation with statistics inside
//! the mask. Localizers are carried through as world points and voxels of
//! the output grid.
//!
//! [`preprocess_dataset`] writes `<out>/<uid>/{image.nii.gz, mask.nii.gz,
//! meta.json}` (and `vessels.nii.gz`, the series' vessel segmentation put
//! on the output grid, when the dataset has one) and `<out>/index.csv`; a failing series is recorded in
//! `errors.csv` and the others go on; every series is written under a
//! temporary name and renamed, and a series whose `meta.json` carries the
//! same config hash is skipped, so a killed run resumes where it stopped.

use aneu_io::AtPath;
use std::path::{Path, PathBuf};

use aneu_io::{
    Affine, DicomSeries, GridSize, Localizer, Modality, RsnaDataset, SeriesLabels, Volume, Voxel, WorldPoint,
    write_nifti,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::mask::{head_mask, intracranial_mask};
use crate::n4::{N4Options, n4};
use crate::normalize::{CtWindow, Normalization, normalize};
use crate::resample::{Interpolator, ResampleOptions, resample_to_grid, resample_with_options};
use crate::{Error, Result};

/// The mask a series gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaskMethod {
    /// The whole grid.
    None,
    /// The head (foreground): [`head_mask`].
    Head,
    /// The cranial cavity (skull stripping): [`intracranial_mask`].
    Intracranial,
    /// A mask made elsewhere (SynthStrip, say): `<dir>/<SeriesInstanceUID>.nii.gz`,
    /// any non-zero voxel inside, resampled (nearest) onto the image grid.
    External {
        /// The folder of masks.
        dir: PathBuf,
    },
    /// Skull stripping by registering a template onto the image
    /// ([`atlas_brain_mask`](crate::atlas_brain_mask), default options):
    /// for whole-head MRI whose skull is not dark enough for
    /// [`intracranial_mask`]. The template must have the series' contrast.
    Atlas {
        /// The skull-stripped template image (NIfTI).
        image: PathBuf,
        /// Its brain mask (NIfTI, non-zero inside).
        mask: PathBuf,
    },
}

/// The steps for one modality.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Steps {
    /// Reorient to the closest canonical RAS grid (exact).
    pub reorient: bool,
    /// Which mask to compute; statistics and N4 use it.
    pub mask: MaskMethod,
    /// N4 bias-field correction inside the mask (on by default for MR, off
    /// for CT).
    pub n4: Option<N4Options>,
    /// Resample (the mask always with nearest neighbour).
    pub resample: Option<ResampleOptions>,
    /// Normalise (statistics inside the mask).
    pub normalize: Option<Normalization>,
}

impl Default for Steps {
    fn default() -> Self {
        Self {
            reorient: true,
            mask: MaskMethod::Intracranial,
            n4: Some(N4Options::default()),
            resample: Some(ResampleOptions::default()),
            normalize: Some(Normalization::ZScore),
        }
    }
}

/// Per-modality steps, serialisable as JSON so every run can be replayed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PreprocessConfig {
    /// CTA: CT angiography window by default.
    pub cta: Steps,
    /// TOF-MRA.
    pub mra: Steps,
    /// MRI T1 post-contrast.
    pub t1post: Steps,
    /// MRI T2.
    pub t2: Steps,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            cta: Steps {
                n4: None,
                normalize: Some(Normalization::Window(CtWindow::ANGIO)),
                ..Steps::default()
            },
            mra: Steps::default(),
            t1post: Steps::default(),
            t2: Steps::default(),
        }
    }
}

/// The version of the preprocessing algorithms, salted into
/// [`PreprocessConfig::hash`]. It is raised whenever a step gives other
/// outputs for the same config, so that resumed runs redo the series that
/// an earlier version wrote and a model bundle does not accept data
/// preprocessed differently from its training data.
///
/// History: 1 was never written (releases before the salt hashed the JSON
/// alone); 2 is the first salted version, after the intracranial mask
/// moved to 1 mm blocks on finer grids, N4's fit became separable and its
/// parallel sums deterministic.
pub const PIPELINE_VERSION: u32 = 2;

impl PreprocessConfig {
    /// The steps of a modality.
    pub fn steps(&self, m: Modality) -> &Steps {
        match m {
            Modality::Cta => &self.cta,
            Modality::Mra => &self.mra,
            Modality::MriT1post => &self.t1post,
            Modality::MriT2 => &self.t2,
        }
    }

    /// A stable hash of the config and of [`PIPELINE_VERSION`] (FNV-1a 64
    /// of the version and the JSON form), written to every `meta.json` to
    /// decide whether a series is already done, and stored in model
    /// bundles to check that a series was preprocessed as the model's
    /// training data was. A series preprocessed by an aneu whose steps
    /// gave other outputs has another hash, so it is done again.
    ///
    /// ```
    /// use aneu_preproc::{PreprocessConfig, stable_hash};
    /// let c = PreprocessConfig::default();
    /// assert_eq!(c.hash()?, c.clone().hash()?);
    /// // not the hash of the JSON alone, which releases before the
    /// // version salt wrote
    /// assert_ne!(c.hash()?, stable_hash(&serde_json::to_string(&c).unwrap()));
    /// # Ok::<(), aneu_preproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the config has no JSON form: the
    /// hash is never taken of an empty string.
    pub fn hash(&self) -> Result<String> {
        let json = serde_json::to_string(self)
            .map_err(|e| Error::InvalidArgument(format!("the preprocessing config has no JSON form: {e}")))?;
        Ok(stable_hash(format!("aneu-preproc {PIPELINE_VERSION}\n{json}")))
    }

    /// Reads a JSON config.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the file cannot be read or parsed.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let p = path.as_ref();
        let text = std::fs::read_to_string(p).map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display())))?;
        serde_json::from_str(&text).map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display())))
    }
}

/// A grid: affine and size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Voxel → RAS mm.
    pub affine: Affine,
    /// Size.
    pub size: GridSize,
}

/// A localizer carried through preprocessing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// The RSNA location name.
    pub location: String,
    /// The point in RAS mm.
    pub world: WorldPoint,
    /// Its voxel in the output grid.
    pub voxel: Voxel,
}

/// The sidecar `meta.json` of a preprocessed series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreprocessMeta {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// PatientID (empty when the series has none), for patient-grouped
    /// splits.
    #[serde(default)]
    pub patient_id: String,
    /// Modality class.
    pub modality: Modality,
    /// Labels from `train.csv`, when known.
    pub labels: Option<SeriesLabels>,
    /// The config hash.
    pub config_hash: String,
    /// The steps applied, with their parameters.
    pub steps: Steps,
    /// Grid as read.
    pub before: Grid,
    /// Grid written.
    pub after: Grid,
    /// Localizers in world mm and output voxels.
    pub annotations: Vec<Annotation>,
    /// The series' vessel labels (`vessels.nii.gz`): where they came
    /// from, or why they could not be used.
    #[serde(default)]
    pub vessel_labels: VesselLabelSource,
}

/// Where the vessel labels of a preprocessed series come from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VesselLabelSource {
    /// The dataset has no vessel segmentation for the series.
    #[default]
    None,
    /// Put on the output grid from this segmentation (written as
    /// `vessels.nii.gz`).
    File {
        /// The `*_cowseg.nii` file.
        path: PathBuf,
    },
    /// The dataset has a segmentation, but it could not be used: the
    /// series is preprocessed without labels, and the reason goes to
    /// `warnings.csv`.
    Failed {
        /// The segmentation file.
        path: PathBuf,
        /// Why (the typed error's message, naming the file).
        reason: String,
    },
}

/// A preprocessed series.
pub struct Preprocessed {
    /// The image.
    pub image: Volume<f32>,
    /// The mask on the same grid.
    pub mask: Volume<u8>,
    /// Vessel labels on the same grid (`aneu_io::VESSEL_LABELS`), when the
    /// dataset has a segmentation of the series.
    pub vessels: Option<Volume<u8>>,
    /// The sidecar.
    pub meta: PreprocessMeta,
}

/// Runs the steps of `modality` on one series.
///
/// # Errors
/// Errors of the steps (a constant image has no Otsu threshold or z-score,
/// say) and of localizer mapping.
pub fn preprocess_series(
    series: &DicomSeries,
    modality: Modality,
    localizers: &[Localizer],
    labels: Option<&SeriesLabels>,
    config: &PreprocessConfig,
) -> Result<Preprocessed> {
    let steps = config.steps(modality);
    let uid = series.meta.series_uid.as_str();
    let mut clock = std::time::Instant::now();
    // each step's wall time, at debug level (RUST_LOG=aneu_preproc=debug)
    let mut lap = |step: &str| {
        tracing::debug!(
            series = uid,
            step,
            seconds = clock.elapsed().as_secs_f64(),
            "preprocessing step"
        );
        clock = std::time::Instant::now();
    };
    let before = Grid {
        affine: *series.volume.affine(),
        size: series.volume.size(),
    };
    let mut image = if steps.reorient {
        series.volume.to_canonical()?
    } else {
        series.volume.clone()
    };
    lap("reorient");
    let mut mask = match &steps.mask {
        MaskMethod::None => image.map(|_| 1u8),
        MaskMethod::Head => head_mask(&image)?,
        MaskMethod::Intracranial => intracranial_mask(&image, modality)?,
        MaskMethod::External { dir } => {
            let path = dir.join(format!("{}.nii.gz", series.meta.series_uid));
            let ext = aneu_io::read_nifti(&path)?.map(|v| if *v != 0.0 { 1.0f32 } else { 0.0 });
            let m = resample_to_grid(&ext, image.affine(), image.size(), Interpolator::Nearest, 0.0)?;
            let m = m.map(|v| u8::from(*v >= 0.5));
            if !m.as_slice().iter().any(|v| *v != 0) {
                return Err(Error::InvalidMask(format!(
                    "{}: no voxel inside the image grid",
                    path.display()
                )));
            }
            m
        }
        MaskMethod::Atlas { image: t, mask: m } => {
            let atlas = crate::Atlas::read(t, m)?;
            crate::atlas_brain_mask(&image, &atlas, &crate::RegistrationOptions::default())?.0
        }
    };
    lap("mask");
    if let Some(o) = &steps.n4 {
        image = n4(&image, &mask, o)?.corrected;
        lap("n4");
    }
    if let Some(r) = &steps.resample {
        image = resample_with_options(&image, r)?;
        let m = resample_with_options(
            &mask.map(|&v| f32::from(v)),
            &r.with_interpolator(Interpolator::Nearest),
        )?;
        mask = m.map(|&v| u8::from(v >= 0.5));
        lap("resample");
    }
    if let Some(n) = steps.normalize {
        image = normalize(&image, n, Some(&mask))?;
        lap("normalize");
    }
    let annotations = localizers
        .iter()
        .map(|l| {
            let world = series.localizer_to_world(&l.sop_uid, l.frame, l.x, l.y)?;
            Ok(Annotation {
                location: l.location.name().to_string(),
                world,
                voxel: image.world_to_voxel(world),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = PreprocessMeta {
        series_uid: series.meta.series_uid.clone(),
        patient_id: series.meta.patient_id.clone(),
        modality,
        labels: labels.cloned(),
        config_hash: config.hash()?,
        steps: steps.clone(),
        before,
        after: Grid {
            affine: *image.affine(),
            size: image.size(),
        },
        annotations,
        vessel_labels: VesselLabelSource::None,
    };
    Ok(Preprocessed {
        image,
        mask,
        vessels: None,
        meta,
    })
}

/// The number of worker threads to run for a request of `requested`: at
/// least 1 and at most 4 per core, since more only adds memory and
/// contention (a `--jobs 10000` ran for minutes).
///
/// ```
/// let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
/// assert_eq!(aneu_preproc::worker_threads(0), 1);
/// assert_eq!(aneu_preproc::worker_threads(1), 1);
/// assert_eq!(aneu_preproc::worker_threads(10_000), 4 * cores);
/// ```
pub fn worker_threads(requested: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    requested.clamp(1, 4 * cores)
}

/// One shard of a dataset: series `n` (in UID order) belongs to shard
/// `n % count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, 0-based.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    /// Parses `I/N` (0-based I).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("{s:?} is not I/N"))?;
        let (index, count): (usize, usize) = (
            i.trim().parse().map_err(|_| format!("{s:?}: bad I"))?,
            n.trim().parse().map_err(|_| format!("{s:?}: bad N"))?,
        );
        if count == 0 || index >= count {
            return Err(format!("{s:?}: need 0 <= I < N"));
        }
        Ok(Self { index, count })
    }
}

/// What a dataset run did. Every input the dataset names is in exactly
/// one of the counts (this shard's share of it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// Series processed now.
    pub done: usize,
    /// Series already done with the same config.
    pub skipped: usize,
    /// Series that failed or were rejected for their rows (see
    /// `errors.csv`).
    pub failed: usize,
    /// Series listed in `train.csv` without a folder (in `errors.csv`).
    pub missing: usize,
    /// Of those done or skipped, the series without a `train.csv` row,
    /// processed unlabelled with a modality guessed from their DICOM
    /// attributes (in `warnings.csv`).
    pub unlabelled: usize,
}

impl std::fmt::Display for DatasetSummary {
    /// The one-line summary a dataset run ends with.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "done {}, skipped {}, failed {}, listed but missing {} ({} unlabelled)",
            self.done, self.skipped, self.failed, self.missing, self.unlabelled
        )
    }
}

enum Outcome {
    Done,
    Skipped,
    Failed(String),
}

/// The names of the files aneu writes in every preprocessed series folder.
const SERIES_FILES: [&str; 3] = ["image.nii.gz", "mask.nii.gz", "meta.json"];

/// The vessel labels of a preprocessed series, when it has some.
const VESSELS_FILE: &str = "vessels.nii.gz";

/// Puts the dataset's vessel segmentation of series `uid`, if it has one,
/// on the grid of `p` ([`crate::labels_on_grid`]), and records in its
/// sidecar where the labels came from or why they could not be used.
fn attach_vessel_labels(ds: &RsnaDataset, uid: &str, p: &mut Preprocessed) {
    let Some(files) = ds.segmentation(uid) else { return };
    let path = files.labels.clone();
    let labels = aneu_io::read_vessel_labels(&path)
        .map_err(Error::from)
        .and_then(|l| crate::labels_on_grid(&l, p.image.affine(), p.image.size()));
    match labels {
        Ok(v) => {
            p.vessels = Some(v);
            p.meta.vessel_labels = VesselLabelSource::File { path };
        }
        Err(e) => {
            tracing::warn!(series = %uid, error = %e, "vessel segmentation not used");
            let reason = match e {
                Error::InvalidMask(why) => format!("{}: {why}", path.display()),
                other => other.to_string(),
            };
            p.meta.vessel_labels = VesselLabelSource::Failed { path, reason };
        }
    }
}

/// The sidecar of `<out>/<uid>/`, when that folder holds one for `uid`:
/// the mark that aneu wrote the folder.
fn own_meta(dest: &Path, uid: &str) -> Option<PreprocessMeta> {
    read_meta(&dest.join("meta.json")).ok().filter(|m| m.series_uid == uid)
}

/// The temporary folder a series is written to before it is moved into
/// place.
fn tmp_dir(out: &Path, uid: &str) -> PathBuf {
    out.join(format!(".aneu-tmp-{uid}"))
}

fn process_one(ds: &RsnaDataset, uid: &str, out: &Path, config: &PreprocessConfig, hash: &str) -> Result<Outcome> {
    let dest = out.join(uid);
    let prior = own_meta(&dest, uid);
    if prior.as_ref().is_some_and(|m| m.config_hash == hash)
        && dest.join("image.nii.gz").exists()
        && dest.join("mask.nii.gz").exists()
    {
        return Ok(Outcome::Skipped);
    }
    // a folder aneu did not write is never touched
    if prior.is_none() && std::fs::symlink_metadata(&dest).is_ok() {
        return Err(Error::Io(aneu_io::Error::UnsafeOutput {
            path: dest,
            reason: "it exists and holds no meta.json of this series: aneu did not write it".into(),
        }));
    }
    let labels = ds.labels(uid);
    let series = ds.read_series(uid)?;
    let modality = labels.map_or_else(|| Modality::guess(&series.meta), |l| l.modality);
    let mut p = preprocess_series(&series, modality, ds.localizers(uid), labels, config)?;
    attach_vessel_labels(ds, uid, &mut p);
    let tmp = tmp_dir(out, uid);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).at(&tmp)?;
    write_nifti(&p.image, tmp.join(SERIES_FILES[0]))?;
    write_nifti(&p.mask, tmp.join(SERIES_FILES[1]))?;
    if let Some(v) = &p.vessels {
        write_nifti(v, tmp.join(VESSELS_FILE))?;
    }
    let json = serde_json::to_string_pretty(&p.meta).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    std::fs::write(tmp.join(SERIES_FILES[2]), json).at(&tmp)?;
    if prior.is_none() {
        std::fs::rename(&tmp, &dest).at(&dest)?;
        return Ok(Outcome::Done);
    }
    // Replace aneu's own files one by one, the sidecar last, and nothing
    // else the folder may hold. A run killed in between leaves the old
    // sidecar, so the next run does the series again.
    for name in [SERIES_FILES[0], SERIES_FILES[1], VESSELS_FILE, SERIES_FILES[2]] {
        let (from, to) = (tmp.join(name), dest.join(name));
        aneu_io::check_writable_target(&to)?;
        if from.exists() {
            std::fs::rename(&from, &to).at(&to)?;
        } else if name == VESSELS_FILE && to.exists() {
            // aneu's own labels of an earlier run, which this run has not
            std::fs::remove_file(&to).at(&to)?;
        }
    }
    std::fs::remove_dir(&tmp).at(&tmp)?;
    Ok(Outcome::Done)
}

/// Whether `out` looks like a [`preprocess_dataset`] output written
/// before output folders were marked: it holds a `config-<hash>.json`.
fn earlier_preprocess_output(out: &Path) -> bool {
    std::fs::read_dir(out).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with("config-") && n.ends_with(".json")
        })
    })
}

/// One entry of a dataset run: a series to process, or an input that
/// was rejected when the dataset was opened.
enum Work<'a> {
    Series(&'a str),
    Rejected(&'a aneu_io::Rejection),
}

/// This shard's share of the dataset's inputs, in UID order: series
/// `n` of the sorted union of series and rejections belongs to shard
/// `n % count`; rejections without a series go to shard 0.
fn shard_work(ds: &RsnaDataset, shard: Shard) -> Vec<Work<'_>> {
    let mut all: Vec<(&str, Work<'_>)> = ds.series_uids().map(|u| (u, Work::Series(u))).collect();
    let mut loose = Vec::new();
    for r in ds.rejections() {
        match r.series_uid.as_deref() {
            Some(u) => all.push((u, Work::Rejected(r))),
            None => loose.push(Work::Rejected(r)),
        }
    }
    all.sort_by(|a, b| a.0.cmp(b.0));
    let mut mine: Vec<Work<'_>> = all
        .into_iter()
        .enumerate()
        .filter(|(n, _)| n % shard.count == shard.index)
        .map(|(_, (_, w))| w)
        .collect();
    if shard.index == 0 {
        mine.extend(loose);
    }
    mine
}

/// Preprocesses the series of an RSNA-layout dataset (this shard only) in
/// parallel, writing `<out>/<uid>/…`, `index.csv`, `errors.csv` and
/// `warnings.csv` (`index-I-of-N.csv` and so on for a shard of several).
/// `progress` is called after each series with the number finished.
///
/// Nothing is lost: every series the dataset names is in `index.csv` or
/// `errors.csv` (a series listed without a folder, a malformed or
/// conflicting `train.csv` row, an unreadable localizer, a series that
/// fails), and series folders without a row are processed unlabelled and
/// listed in `warnings.csv`. Nothing of the user's is touched: `out` may
/// not overlap `root`, must be new, empty or an earlier output, and a
/// `<out>/<uid>/` folder is replaced only when it holds aneu's own
/// `meta.json` (and then only aneu's own files in it).
///
/// # Errors
/// Only for problems with the dataset as a whole (unreadable `train.csv`,
/// an output folder that overlaps the input, holds other files or cannot
/// be written); each series' own failure goes to `errors.csv`.
pub fn preprocess_dataset(
    root: impl AsRef<Path>,
    out: impl AsRef<Path>,
    config: &PreprocessConfig,
    shard: Shard,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<DatasetSummary> {
    let (root, out) = (root.as_ref(), out.as_ref());
    if shard.count == 0 || shard.index >= shard.count {
        return Err(Error::InvalidArgument(format!(
            "shard {}/{} is out of range",
            shard.index, shard.count
        )));
    }
    let ds = RsnaDataset::open(root)?;
    aneu_io::check_disjoint(root, out)?;
    aneu_io::claim_output_dir(out, "preprocess", earlier_preprocess_output)?;
    // the config itself, so that training can store it in its model bundle
    let hash = config.hash()?;
    let cp = out.join(format!("config-{hash}.json"));
    if !cp.exists() {
        let json = serde_json::to_string_pretty(config).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        aneu_io::write_atomic(&cp, json.as_bytes())?;
    }
    let work = shard_work(&ds, shard);
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let outcomes: Vec<(String, Outcome)> = work
        .par_iter()
        .filter_map(|w| match w {
            Work::Series(uid) => Some(uid),
            Work::Rejected(_) => None,
        })
        .map(|uid| {
            let o = match process_one(&ds, uid, out, config, &hash) {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(series = %uid, error = %e, "preprocessing failed");
                    let _ = std::fs::remove_dir_all(tmp_dir(out, uid));
                    Outcome::Failed(e.to_string())
                }
            };
            progress(finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
            (uid.to_string(), o)
        })
        .collect();
    let suffix = if shard.count > 1 {
        format!("-{}-of-{}", shard.index, shard.count)
    } else {
        String::new()
    };
    let csv_path = |name: &str| -> PathBuf { out.join(format!("{name}{suffix}.csv")) };
    let mut summary = DatasetSummary::default();
    let mut errors = CsvTable::new(csv_path("errors"), &["SeriesInstanceUID", "error"])?;
    let mut warnings = CsvTable::new(csv_path("warnings"), &["SeriesInstanceUID", "warning"])?;
    let mut index = CsvTable::new(
        csv_path("index"),
        &[
            "SeriesInstanceUID",
            "Modality",
            "ni",
            "nj",
            "nk",
            "image",
            "mask",
            "meta",
        ],
    )?;
    for w in &work {
        if let Work::Rejected(r) = w {
            if r.is_missing() {
                summary.missing += 1;
            } else {
                summary.failed += 1;
            }
            errors.row(&[r.series_uid.as_deref().unwrap_or(""), &r.issue.to_string()])?;
        }
    }
    for (uid, o) in &outcomes {
        match o {
            Outcome::Done => summary.done += 1,
            Outcome::Skipped => summary.skipped += 1,
            Outcome::Failed(msg) => {
                summary.failed += 1;
                errors.row(&[uid.as_str(), msg.as_str()])?;
                continue;
            }
        }
        let m = read_meta(&out.join(uid).join("meta.json"))?;
        if m.labels.is_none() {
            summary.unlabelled += 1;
        }
        if let VesselLabelSource::Failed { reason, .. } = &m.vessel_labels {
            warnings.row(&[uid.as_str(), &format!("vessel segmentation not used: {reason}")])?;
        }
        let s = m.after.size;
        index.row(&[
            uid.as_str(),
            m.modality.name(),
            &s.ni.to_string(),
            &s.nj.to_string(),
            &s.nk.to_string(),
            &format!("{uid}/image.nii.gz"),
            &format!("{uid}/mask.nii.gz"),
            &format!("{uid}/meta.json"),
        ])?;
    }
    let mine: std::collections::BTreeSet<&str> = outcomes.iter().map(|(u, _)| u.as_str()).collect();
    for i in ds.issues().iter().filter(|i| !i.rejects()) {
        let uid = i.series_uid().unwrap_or("");
        if mine.contains(uid) || (uid.is_empty() && shard.index == 0) {
            warnings.row(&[uid, &i.to_string()])?;
        }
    }
    errors.finish()?;
    warnings.finish()?;
    index.finish()?;
    tracing::info!(%summary, "preprocessing finished");
    Ok(summary)
}

/// A CSV file built in memory and written atomically.
struct CsvTable {
    path: PathBuf,
    w: csv::Writer<Vec<u8>>,
}

impl CsvTable {
    fn new(path: PathBuf, header: &[&str]) -> Result<Self> {
        let mut t = Self {
            path,
            w: csv::Writer::from_writer(Vec::new()),
        };
        t.row(header)?;
        Ok(t)
    }

    fn row(&mut self, fields: &[&str]) -> Result<()> {
        self.w
            .write_record(fields)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", self.path.display())))
    }

    fn finish(self) -> Result<()> {
        let bytes = self
            .w
            .into_inner()
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", self.path.display())))?;
        Ok(aneu_io::write_atomic(&self.path, &bytes)?)
    }
}

/// Reads a `meta.json` sidecar: the one reader of the format.
///
/// # Errors
/// A missing or malformed file, named.
pub fn read_meta(path: &Path) -> Result<PreprocessMeta> {
    let text = std::fs::read_to_string(path).at(path)?;
    serde_json::from_str(&text).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
}

/// The preprocessing config with this hash, as [`preprocess_dataset`]
/// wrote it to `<out>/config-<hash>.json`.
///
/// # Errors
/// A missing or malformed file, named.
pub fn read_dataset_config(out: impl AsRef<Path>, hash: &str) -> Result<PreprocessConfig> {
    PreprocessConfig::from_json_file(out.as_ref().join(format!("config-{hash}.json")))
}

/// Reads one preprocessed series folder (`image.nii.gz`, `mask.nii.gz`,
/// `meta.json`, and `vessels.nii.gz` when the sidecar names a source) as
/// [`preprocess_dataset`] wrote it.
///
/// # Errors
/// Unreadable or inconsistent files, each error naming the file: a
/// missing or malformed `meta.json`, NIfTI errors, or a mask whose grid
/// differs from the image's.
pub fn read_preprocessed(dir: impl AsRef<Path>) -> Result<Preprocessed> {
    let dir = dir.as_ref();
    let meta = read_meta(&dir.join("meta.json"))?;
    let image = aneu_io::read_nifti(dir.join("image.nii.gz"))?;
    let mask_f = aneu_io::read_nifti(dir.join("mask.nii.gz"))?;
    if mask_f.size() != image.size() || mask_f.affine().max_abs_diff(image.affine()) > 1e-3 {
        return Err(Error::InvalidMask(format!(
            "{}: the mask's grid differs from the image's",
            dir.display()
        )));
    }
    let mask = mask_f.map(|v| u8::from(*v != 0.0));
    let vessels = match meta.vessel_labels {
        VesselLabelSource::File { .. } => {
            let path = dir.join(VESSELS_FILE);
            let v = aneu_io::read_vessel_labels(&path)?;
            if v.size() != image.size() || v.affine().max_abs_diff(image.affine()) > 1e-3 {
                return Err(Error::InvalidMask(format!(
                    "{}: the vessel labels' grid differs from the image's",
                    path.display()
                )));
            }
            Some(v)
        }
        _ => None,
    };
    Ok(Preprocessed {
        image,
        mask,
        vessels,
        meta,
    })
}

/// Series `uid` of a preprocessed dataset `out` (`<out>/<uid>/`, as
/// [`preprocess_dataset`] wrote it), when it was made with the config of
/// hash `hash` (see [`PreprocessConfig::hash`]) as `modality`: the data
/// that preprocessing that series again would give. Its image and mask
/// are put on the sidecar's grid (`meta.after`, kept in double precision;
/// NIfTI stores the affine in single precision).
///
/// `Ok(None)` when `out` does not hold the series, or holds it made with
/// another config, as another modality, or on another grid.
///
/// # Errors
/// As [`read_preprocessed`], for a series folder that cannot be read.
pub fn read_stored(out: impl AsRef<Path>, uid: &str, hash: &str, modality: Modality) -> Result<Option<Preprocessed>> {
    let dir = out.as_ref().join(uid);
    if !dir.join("meta.json").exists() {
        return Ok(None);
    }
    let p = read_preprocessed(&dir)?;
    let grid = &p.meta.after;
    if p.meta.config_hash != hash
        || p.meta.modality != modality
        || p.image.size() != grid.size
        || p.image.affine().max_abs_diff(&grid.affine) > 1e-3
    {
        return Ok(None);
    }
    Ok(Some(Preprocessed {
        image: Volume::new(p.image.into_parts().0, grid.affine)?,
        mask: Volume::new(p.mask.into_parts().0, grid.affine)?,
        vessels: p
            .vessels
            .map(|v| Volume::new(v.into_parts().0, grid.affine))
            .transpose()?,
        meta: p.meta,
    }))
}

/// The series folders of a preprocessed dataset (those with a
/// `meta.json`; unfinished `.aneu-tmp-*` folders are skipped), sorted by name.
///
/// # Errors
/// When `out` cannot be listed.
pub fn list_preprocessed(out: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let out = out.as_ref();
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(out).at(out)? {
        let entry = entry.at(out)?;
        let p = entry.path();
        let name = entry.file_name();
        if p.is_dir() && !name.to_string_lossy().starts_with('.') && p.join("meta.json").is_file() {
            dirs.push(p);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// FNV-1a 64 of `data` (text or bytes) as 16 hex digits: stable across platforms, Rust
/// versions and runs, unlike `std`'s hasher, so it can be written to disk
/// and compared by later runs ([`PreprocessConfig::hash`], and the
/// prediction run hash of `aneu-infer`).
///
/// ```
/// // the published FNV-1a 64 test vectors
/// assert_eq!(aneu_preproc::stable_hash(""), "cbf29ce484222325");
/// assert_eq!(aneu_preproc::stable_hash("a"), "af63dc4c8601ec8c");
/// assert_eq!(aneu_preproc::stable_hash("foobar"), "85944171f73967e8");
/// assert_eq!(aneu_preproc::stable_hash(b"foobar"), "85944171f73967e8"); // bytes alike
/// ```
pub fn stable_hash(data: impl AsRef<[u8]>) -> String {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(data.as_ref());
    format!("{:016x}", h.finish())
}

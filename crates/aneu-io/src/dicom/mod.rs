//! DICOM series → [`Volume<f32>`] with exact geometry, and back.
//!
//! [`DicomSeries::read`] takes a folder, finds the DICOM files in it (and
//! skips, with a log line, files that are not images: a README, a
//! DICOMDIR, a structured report), groups them by series, sorts the
//! slices by the projection of ImagePositionPatient on the slice normal —
//! never by InstanceNumber or file name — takes the spacing from the
//! positions, applies the modality rescale, and builds the RAS+ affine.
//!
//! A series is whole or it is an error. An empty file, a file named
//! `*.dcm` that is not DICOM, an image object without PixelData, a tag
//! that is NaN, infinite or outside the standard's range, or pixel data
//! whose length disagrees with Rows × Columns × frames is an error that
//! names the file and the tag; it never turns into a volume that is a
//! slice short or shifted by a default rescale. See `docs/reliability.md`.
//! Single-frame series and Enhanced multi-frame files are both supported,
//! in every transfer syntax that dicom-rs decodes here (native, deflate,
//! RLE, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000).
//!
//! [`write_series`] and [`write_enhanced`] write a volume back as a
//! single-frame series or one Enhanced multi-frame file.

mod codestream;
mod guard;
mod read;
mod rle;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::geometry::{Voxel, WorldPoint};
use crate::volume::Volume;
use crate::{Error, Limits, Result};

pub use read::read_stored_frames;
pub use write::{DicomWriteOptions, StoredType, TransferSyntaxChoice, WrittenInstance, write_enhanced, write_series};

/// Options for [`DicomSeries::read_with_options`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadOptions {
    /// Read this SeriesInstanceUID when the folder holds several.
    pub series_uid: Option<String>,
    /// Skip files that are not whole (unparseable, empty, cut short,
    /// invalid tags) instead of failing the whole read. Each skipped file
    /// is logged as a warning and listed in [`SeriesMeta::skipped`], and
    /// the volume may then lack slices: opt in only when that is
    /// acceptable.
    pub skip_unreadable: bool,
    /// Allowed deviation of a slice gap from the median gap, as a fraction
    /// of the median (default 0.01 = 1 %), with a floor of 0.005 mm.
    pub spacing_tolerance: f64,
    /// Largest allowed angle, in degrees, between the stacking direction
    /// and the slice normal before the series counts as gantry-tilted.
    pub max_tilt_deg: f64,
    /// Allocation caps.
    pub limits: Limits,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            series_uid: None,
            skip_unreadable: false,
            spacing_tolerance: 0.01,
            max_tilt_deg: 0.1,
            limits: Limits::default(),
        }
    }
}

impl ReadOptions {
    /// Chooses the series to read.
    pub fn with_series_uid(mut self, uid: impl Into<String>) -> Self {
        self.series_uid = Some(uid.into());
        self
    }

    /// Skips unreadable DICOM files instead of failing.
    pub fn with_skip_unreadable(mut self, skip: bool) -> Self {
        self.skip_unreadable = skip;
        self
    }

    /// Sets [`ReadOptions::spacing_tolerance`].
    pub fn with_spacing_tolerance(mut self, fraction: f64) -> Self {
        self.spacing_tolerance = fraction;
        self
    }

    /// Sets [`ReadOptions::max_tilt_deg`].
    pub fn with_max_tilt_deg(mut self, deg: f64) -> Self {
        self.max_tilt_deg = deg;
        self
    }

    /// Sets the allocation caps.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// One series found in a folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesSummary {
    /// SeriesInstanceUID.
    pub uid: String,
    /// Modality (`CT`, `MR`, …).
    pub modality: String,
    /// SeriesDescription, if any.
    pub description: String,
    /// Number of image files.
    pub files: usize,
}

/// Descriptive attributes of a series (the first instance's values).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesMeta {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// StudyInstanceUID.
    pub study_uid: String,
    /// FrameOfReferenceUID.
    pub frame_of_reference_uid: String,
    /// SOPClassUID of the instances.
    pub sop_class_uid: String,
    /// Modality (`CT`, `MR`, …).
    pub modality: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// SeriesDescription.
    pub series_description: String,
    /// PatientID.
    pub patient_id: String,
    /// Transfer syntaxes met in the series.
    pub transfer_syntaxes: Vec<String>,
    /// Rows of each slice.
    pub rows: u32,
    /// Columns of each slice.
    pub columns: u32,
    /// BitsStored.
    pub bits_stored: u16,
    /// Whether stored values are signed (PixelRepresentation = 1).
    pub signed: bool,
    /// SliceThickness (mm), if present.
    pub slice_thickness: Option<f64>,
    /// Number of files read.
    pub files: usize,
    /// Whether the slices came from Enhanced multi-frame objects.
    pub multiframe: bool,
    /// The files of the folder that are not in the volume, sorted by
    /// path: files that are not images, and (with
    /// [`ReadOptions::skip_unreadable`]) unreadable files. Files of other
    /// series in the same folder are not listed.
    pub skipped: Vec<SkippedFile>,
}

/// A file of a series folder that did not go into the volume, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped (for an unreadable file, its error message).
    pub reason: String,
    /// `true` for a file that should have been part of the series but
    /// could not be read (skipped only because
    /// [`ReadOptions::skip_unreadable`] is set); `false` for a file that is
    /// not an image.
    pub unreadable: bool,
}

/// Where one slice of the volume came from, and its own geometry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SliceEntry {
    /// SOPInstanceUID of the instance holding the slice.
    pub sop_uid: String,
    /// 0-based frame number inside a multi-frame instance; `None` for a
    /// single-frame instance.
    pub frame: Option<u32>,
    /// Slice index k in the volume.
    pub k: usize,
    /// The file.
    pub path: PathBuf,
    /// ImagePositionPatient (LPS mm) of the slice's first pixel.
    pub position_lps: [f64; 3],
    /// ImageOrientationPatient: row direction, then column direction (LPS).
    pub orientation_lps: [f64; 6],
    /// PixelSpacing: [between rows, between columns] (mm).
    pub pixel_spacing: [f64; 2],
}

impl SliceEntry {
    /// Maps a pixel position (x = column, y = row, both continuous; pixel
    /// centres at integers) to the world through this slice's own geometry:
    /// `LPS = IPP + x·Δcol·IOP[0..3] + y·Δrow·IOP[3..6]`, then RAS.
    pub fn pixel_to_world(&self, x: f64, y: f64) -> WorldPoint {
        let o = &self.orientation_lps;
        let p = &self.position_lps;
        let (dr, dc) = (self.pixel_spacing[0], self.pixel_spacing[1]);
        let lps = [
            p[0] + x * dc * o[0] + y * dr * o[3],
            p[1] + x * dc * o[1] + y * dr * o[4],
            p[2] + x * dc * o[2] + y * dr * o[5],
        ];
        WorldPoint::from_lps(lps)
    }
}

/// Maps `(SOPInstanceUID, frame)` to slice k, and keeps each slice's own
/// geometry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SliceIndex {
    entries: Vec<SliceEntry>,
    #[serde(skip)]
    lookup: HashMap<(String, Option<u32>), usize>,
}

impl SliceIndex {
    pub(crate) fn new(entries: Vec<SliceEntry>) -> Self {
        let lookup = entries
            .iter()
            .enumerate()
            .map(|(n, e)| ((e.sop_uid.clone(), e.frame), n))
            .collect();
        Self { entries, lookup }
    }

    /// The slices in k order.
    pub fn entries(&self) -> &[SliceEntry] {
        &self.entries
    }

    /// The number of slices.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The slice of an instance (and frame, for multi-frame instances;
    /// frame 0 or `None` both find a single-frame instance).
    pub fn get(&self, sop_uid: &str, frame: Option<u32>) -> Option<&SliceEntry> {
        let key = (sop_uid.to_string(), frame);
        if let Some(&n) = self.lookup.get(&key) {
            return self.entries.get(n);
        }
        if frame == Some(0) {
            return self
                .lookup
                .get(&(sop_uid.to_string(), None))
                .and_then(|&n| self.entries.get(n));
        }
        None
    }
}

/// A DICOM series read into a volume.
///
/// ```no_run
/// use aneu_io::DicomSeries;
/// let s = DicomSeries::read("series/1.2.3")?;
/// println!("{:?} voxels, {:?} mm, {}", s.volume.size(), s.volume.spacing(),
///          s.volume.affine().axis_codes_string());
/// # Ok::<(), aneu_io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct DicomSeries {
    /// The rescaled values (Modality LUT applied) on the series grid: i
    /// along the rows (columns of the image), j down the rows, k along the
    /// slice normal in increasing projection order.
    pub volume: Volume<f32>,
    /// Descriptive attributes.
    pub meta: SeriesMeta,
    /// `(SOPInstanceUID, frame)` → k, with each slice's own geometry.
    pub slices: SliceIndex,
}

impl DicomSeries {
    /// Reads the only series in `dir` with default options.
    ///
    /// # Errors
    /// See [`DicomSeries::read_with_options`].
    pub fn read(dir: impl AsRef<Path>) -> Result<Self> {
        Self::read_with_options(dir, &ReadOptions::default())
    }

    /// Reads one series from a folder (searched recursively), or from a
    /// single file (an Enhanced multi-frame object, say).
    ///
    /// # Errors
    /// [`Error::NoDicom`], [`Error::MultipleSeries`],
    /// [`Error::SeriesNotFound`], [`Error::UnreadableFiles`] (whose
    /// `first` names the file: [`Error::EmptyFile`], [`Error::NotDicom`],
    /// [`Error::Malformed`], [`Error::MissingTag`] for an image without
    /// PixelData, …), the geometry errors ([`Error::NonUniformSpacing`],
    /// [`Error::DuplicatePosition`], [`Error::MixedOrientation`],
    /// [`Error::MixedSize`], [`Error::GantryTilt`], [`Error::MissingTag`]),
    /// [`Error::InvalidTag`] for a tag that is NaN, infinite or out of
    /// range (rescale, bit depths, positions, spacings, pixel data length),
    /// [`Error::NonFiniteVoxels`], decoding errors, and
    /// [`Error::LimitExceeded`] (sizes, sequence nesting depth).
    pub fn read_with_options(dir: impl AsRef<Path>, opts: &ReadOptions) -> Result<Self> {
        read::read_series(dir.as_ref(), opts)
    }

    /// Lists the series in a folder without decoding pixels.
    ///
    /// # Errors
    /// [`Error::Io`] if the folder cannot be listed.
    pub fn list(dir: impl AsRef<Path>, limits: &Limits) -> Result<Vec<SeriesSummary>> {
        read::list_series(dir.as_ref(), limits)
    }

    /// Maps a localizer (pixel `x` = column, `y` = row on an instance, and
    /// the frame for multi-frame instances) to a world point, through that
    /// slice's own geometry.
    ///
    /// # Errors
    /// [`Error::UnknownInstance`] if the series has no such slice.
    pub fn localizer_to_world(&self, sop_uid: &str, frame: Option<u32>, x: f64, y: f64) -> Result<WorldPoint> {
        let e = self.slices.get(sop_uid, frame).ok_or_else(|| Error::UnknownInstance {
            series_uid: self.meta.series_uid.clone(),
            sop_uid: sop_uid.to_string(),
            frame,
        })?;
        Ok(e.pixel_to_world(x, y))
    }

    /// [`DicomSeries::localizer_to_world`], then into this series' voxel
    /// grid.
    ///
    /// # Errors
    /// As [`DicomSeries::localizer_to_world`].
    pub fn localizer_to_voxel(&self, sop_uid: &str, frame: Option<u32>, x: f64, y: f64) -> Result<Voxel> {
        Ok(self
            .volume
            .world_to_voxel(self.localizer_to_world(sop_uid, frame, x, y)?))
    }
}

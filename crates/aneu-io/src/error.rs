//! The error type of `aneu-io`.

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing images, labels
/// and localizers. Each variant names the file (or series) and the reason,
/// and keeps the underlying cause as its `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error on a file or folder.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// aneu refuses to write there: the output would overlap the input,
    /// replace something aneu did not write, or write through a link or
    /// into a device or FIFO.
    #[error("{path}: refusing to write: {reason}")]
    UnsafeOutput {
        /// The output path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file has no DICOM preamble (`DICM` at byte 128).
    #[error("{path}: not a DICOM file (no DICM magic at byte 128)")]
    NotDicom {
        /// The file.
        path: PathBuf,
    },
    /// The file is empty (0 bytes): a download or copy that stopped
    /// before writing anything. A series folder with such a file is not
    /// whole, so this is an error, not a skipped file.
    #[error("{path}: empty file (0 bytes)")]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// A gzip-compressed file is corrupt: bad deflate data, a stream cut
    /// short, or a trailer whose CRC-32 or length does not match the data.
    #[error("{path}: corrupt gzip stream: {source}")]
    CorruptGzip {
        /// The file.
        path: PathBuf,
        /// The decompressor's report.
        #[source]
        source: std::io::Error,
    },
    /// An image holds NaN or infinite voxel values, which no step
    /// downstream can use.
    #[error("{path}: {count} non-finite voxel value(s) (NaN or infinity), first at voxel (i, j, k) = ({}, {}, {})", first.i, first.j, first.k)]
    NonFiniteVoxels {
        /// The file.
        path: PathBuf,
        /// How many voxels are NaN or infinite.
        count: u64,
        /// The first such voxel in memory order.
        first: crate::VoxelIndex,
    },
    /// The DICOM parser rejected the file.
    #[error("{path}: cannot parse DICOM: {source}")]
    DicomParse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dicom::object::ReadError>,
    },
    /// The file's structure is invalid before the parser even starts: an
    /// element claims more bytes than the file holds (a truncated or
    /// hostile file).
    #[error("{path}: malformed DICOM: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong (which element, what length).
        reason: String,
    },
    /// The pixel data could not be decoded (unsupported or corrupt codec
    /// stream, or truncated pixel data).
    #[error("{path}: cannot decode pixel data: {source}")]
    PixelDecode {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dicom::pixeldata::Error>,
    },
    /// The pixel data holds fewer bytes than Rows × Columns × frames needs.
    #[error("{path}: truncated pixel data: {found} bytes, {expected} expected")]
    TruncatedPixelData {
        /// The file.
        path: PathBuf,
        /// Bytes the header promises.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// A required attribute is absent.
    #[error("{path}: missing tag {tag}")]
    MissingTag {
        /// The file.
        path: PathBuf,
        /// The attribute's keyword, e.g. `ImagePositionPatient`.
        tag: &'static str,
    },
    /// An attribute holds a value that cannot be used: unparseable, NaN or
    /// infinite, or outside the range the DICOM standard (or, for
    /// `scl_slope` / `scl_inter`, the NIfTI-1 standard) allows.
    #[error("{path}: invalid {tag}: {reason}")]
    InvalidTag {
        /// The file.
        path: PathBuf,
        /// The attribute's keyword.
        tag: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
    /// The image kind is not supported (colour, mosaic, …).
    #[error("{path}: unsupported image: {reason}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A size read from a header exceeds the configured [`crate::Limits`].
    #[error("{path}: {what} = {requested} exceeds the limit of {limit}")]
    LimitExceeded {
        /// The file.
        path: PathBuf,
        /// What was counted (`voxels`, `bytes`, `file bytes`).
        what: &'static str,
        /// The amount the file asked for.
        requested: u64,
        /// The configured maximum.
        limit: u64,
    },
    /// The folder holds no readable DICOM image.
    #[error("{dir}: no DICOM image found ({skipped} other files skipped)")]
    NoDicom {
        /// The folder.
        dir: PathBuf,
        /// Files skipped: non-DICOM files, non-image DICOM objects, and
        /// (with [`crate::ReadOptions::skip_unreadable`]) unreadable files.
        skipped: usize,
    },
    /// The folder holds several series and none was chosen.
    #[error("{dir}: {} series found ({}); choose one with ReadOptions::with_series_uid", series.len(), series.iter().map(|s| format!("{} [{} files]", s.uid, s.files)).collect::<Vec<_>>().join(", "))]
    MultipleSeries {
        /// The folder.
        dir: PathBuf,
        /// The series found.
        series: Vec<crate::dicom::SeriesSummary>,
    },
    /// The requested series is not in the folder.
    #[error("{dir}: series {uid} not found")]
    SeriesNotFound {
        /// The folder.
        dir: PathBuf,
        /// The requested SeriesInstanceUID.
        uid: String,
    },
    /// Some DICOM files in the folder could not be read.
    #[error("{dir}: {} unreadable DICOM file(s); first: {first}", count)]
    UnreadableFiles {
        /// The folder.
        dir: PathBuf,
        /// How many files failed.
        count: usize,
        /// The first failure.
        #[source]
        first: Box<Error>,
    },
    /// Slices are not evenly spaced along the slice normal.
    #[error(
        "series {series_uid}: non-uniform slice spacing: gap of {largest_gap_mm:.4} mm between {} and {} (median {median_gap_mm:.4} mm, tolerance {tolerance_mm:.4} mm)",
        between.0.display(), between.1.display()
    )]
    NonUniformSpacing {
        /// The series.
        series_uid: String,
        /// The gap that deviates most from the median.
        largest_gap_mm: f64,
        /// The median gap.
        median_gap_mm: f64,
        /// The allowed deviation.
        tolerance_mm: f64,
        /// The two files around that gap.
        between: (PathBuf, PathBuf),
    },
    /// Two slices share one position along the normal.
    #[error("series {series_uid}: duplicate slice position {position_mm:.4} mm in {} and {}", first.display(), second.display())]
    DuplicatePosition {
        /// The series.
        series_uid: String,
        /// Position along the slice normal.
        position_mm: f64,
        /// One file.
        first: PathBuf,
        /// The other file.
        second: PathBuf,
    },
    /// Slices have different ImageOrientationPatient.
    #[error("series {series_uid}: mixed orientations: {path} has {found:?}, the series {expected:?}")]
    MixedOrientation {
        /// The series.
        series_uid: String,
        /// The odd file.
        path: PathBuf,
        /// Orientation of the first slice.
        expected: Box<[f64; 6]>,
        /// Orientation of this slice.
        found: Box<[f64; 6]>,
    },
    /// Slices have different sizes or pixel spacings.
    #[error("series {series_uid}: mixed slice geometry: {path} has {found}, the series {expected}")]
    MixedSize {
        /// The series.
        series_uid: String,
        /// The odd file.
        path: PathBuf,
        /// First slice's rows × columns (and spacing).
        expected: String,
        /// This slice's.
        found: String,
    },
    /// The slice stack is sheared (gantry tilt): slices are offset within
    /// their plane, not stacked along the normal.
    #[error("series {series_uid}: gantry tilt / sheared stack of {angle_deg:.3} degrees")]
    GantryTilt {
        /// The series.
        series_uid: String,
        /// Angle between the stacking direction and the slice normal.
        angle_deg: f64,
    },
    /// An affine is singular or not finite.
    #[error("invalid affine: {reason}")]
    InvalidAffine {
        /// Why.
        reason: String,
    },
    /// A volume cannot be built (empty, or shapes differ).
    #[error("invalid volume: {reason}")]
    InvalidVolume {
        /// Why.
        reason: String,
    },
    /// A vessel label map holds a value that is not one of its labels
    /// (see [`crate::rsna::VESSEL_LABELS`]).
    #[error("{path}: invalid vessel labels: {reason}")]
    InvalidLabels {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The NIfTI library rejected the file.
    #[error("{path}: NIfTI: {source}")]
    Nifti {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<nifti::NiftiError>,
    },
    /// A NIfTI header holds values that cannot be used (a singular affine,
    /// say).
    #[error("{path}: invalid NIfTI header: {source}")]
    InvalidNiftiHeader {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
    /// Writing a DICOM file failed.
    #[error("{path}: cannot write DICOM: {reason}")]
    DicomWrite {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A CSV file could not be read or written.
    #[error("{path}: CSV: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: csv::Error,
    },
    /// A CSV row holds a value that cannot be used.
    #[error("{path}:{line}: {reason}")]
    InvalidCsv {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A localizer `coordinates` string is malformed.
    #[error("malformed localizer coordinates {input:?}: {reason}")]
    LocalizerParse {
        /// The text.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// A localizer names an instance (or frame) that the series lacks.
    #[error("series {series_uid}: no slice for SOPInstanceUID {sop_uid}{}", frame.map(|f| format!(" frame {f}")).unwrap_or_default())]
    UnknownInstance {
        /// The series.
        series_uid: String,
        /// The instance.
        sop_uid: String,
        /// The frame, for multi-frame instances.
        frame: Option<u32>,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// An I/O error with the file it happened on: the one way aneu's crates
/// name the file of an `std::io::Error` ([`AtPath::at`]). Every crate's
/// error type converts it into its own file variant, with the same
/// message, `<path>: <cause>`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    /// The file or folder.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// Names the file of an I/O result.
///
/// ```
/// use aneu_io::AtPath;
/// let e = std::fs::read("no/such/file").at("no/such/file").unwrap_err();
/// assert!(e.to_string().starts_with("no/such/file: "));
/// assert_eq!(e.path, std::path::Path::new("no/such/file"));
/// ```
pub trait AtPath<T> {
    /// The result, with `path` attached to its error.
    ///
    /// # Errors
    /// The I/O error, as a [`FileError`] naming `path`.
    fn at(self, path: impl AsRef<std::path::Path>) -> std::result::Result<T, FileError>;
}

impl<T> AtPath<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<std::path::Path>) -> std::result::Result<T, FileError> {
        self.map_err(|source| FileError {
            path: path.as_ref().to_path_buf(),
            source,
        })
    }
}

impl From<FileError> for Error {
    fn from(e: FileError) -> Self {
        Error::io(e.path, e.source)
    }
}

/// `Result` with [`enum@Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The crate's error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong during inference and evaluation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An inference option is out of range, or the bundles of an ensemble
    /// disagree; found before any series is read.
    #[error("invalid inference config: {0}")]
    InvalidConfig(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A JSON or CSV file is malformed.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// One series failed; the cause names what went wrong.
    #[error("series {series}: {source}")]
    Series {
        /// The SeriesInstanceUID, or the folder when the UID is unknown.
        series: String,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
    /// The model produced a non-finite output.
    #[error("series {series}: the model produced {what}")]
    NonFinite {
        /// The series.
        series: String,
        /// What was not finite.
        what: String,
    },
    /// An error from aneu-io (reading DICOM or NIfTI).
    #[error(transparent)]
    Io(#[from] aneu_io::Error),
    /// An error from aneu-preproc.
    #[error(transparent)]
    Preproc(#[from] aneu_preproc::Error),
    /// An error from aneu-patch.
    #[error(transparent)]
    Patch(#[from] aneu_patch::Error),
    /// An error from aneu-models.
    #[error(transparent)]
    Model(#[from] aneu_models::Error),
    /// An error from aneu-bundle (reading or writing a model bundle).
    #[error(transparent)]
    Bundle(#[from] aneu_bundle::Error),
    /// An error from aneu-metrics.
    #[error(transparent)]
    Metrics(#[from] aneu_metrics::Error),
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<aneu_io::FileError> for Error {
    fn from(e: aneu_io::FileError) -> Self {
        Error::File {
            path: e.path,
            source: e.source,
        }
    }
}

pub(crate) fn format_err(path: &Path, reason: impl ToString) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

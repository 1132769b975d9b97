//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The training config is malformed or inconsistent; found before any
    /// training starts.
    #[error("invalid train config: {0}")]
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
    /// The data cannot be trained on (no positive scan in the training
    /// split, say).
    #[error("data: {0}")]
    Data(String),
    /// An aneu-phantom ground truth could not be read.
    #[error(transparent)]
    Phantom(#[from] aneu_phantom::Error),
    /// An error from aneu-patch.
    #[error(transparent)]
    Patch(#[from] aneu_patch::Error),
    /// An error from aneu-models (weights files).
    #[error(transparent)]
    Model(#[from] aneu_models::Error),
    /// An error from aneu-preproc (reading preprocessed series).
    #[error(transparent)]
    Preproc(#[from] aneu_preproc::Error),
    /// An error from aneu-bundle (writing or reading the model bundle).
    #[error(transparent)]
    Bundle(#[from] aneu_bundle::Error),
    /// An error from aneu-infer (hard-negative mining runs the predictor).
    #[error(transparent)]
    Infer(#[from] aneu_infer::Error),
    /// A file could not be written safely (aneu-io's atomic write).
    #[error(transparent)]
    Write(#[from] aneu_io::Error),
    /// An error from aneu-metrics.
    #[error(transparent)]
    Metrics(#[from] aneu_metrics::Error),
    /// A checkpoint could not be written or read.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// The recorder's message.
        reason: String,
    },
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

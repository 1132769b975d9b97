//! The crate's error type.

/// Everything that can go wrong in aneu-patch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A case's image, mask or findings are unusable (different grids, a
    /// non-finite voxel, an empty mask, a finding outside the volume).
    #[error("case {case}: {reason}")]
    InvalidCase {
        /// The case id (usually the SeriesInstanceUID).
        case: String,
        /// Which check failed.
        reason: String,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// An error from aneu-io.
    #[error(transparent)]
    Io(#[from] aneu_io::Error),
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

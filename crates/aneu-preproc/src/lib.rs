//! # aneu-preproc
//!
//! Preprocessing of [`aneu_io::Volume`]s, natively and in parallel:
//!
//! * [`resample()`]: to a target spacing on SimpleITK's output grid (same
//!   origin and direction, size = round-half-even(n·s / s_new)) with
//!   linear, nearest-neighbour or cubic B-spline (with prefiltering)
//!   interpolation, matching SimpleITK's `ResampleImageFilter`;
//! * [`normalize()`]: z-score, robust z (median and IQR), min-max,
//!   percentile clip-and-scale and CT windows with named presets,
//!   statistics optionally inside a mask.
//!
//! * [`mask`]: Otsu, morphology, connected components, hole filling, a
//!   [`head_mask`] and skull stripping, [`intracranial_mask`];
//! * [`atlas`]: skull stripping by affine registration of a template and
//!   its brain mask, for whole-head MRI ([`atlas_brain_mask`]);
//! * [`pipeline`]: [`preprocess_series`] and the restartable, shardable,
//!   parallel [`preprocess_dataset`].
//!
//! * [`n4()`]: N4 bias-field correction with SimpleITK's defaults.

//!
//! ```
//! use aneu_io::{Affine, Volume};
//! use aneu_preproc::{Interpolator, ResampleOptions, resample_with_options};
//! let a = Affine::from_parts([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]], [0.0; 3])?;
//! let v = Volume::new(ndarray::Array3::<f32>::ones((4, 5, 6)), a)?;
//! let r = resample_with_options(&v, &ResampleOptions::default().with_interpolator(Interpolator::Linear))?;
//! assert_eq!(r.size().to_ijk(), [12, 10, 12]);
//! assert_eq!(r.spacing(), [1.0, 1.0, 1.0]);
//! # Ok::<(), aneu_preproc::Error>(())
//! ```

#![forbid(unsafe_code)]

pub mod atlas;
pub mod mask;
pub mod n4;
pub mod normalize;
pub mod pipeline;
mod resample;

pub use atlas::{AffineTransform, Atlas, Registration, RegistrationOptions, atlas_brain_mask, register_affine};
pub use mask::{head_mask, intracranial_mask};
pub use n4::{N4Options, N4Result, n4};
pub use normalize::{CtWindow, Normalization, normalize};
pub use pipeline::{
    Annotation, DatasetSummary, Grid, MaskMethod, PIPELINE_VERSION, PreprocessConfig, PreprocessMeta, Preprocessed,
    Shard, VesselLabelSource, list_preprocessed, preprocess_dataset, preprocess_series, read_dataset_config, read_meta,
    read_preprocessed, read_stored, stable_hash, worker_threads,
};
pub use resample::{Interpolator, ResampleOptions, labels_on_grid, resample, resample_to_grid, resample_with_options};

/// Errors of `aneu-preproc`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error from aneu-io (an invalid output grid, say).
    #[error(transparent)]
    Io(#[from] aneu_io::Error),
    /// A parameter is out of its range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The mask selects no voxel, or shapes differ.
    #[error("invalid mask: {0}")]
    InvalidMask(String),
    /// The statistics are degenerate (a constant image, say).
    #[error("degenerate statistics: {0}")]
    Degenerate(String),
}

impl From<aneu_io::FileError> for Error {
    fn from(e: aneu_io::FileError) -> Self {
        Error::Io(e.into())
    }
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

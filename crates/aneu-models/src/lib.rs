//! # aneu-models
//!
//! The Burn networks of aneu, generic over the backend (Flex on the CPU by
//! default; CUDA and wgpu with the `cuda` and `wgpu` features):
//!
//! * [`Simple3dCnn`] and [`TinyUNet3d`]: the seed's baselines, one logit
//!   per patch;
//! * [`UNet3d`]: the main detector, with a dense head (a voxel-wise logit
//!   map at input resolution) and a classification head (Aneurysm Present
//!   plus 13 location logits);
//! * [`ops`]: the 3D operations Burn 0.21 lacks (max/avg/adaptive/global
//!   pooling, nearest and trilinear upsampling), with gradients;
//! * [`PatchModel`]: the one trait training and inference use, and
//!   [`AnyModel`] / [`ModelConfig`] to pick an architecture from JSON;
//! * [`ModelConfig::init_seeded`]: bit-reproducible weights for a seed,
//!   whatever other threads of the process do (Burn's generator is
//!   process-wide; see [`with_backend_rng`]).
//!
//! ```
//! use aneu_models::{ModelConfig, PatchModel, UNet3dConfig};
//! use burn::backend::Flex;
//! use burn::prelude::*;
//!
//! let device = Default::default();
//! let config = ModelConfig::UNet3d(UNet3dConfig::new().with_depth(3).with_base_filters(4));
//! let model = config.init_seeded::<Flex>(1, &device).unwrap();
//! let x = Tensor::<Flex, 5>::zeros([2, 1, 16, 16, 16], &device);
//! let out = model.forward_patches(x);
//! assert_eq!(out.logit.dims(), [2, 1]);
//! assert_eq!(out.locations.unwrap().dims(), [2, 13]);
//! assert_eq!(out.dense.unwrap().dims(), [2, 1, 16, 16, 16]);
//! ```

mod blocks;
pub mod cpu;
mod init;
mod nets;
pub mod ops;

/// The Burn release these models are built with, re-exported so that
/// callers use the same one.
pub use burn;

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};

pub use blocks::{ConvBlock, NormKind};
pub use init::with_backend_rng;
pub use nets::{
    ModelOutput, PatchModel, Simple3dCnn, Simple3dCnnConfig, TinyUNet3d, TinyUNet3dConfig, UNet3d, UNet3dConfig,
};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model config is invalid.
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    /// Saving or loading weights failed.
    #[error("weights {path}: {source}")]
    Record {
        /// The file.
        path: std::path::PathBuf,
        /// The recorder's error.
        #[source]
        source: burn::record::RecorderError,
    },
    /// The weights file does not fit the model config.
    #[error("weights {path}: {reason}")]
    WeightsMismatch {
        /// The file.
        path: std::path::PathBuf,
        /// What differs.
        reason: String,
    },
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any of the architectures, as written in a training config
/// (`{"UNet3d": {"depth": 4, …}}`).
#[derive(Config, Debug, PartialEq)]
pub enum ModelConfig {
    /// The seed's simple CNN.
    Simple3dCnn(Simple3dCnnConfig),
    /// The seed's tiny U-Net.
    TinyUNet3d(TinyUNet3dConfig),
    /// The main detector.
    UNet3d(UNet3dConfig),
}

impl ModelConfig {
    /// The architecture's name, as a model bundle's manifest records it.
    ///
    /// ```
    /// use aneu_models::{ModelConfig, UNet3dConfig};
    /// assert_eq!(ModelConfig::UNet3d(UNet3dConfig::new()).architecture(), "UNet3d");
    /// ```
    pub fn architecture(&self) -> &'static str {
        match self {
            ModelConfig::Simple3dCnn(_) => "Simple3dCnn",
            ModelConfig::TinyUNet3d(_) => "TinyUNet3d",
            ModelConfig::UNet3d(_) => "UNet3d",
        }
    }

    /// Whether the model has a dense head (a voxel-wise logit map, and so
    /// takes windows of any multiple of [`ModelConfig::size_multiple`]).
    /// The built model's [`PatchModel::has_dense_head`] gives the same
    /// answer.
    ///
    /// ```
    /// use aneu_models::{ModelConfig, TinyUNet3dConfig, UNet3dConfig};
    /// assert!(ModelConfig::UNet3d(UNet3dConfig::new()).has_dense_head());
    /// assert!(!ModelConfig::TinyUNet3d(TinyUNet3dConfig::new()).has_dense_head());
    /// ```
    pub fn has_dense_head(&self) -> bool {
        matches!(self, ModelConfig::UNet3d(_))
    }

    /// The classes of the model's vessel head (0: none); the built
    /// model's [`PatchModel::vessel_classes`] gives the same answer.
    pub fn vessel_classes(&self) -> usize {
        match self {
            ModelConfig::UNet3d(c) => c.vessel_classes.unwrap_or(0),
            _ => 0,
        }
    }

    /// Whether the model has the 13-location head; the built model's
    /// [`PatchModel::has_location_head`] gives the same answer.
    pub fn has_location_head(&self) -> bool {
        matches!(self, ModelConfig::UNet3d(_))
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        match self {
            ModelConfig::Simple3dCnn(c) => c.in_channels,
            ModelConfig::TinyUNet3d(c) => c.in_channels,
            ModelConfig::UNet3d(c) => c.in_channels,
        }
    }

    /// Patch edges must be multiples of this.
    pub fn size_multiple(&self) -> usize {
        match self {
            ModelConfig::Simple3dCnn(_) => 8,
            ModelConfig::TinyUNet3d(_) => 4,
            ModelConfig::UNet3d(c) => 1 << c.depth.saturating_sub(1).min(16),
        }
    }

    /// Checks the config, and that a patch of `patch_size` fits it.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`].
    pub fn validate_for_patch(&self, patch_size: usize) -> Result<()> {
        if self.in_channels() == 0 {
            return Err(Error::InvalidConfig("in_channels must be positive".into()));
        }
        match self {
            ModelConfig::Simple3dCnn(c) if c.channels.contains(&0) => {
                return Err(Error::InvalidConfig("Simple3dCnn channels must be positive".into()));
            }
            ModelConfig::TinyUNet3d(c) if c.base_filters == 0 => {
                return Err(Error::InvalidConfig("TinyUNet3d base_filters must be positive".into()));
            }
            ModelConfig::UNet3d(c) => c.validate().map_err(Error::InvalidConfig)?,
            _ => {}
        }
        let m = self.size_multiple();
        if patch_size == 0 || !patch_size.is_multiple_of(m) {
            return Err(Error::InvalidConfig(format!(
                "patch size {patch_size} is not a positive multiple of {m}"
            )));
        }
        Ok(())
    }

    /// Builds the network with lazily initialised parameters: they draw
    /// from the backend's generator on first use, outside any lock, so
    /// this is only for models whose weights are loaded at once
    /// ([`load_model`]). Everything else uses [`ModelConfig::init_seeded`]
    /// or [`ModelConfig::init`].
    fn init_lazy<B: Backend>(&self, device: &B::Device) -> Result<AnyModel<B>> {
        self.validate_for_patch(self.size_multiple())?;
        Ok(match self {
            ModelConfig::Simple3dCnn(c) => AnyModel::Simple3dCnn(c.init(device)),
            ModelConfig::TinyUNet3d(c) => AnyModel::TinyUNet3d(c.init(device)),
            ModelConfig::UNet3d(c) => AnyModel::UNet3d(c.init(device)),
        })
    }
}

/// Any of the networks, as one Burn module.
#[derive(Module, Debug)]
#[allow(missing_docs, clippy::large_enum_variant)] // one model per process; boxing buys nothing
pub enum AnyModel<B: Backend> {
    Simple3dCnn(Simple3dCnn<B>),
    TinyUNet3d(TinyUNet3d<B>),
    UNet3d(UNet3d<B>),
}

impl<B: Backend> PatchModel<B> for AnyModel<B> {
    fn forward_patches(&self, x: Tensor<B, 5>) -> ModelOutput<B> {
        match self {
            AnyModel::Simple3dCnn(m) => m.forward_patches(x),
            AnyModel::TinyUNet3d(m) => m.forward_patches(x),
            AnyModel::UNet3d(m) => m.forward_patches(x),
        }
    }
    fn in_channels(&self) -> usize {
        match self {
            AnyModel::Simple3dCnn(m) => m.in_channels(),
            AnyModel::TinyUNet3d(m) => m.in_channels(),
            AnyModel::UNet3d(m) => m.in_channels(),
        }
    }
    fn size_multiple(&self) -> usize {
        match self {
            AnyModel::Simple3dCnn(m) => m.size_multiple(),
            AnyModel::TinyUNet3d(m) => m.size_multiple(),
            AnyModel::UNet3d(m) => m.size_multiple(),
        }
    }
    fn has_dense_head(&self) -> bool {
        matches!(self, AnyModel::UNet3d(_))
    }
    fn has_location_head(&self) -> bool {
        matches!(self, AnyModel::UNet3d(_))
    }
    fn vessel_classes(&self) -> usize {
        match self {
            AnyModel::UNet3d(m) => m.vessel_classes(),
            _ => 0,
        }
    }
}

/// The recorder for weights files: named MessagePack, full precision.
pub type WeightsRecorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// Saves a module's weights to `path` (the recorder adds `.mpk`).
///
/// # Errors
/// [`Error::Record`] naming the file.
pub fn save_weights<B: Backend, M: Module<B>>(model: M, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref().to_path_buf();
    model
        .save_file(path.clone(), &WeightsRecorder::new())
        .map_err(|source| Error::Record { path, source })
}

/// Builds the model `config` describes and loads the weights that
/// [`save_weights`] wrote for it.
///
/// # Errors
/// [`Error::Record`] naming the file when it is missing or unreadable, and
/// [`Error::WeightsMismatch`] when it holds another architecture or other
/// layer sizes.
pub fn load_model<B: Backend>(config: &ModelConfig, path: impl AsRef<Path>, device: &B::Device) -> Result<AnyModel<B>> {
    // counting the parameters draws the lazy ones: under the lock, so that
    // a load never takes values out of a seeded initialisation's stream
    with_backend_rng(|| load_model_locked(config, path.as_ref(), device))
}

fn load_model_locked<B: Backend>(config: &ModelConfig, path: &Path, device: &B::Device) -> Result<AnyModel<B>> {
    use burn::record::Recorder;
    let path = path.to_path_buf();
    let record: AnyModelRecord<B> =
        WeightsRecorder::new()
            .load(path.clone(), device)
            .map_err(|source| Error::Record {
                path: path.clone(),
                source,
            })?;
    // loading replaces every parameter before it is drawn
    let model = config.init_lazy::<B>(device)?;
    let same_variant = matches!(
        (&model, &record),
        (AnyModel::Simple3dCnn(_), AnyModelRecord::Simple3dCnn(_))
            | (AnyModel::TinyUNet3d(_), AnyModelRecord::TinyUNet3d(_))
            | (AnyModel::UNet3d(_), AnyModelRecord::UNet3d(_))
    );
    if !same_variant {
        return Err(Error::WeightsMismatch {
            path,
            reason: "the weights are for another architecture".into(),
        });
    }
    let expected = model.num_params();
    // Burn asserts (panics) when a record's layer lists differ in length
    // from the module's; a foreign file is bad input, not a bug, so the
    // panic becomes an error.
    let loaded =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.load_record(record))).map_err(|_| {
            Error::WeightsMismatch {
                path: path.clone(),
                reason: "the layer structure differs from the config's".into(),
            }
        })?;
    if loaded.num_params() != expected {
        return Err(Error::WeightsMismatch {
            path,
            reason: format!(
                "{} parameters in the file, {expected} in the config",
                loaded.num_params()
            ),
        });
    }
    Ok(loaded)
}

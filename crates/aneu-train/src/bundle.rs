//! The model bundle: everything inference needs to reproduce training.
//!
//! ```text
//! bundle/
//!   bundle.json       manifest: format name and version, architecture,
//!                     patch size, position prior, best epoch and metric
//!   weights.mpk       the best checkpoint's weights (Burn named MessagePack)
//!   model.json        the ModelConfig
//!   preprocess.json   the PreprocessConfig of the training data
//!   train.json        the TrainConfig
//!   split.json        the patient-grouped split
//!   thresholds.json   decision thresholds (filled by calibration)
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aneu_models::{AnyModel, ModelConfig};
use aneu_preproc::PreprocessConfig;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::{Metric, TrainConfig};
use crate::error::file_err;
use crate::split::Split;
use crate::{Error, Result};

/// The bundle format's name in `bundle.json`.
pub const BUNDLE_FORMAT: &str = "aneu-model-bundle";
/// The bundle format's version; readers refuse newer versions.
pub const BUNDLE_VERSION: u32 = 1;

/// `bundle.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BundleManifest {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// [`BUNDLE_VERSION`] at writing.
    pub version: u32,
    /// The aneu version that wrote it.
    pub aneu_version: String,
    /// `Simple3dCnn`, `TinyUNet3d` or `UNet3d`.
    pub architecture: String,
    /// The patch edge in voxels.
    pub patch_size: usize,
    /// Whether the input has the three position channels.
    pub position_prior: bool,
    /// The epoch whose weights these are.
    pub best_epoch: usize,
    /// The metric that chose it.
    pub metric: Metric,
    /// Its validation value.
    pub metric_value: f64,
}

/// `thresholds.json`: decision thresholds on the probabilities. Training
/// writes an uncalibrated placeholder (0.5); calibration on validation
/// scans replaces it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Whether the values come from a calibration.
    pub calibrated: bool,
    /// How they were chosen (`"youden"`, `"f2"`, …), when calibrated.
    pub method: Option<String>,
    /// The Aneurysm Present threshold.
    pub present: f64,
    /// Per-location thresholds, when calibrated.
    pub locations: Option<Vec<f64>>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            calibrated: false,
            method: None,
            present: 0.5,
            locations: None,
        }
    }
}

/// A bundle read from disk.
#[derive(Clone, Debug)]
pub struct ModelBundle {
    /// The folder.
    pub dir: PathBuf,
    /// The manifest.
    pub manifest: BundleManifest,
    /// The model config.
    pub model: ModelConfig,
    /// The preprocessing config.
    pub preprocess: PreprocessConfig,
    /// The training config.
    pub train: TrainConfig,
    /// The split.
    pub split: Split,
    /// The thresholds.
    pub thresholds: Thresholds,
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T> {
    let text = std::fs::read_to_string(p).map_err(|e| file_err(p, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Format {
        path: p.to_path_buf(),
        reason: e.to_string(),
    })
}

fn write_json<T: Serialize>(p: &Path, v: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(v).map_err(|e| Error::Format {
        path: p.to_path_buf(),
        reason: e.to_string(),
    })?;
    std::fs::write(p, json).map_err(|e| file_err(p, e))
}

impl ModelBundle {
    /// Reads and checks a bundle.
    ///
    /// # Errors
    /// A missing or malformed file, named; [`Error::Format`] for another
    /// format or a newer version.
    pub fn read(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let mp = dir.join("bundle.json");
        let manifest: BundleManifest = read_json(&mp)?;
        if manifest.format != BUNDLE_FORMAT || manifest.version > BUNDLE_VERSION {
            return Err(Error::Format {
                path: mp,
                reason: format!(
                    "format {:?} version {} (this aneu reads {BUNDLE_FORMAT:?} up to version {BUNDLE_VERSION})",
                    manifest.format, manifest.version
                ),
            });
        }
        Ok(ModelBundle {
            model: read_json(&dir.join("model.json"))?,
            preprocess: read_json(&dir.join("preprocess.json"))?,
            train: read_json(&dir.join("train.json"))?,
            split: read_json(&dir.join("split.json"))?,
            thresholds: read_json(&dir.join("thresholds.json"))?,
            manifest,
            dir,
        })
    }

    /// Builds the model and loads its weights.
    ///
    /// # Errors
    /// [`Error::Model`] when the weights are missing or do not fit.
    pub fn load_model<B: Backend>(&self, device: &B::Device) -> Result<AnyModel<B>> {
        Ok(aneu_models::load_model(&self.model, self.dir.join("weights"), device)?)
    }

    /// Replaces `thresholds.json`.
    ///
    /// # Errors
    /// [`Error::File`].
    pub fn write_thresholds(&mut self, t: Thresholds) -> Result<()> {
        write_json(&self.dir.join("thresholds.json"), &t)?;
        self.thresholds = t;
        Ok(())
    }
}

/// Writes `dir` from a finished run in `run_dir` (its `best.mpk`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_bundle(
    dir: &Path,
    run_dir: &Path,
    data: &Path,
    cfg: &TrainConfig,
    split: &Split,
    hashes: &BTreeSet<String>,
    best_epoch: usize,
    best_value: f64,
) -> Result<()> {
    let [hash] = hashes.iter().collect::<Vec<_>>()[..] else {
        return Err(Error::Data(format!(
            "the training data mixes {} preprocessing configs ({hashes:?}); a bundle needs one",
            hashes.len()
        )));
    };
    let preprocess = aneu_preproc::read_dataset_config(data, hash)?;
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| file_err(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| file_err(&tmp, e))?;
    let best = run_dir.join("best.mpk");
    std::fs::copy(&best, tmp.join("weights.mpk")).map_err(|e| file_err(&best, e))?;
    write_json(
        &tmp.join("bundle.json"),
        &BundleManifest {
            format: BUNDLE_FORMAT.into(),
            version: BUNDLE_VERSION,
            aneu_version: env!("CARGO_PKG_VERSION").into(),
            architecture: cfg.model.architecture().into(),
            patch_size: cfg.sampler.patch_size,
            position_prior: cfg.position_prior,
            best_epoch,
            metric: cfg.early_stopping.metric,
            metric_value: best_value,
        },
    )?;
    write_json(&tmp.join("model.json"), &cfg.model)?;
    write_json(&tmp.join("preprocess.json"), &preprocess)?;
    write_json(&tmp.join("train.json"), cfg)?;
    write_json(&tmp.join("split.json"), split)?;
    write_json(&tmp.join("thresholds.json"), &Thresholds::default())?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| file_err(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| file_err(dir, e))
}

//! # aneu-bundle
//!
//! The model bundle: the folder a training run leaves behind and
//! inference reads, with everything needed to reproduce the training-time
//! preprocessing and the model's outputs.
//!
//! ```text
//! bundle/
//!   bundle.json       manifest: format name and version, architecture,
//!                     patch size, position prior, best epoch and metric
//!   weights.mpk       the best checkpoint's weights (Burn named MessagePack)
//!   model.json        the ModelConfig
//!   preprocess.json   the PreprocessConfig of the training data
//!   train.json        the training config (aneu-train's TrainConfig)
//!   split.json        the patient-grouped split
//!   thresholds.json   decision thresholds and, optionally, the
//!                     candidate rescorer and locator and the artery
//!                     labeller (filled by calibration)
//!   second_stage/     optional: the candidate classifier, a bundle of its
//!                     own (same preprocessing) that rescores the
//!                     candidates of this one
//! ```
//!
//! The format lives below both training and inference, so that training
//! can call inference (hard-negative mining and second-stage candidates
//! run the real predictor) and inference never depends on training.
//!
//! ```
//! use aneu_bundle::{BundleManifest, Metric, ModelBundle, Split, Thresholds};
//! use aneu_models::{ModelConfig, TinyUNet3dConfig, save_weights};
//! use burn::backend::Flex;
//!
//! let dir = tempfile::tempdir()?;
//! let model = ModelConfig::TinyUNet3d(TinyUNet3dConfig::new());
//! save_weights(model.init_seeded::<Flex>(1, &Default::default())?, dir.path().join("w"))?;
//! ModelBundle {
//!     dir: dir.path().join("bundle"),
//!     manifest: BundleManifest::new(&model, 32, false, 3, Metric::Auc, 0.91),
//!     model,
//!     preprocess: Default::default(),
//!     train: serde_json::json!({"epochs": 3}),
//!     split: Split::default(),
//!     thresholds: Thresholds::default(),
//!     second_stage: None,
//! }
//! .write(dir.path().join("w.mpk"))?;
//! let bundle = ModelBundle::read(dir.path().join("bundle"))?;
//! assert_eq!(bundle.manifest.patch_size, 32);
//! let _net = bundle.load_model::<Flex>(&Default::default())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use aneu_io::AtPath;
use std::path::{Path, PathBuf};

use aneu_models::{AnyModel, ModelConfig};
use aneu_preproc::PreprocessConfig;
use burn::prelude::Backend;
use serde::{Deserialize, Serialize};

/// The bundle format's name in `bundle.json`.
pub const BUNDLE_FORMAT: &str = "aneu-model-bundle";
/// The bundle format's version; readers refuse newer versions.
pub const BUNDLE_VERSION: u32 = 1;

/// Everything that can go wrong reading or writing a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is malformed, or of another format or a newer version.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The target folder exists and is not a bundle: aneu did not write
    /// it, so it is left alone.
    #[error("{path}: {reason}")]
    Refused {
        /// The folder.
        path: PathBuf,
        /// Why nothing was written.
        reason: String,
    },
    /// A file could not be written safely (aneu-io's atomic write: never
    /// through a link or onto a device).
    #[error(transparent)]
    Write(#[from] aneu_io::Error),
    /// The weights are missing or do not fit the model config.
    #[error(transparent)]
    Model(#[from] aneu_models::Error),
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

/// A validation metric that selects checkpoints and stops training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// F2 at threshold 0.5 (the seed's choice).
    F2,
    /// ROC AUC of the present head.
    Auc,
    /// ROC AUC of each validation patch's dense-map peak (its most
    /// probable voxel): what sliding-window inference turns into
    /// candidates and scan scores, so the choice for dense models, whose
    /// present head can keep improving while the map degrades. Models
    /// without a dense head fall back to [`Metric::Auc`].
    DenseAuc,
    /// Sensitivity at 0.5.
    Sensitivity,
    /// Accuracy at 0.5.
    Accuracy,
    /// The validation loss (lower is better).
    Loss,
}

impl Metric {
    /// Whether larger is better.
    pub fn maximise(self) -> bool {
        self != Metric::Loss
    }
}

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

impl BundleManifest {
    /// The manifest of a model written now, in this format and version.
    pub fn new(
        model: &ModelConfig,
        patch_size: usize,
        position_prior: bool,
        best_epoch: usize,
        metric: Metric,
        metric_value: f64,
    ) -> Self {
        BundleManifest {
            format: BUNDLE_FORMAT.into(),
            version: BUNDLE_VERSION,
            aneu_version: env!("CARGO_PKG_VERSION").into(),
            architecture: model.architecture().into(),
            patch_size,
            position_prior,
            best_epoch,
            metric,
            metric_value,
        }
    }
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
    /// The sliding-window edge (voxels) the calibration ran with, when it
    /// set one. Thresholds hold for the window they were chosen on, so
    /// inference uses this edge whenever its own config sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_roi: Option<usize>,
    /// The test-time augmentation the calibration ran with, when it
    /// recorded one. Thresholds hold for the scores of that TTA, so
    /// inference runs it whenever its own config sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tta: Option<Tta>,
    /// The candidate rescorer fitted with these thresholds, when the
    /// calibration fitted one: inference then scores every candidate with
    /// it, and the thresholds hold for its scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescorer: Option<Rescorer>,
    /// The candidate locator fitted with these thresholds, when the
    /// calibration fitted one: inference then names every candidate's
    /// location with it, and the location thresholds hold for its
    /// probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locator: Option<Locator>,
    /// The artery labeller fitted with these thresholds, when the
    /// calibration fitted one: inference then names each voxel of the
    /// artery map with it (a regression of the same form as the locator,
    /// on each vessel voxel's class probabilities and place in the head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artery_labeller: Option<Locator>,
}

/// Test-time augmentation by flips. The outputs of a flipped input are
/// flipped back (maps) or mirrored left ↔ right (locations, for a flip of
/// the i axis, which is R–L in the canonical RAS grid) and averaged
/// (aneu-infer runs it; thresholds record the TTA they were calibrated
/// with, [`Thresholds::tta`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tta {
    /// No augmentation.
    None,
    /// The input and its left–right mirror (2 passes).
    FlipLr,
    /// All 8 combinations of flips along k, j and i.
    Flips,
}

impl Tta {
    /// The flips `[k, j, i]` of each pass.
    pub fn flips(self) -> Vec<[bool; 3]> {
        match self {
            Tta::None => vec![[false; 3]],
            Tta::FlipLr => vec![[false; 3], [false, false, true]],
            Tta::Flips => (0..8).map(|n| [n & 4 != 0, n & 2 != 0, n & 1 != 0]).collect(),
        }
    }
}

/// A logistic regression that rescores candidates from named features
/// (the detector's own scores and what the vessel head says about the
/// candidate's neighbourhood): `P = σ(b + Σ wᵢ (xᵢ − μᵢ) / sᵢ)`. The
/// feature names pin their order and meaning; inference refuses a
/// rescorer whose names it does not compute.
///
/// ```
/// use aneu_bundle::Rescorer;
/// let r = Rescorer {
///     features: vec!["a".into(), "b".into()],
///     mean: vec![0.0, 1.0],
///     scale: vec![1.0, 2.0],
///     weights: vec![2.0, -1.0],
///     bias: 0.5,
///     fitted_on: 10,
///     positives: 4,
/// };
/// assert!(r.validate().is_ok());
/// // 0.5 + 2·1 − 1·(3 − 1)/2 = 1.5
/// let p = r.probability(&[1.0, 3.0]);
/// assert!((p - 1.0 / (1.0 + (-1.5f64).exp())).abs() < 1e-12);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rescorer {
    /// The features' names, in order.
    pub features: Vec<String>,
    /// Each feature's mean on the fitting candidates.
    pub mean: Vec<f64>,
    /// Each feature's standard deviation there (1 where it was 0).
    pub scale: Vec<f64>,
    /// The weights of the standardised features.
    pub weights: Vec<f64>,
    /// The intercept.
    pub bias: f64,
    /// How many candidates it was fitted on.
    pub fitted_on: usize,
    /// How many of them hit an aneurysm.
    pub positives: usize,
}

impl Rescorer {
    /// Checks that every vector has one entry per feature, and that every
    /// number is finite and every scale positive.
    ///
    /// # Errors
    /// What is wrong, in words.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let n = self.features.len();
        if n == 0 || self.mean.len() != n || self.scale.len() != n || self.weights.len() != n {
            return Err(format!(
                "a rescorer needs one mean, scale and weight per feature: {n} features, {} means, {} scales, {} weights",
                self.mean.len(),
                self.scale.len(),
                self.weights.len()
            ));
        }
        let finite = self.mean.iter().chain(&self.weights).all(|v| v.is_finite()) && self.bias.is_finite();
        if !finite || self.scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err("a rescorer's means, weights and bias must be finite, its scales positive".into());
        }
        Ok(())
    }

    /// The logit `b + Σ wᵢ (xᵢ − μᵢ) / sᵢ` of a feature vector (in
    /// [`Rescorer::features`] order).
    pub fn logit(&self, x: &[f64]) -> f64 {
        self.bias
            + x.iter()
                .zip(&self.mean)
                .zip(&self.scale)
                .zip(&self.weights)
                .map(|(((x, m), s), w)| w * (x - m) / s)
                .sum::<f64>()
    }

    /// The probability `σ(logit)`.
    pub fn probability(&self, x: &[f64]) -> f64 {
        1.0 / (1.0 + (-self.logit(x)).exp())
    }
}

/// A multinomial logistic regression that names an artery from named
/// features (what the vessel head says about a point's neighbourhood, and
/// where the point lies in the head):
/// `P(class c) = softmax_c(b_c + Σᵢ w_ci (xᵢ − μᵢ) / sᵢ)`. It names the
/// artery a candidate sits on (the candidate locator,
/// [`Thresholds::locator`]) and the artery of each vessel voxel (the
/// artery labeller, [`Thresholds::artery_labeller`]). As for a
/// [`Rescorer`], the feature and class names pin their order and meaning,
/// and inference refuses a locator whose names it does not compute.
///
/// ```
/// use aneu_bundle::Locator;
/// let l = Locator {
///     features: vec!["a".into()],
///     classes: vec!["x".into(), "y".into()],
///     mean: vec![1.0],
///     scale: vec![2.0],
///     weights: vec![vec![1.0], vec![-1.0]],
///     bias: vec![0.0, 0.5],
///     fitted_on: 10,
/// };
/// assert!(l.validate().is_ok());
/// // logits 1·(3 − 1)/2 = 1 and 0.5 − 1 = −0.5
/// let p = l.probabilities(&[3.0]);
/// let e = (-1.5f64).exp();
/// assert!((p[0] - 1.0 / (1.0 + e)).abs() < 1e-12 && (p[0] + p[1] - 1.0).abs() < 1e-12);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locator {
    /// The features' names, in order.
    pub features: Vec<String>,
    /// The classes' names, in order.
    pub classes: Vec<String>,
    /// Each feature's mean on the fitting candidates.
    pub mean: Vec<f64>,
    /// Each feature's standard deviation there (1 where it was 0).
    pub scale: Vec<f64>,
    /// Per class, the weights of the standardised features.
    pub weights: Vec<Vec<f64>>,
    /// Per class, the intercept.
    pub bias: Vec<f64>,
    /// How many rows it was fitted on (hits on aneurysms for the
    /// candidate locator, vessel voxels for the artery labeller).
    pub fitted_on: usize,
}

impl Locator {
    /// Checks that there are at least two classes, one weight row and
    /// intercept per class, one mean, scale and weight per feature, and
    /// that every number is finite and every scale positive.
    ///
    /// # Errors
    /// What is wrong, in words.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let (n, k) = (self.features.len(), self.classes.len());
        if n == 0
            || k < 2
            || self.mean.len() != n
            || self.scale.len() != n
            || self.bias.len() != k
            || self.weights.len() != k
            || self.weights.iter().any(|w| w.len() != n)
        {
            return Err(format!(
                "a locator needs one mean and scale per feature and one intercept and weight row (one weight per feature) \
                 per class, with at least two classes: {n} features, {k} classes, {} means, {} scales, {} intercepts, \
                 {} weight rows",
                self.mean.len(),
                self.scale.len(),
                self.bias.len(),
                self.weights.len()
            ));
        }
        let finite = self
            .mean
            .iter()
            .chain(self.weights.iter().flatten())
            .chain(&self.bias)
            .all(|v| v.is_finite());
        if !finite || self.scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err("a locator's means, weights and intercepts must be finite, its scales positive".into());
        }
        Ok(())
    }

    /// The class probabilities of a feature vector (in
    /// [`Locator::features`] order), in [`Locator::classes`] order: the
    /// softmax of the logits, summing to 1.
    pub fn probabilities(&self, x: &[f64]) -> Vec<f64> {
        let z: Vec<f64> = x
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .map(|((x, m), s)| (x - m) / s)
            .collect();
        let logits: Vec<f64> = self
            .weights
            .iter()
            .zip(&self.bias)
            .map(|(w, b)| b + w.iter().zip(&z).map(|(w, z)| w * z).sum::<f64>())
            .collect();
        let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - top).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.into_iter().map(|v| v / sum).collect()
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            calibrated: false,
            method: None,
            present: 0.5,
            locations: None,
            window_roi: None,
            tta: None,
            rescorer: None,
            locator: None,
            artery_labeller: None,
        }
    }
}

/// SeriesInstanceUIDs per part of a patient-grouped split (`split.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Training series.
    pub train: Vec<String>,
    /// Validation series.
    pub val: Vec<String>,
    /// Held-out test series.
    pub test: Vec<String>,
}

impl Split {
    /// Writes the split as JSON ([`write_json`]).
    ///
    /// # Errors
    /// [`Error::Format`] or [`Error::Write`].
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        write_json(path.as_ref(), self)
    }

    /// Reads a split written by [`Split::write`].
    ///
    /// # Errors
    /// [`Error::File`] or [`Error::Format`].
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        read_json(path.as_ref())
    }
}

/// Reads one JSON file of a bundle (or any aneu JSON record).
///
/// # Errors
/// [`Error::File`] or [`Error::Format`], naming the file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).at(path)?;
    serde_json::from_str(&text).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes pretty JSON with [`aneu_io::write_atomic`]: a reader sees the
/// old file or the new one, never half, and a link, folder or device at
/// `path` is refused.
///
/// # Errors
/// [`Error::Format`] when the value does not serialise; [`Error::Write`].
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(aneu_io::write_atomic(path, json.as_bytes())?)
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
    /// The training config as written (`aneu_train::TrainConfig::from_bundle`
    /// reads it typed); kept as JSON here so that the format does not
    /// depend on training.
    pub train: serde_json::Value,
    /// The split.
    pub split: Split,
    /// The thresholds.
    pub thresholds: Thresholds,
    /// The second stage (`second_stage/`): a candidate classifier that
    /// rescores this model's candidates, when the bundle has one.
    pub second_stage: Option<Box<ModelBundle>>,
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
        let stage = dir.join(SECOND_STAGE);
        let second_stage = if stage.join("bundle.json").is_file() {
            let b = ModelBundle::read(&stage)?;
            if b.second_stage.is_some() {
                return Err(Error::Format {
                    path: stage.join(SECOND_STAGE),
                    reason: "a second stage has no second stage of its own".into(),
                });
            }
            Some(Box::new(b))
        } else {
            None
        };
        let tp = dir.join("thresholds.json");
        let thresholds: Thresholds = read_json(&tp)?;
        let checks = [
            thresholds.rescorer.as_ref().map(Rescorer::validate),
            thresholds.locator.as_ref().map(Locator::validate),
            thresholds.artery_labeller.as_ref().map(Locator::validate),
        ];
        if let Some(Err(reason)) = checks.into_iter().flatten().find(|c| c.is_err()) {
            return Err(Error::Format { path: tp, reason });
        }
        Ok(ModelBundle {
            second_stage,
            model: read_json(&dir.join("model.json"))?,
            preprocess: read_json(&dir.join("preprocess.json"))?,
            train: read_json(&dir.join("train.json"))?,
            split: read_json(&dir.join("split.json"))?,
            thresholds,
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

    /// Replaces `thresholds.json` ([`write_json`]).
    ///
    /// # Errors
    /// [`Error::Format`] or [`Error::Write`].
    pub fn write_thresholds(&mut self, t: Thresholds) -> Result<()> {
        write_json(&self.dir.join("thresholds.json"), &t)?;
        self.thresholds = t;
        Ok(())
    }
}

impl ModelBundle {
    /// Writes the bundle into its folder, `self.dir`: the one writer of the
    /// format, used by training and by anything else that makes a bundle.
    /// The weights are copied from
    /// `weights` (a `.mpk` file from `aneu_models::save_weights`). The
    /// bundle is assembled in `<dir>.tmp` and renamed into place, so the
    /// folder holds a whole bundle or none. An existing folder is replaced
    /// only when it is a bundle (it holds `bundle.json`); anything else
    /// there is left alone.
    ///
    /// # Errors
    /// [`Error::Refused`] when the folder exists and is not a bundle;
    /// [`Error::File`] or [`Error::Write`] naming the file that could not
    /// be written.
    pub fn write(&self, weights: impl AsRef<Path>) -> Result<()> {
        let (dir, weights) = (self.dir.as_path(), weights.as_ref());
        if dir.exists() && !dir.join("bundle.json").is_file() {
            return Err(Error::Refused {
                path: dir.to_path_buf(),
                reason: "it exists and holds no bundle.json: aneu did not write it".into(),
            });
        }
        let tmp = dir.with_extension("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).at(&tmp)?;
        }
        let assembled = self.write_files(&tmp, weights);
        if assembled.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
            return assembled;
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).at(dir)?;
        }
        Ok(std::fs::rename(&tmp, dir).at(dir)?)
    }

    fn write_files(&self, tmp: &Path, weights: &Path) -> Result<()> {
        std::fs::create_dir_all(tmp).at(tmp)?;
        std::fs::copy(weights, tmp.join("weights.mpk")).at(weights)?;
        write_json(&tmp.join("model.json"), &self.model)?;
        write_json(&tmp.join("preprocess.json"), &self.preprocess)?;
        write_json(&tmp.join("train.json"), &self.train)?;
        write_json(&tmp.join("split.json"), &self.split)?;
        write_json(&tmp.join("thresholds.json"), &self.thresholds)?;
        if let Some(second) = &self.second_stage {
            second.write_files(&tmp.join(SECOND_STAGE), &second.dir.join("weights.mpk"))?;
        }
        // the manifest last: a folder with bundle.json is a whole bundle
        write_json(&tmp.join("bundle.json"), &self.manifest)
    }
}

/// The folder of a bundle's second stage.
pub const SECOND_STAGE: &str = "second_stage";

impl ModelBundle {
    /// Writes a two-stage detector to `out`: the bundle at `first` with the
    /// bundle at `second` as its second stage (both copied; `first`'s own
    /// second stage, if any, is replaced). `out` is written as
    /// [`ModelBundle::write`] writes.
    ///
    /// # Errors
    /// [`Error::Format`] when the two were trained on different
    /// preprocessing, or `second` has a second stage itself; as
    /// [`ModelBundle::read`] and [`ModelBundle::write`].
    pub fn combine(first: impl AsRef<Path>, second: impl AsRef<Path>, out: impl AsRef<Path>) -> Result<Self> {
        let mut b = ModelBundle::read(first)?;
        let s = ModelBundle::read(second)?;
        if s.second_stage.is_some() {
            return Err(Error::Format {
                path: s.dir.join(SECOND_STAGE),
                reason: "a second stage has no second stage of its own".into(),
            });
        }
        if s.preprocess != b.preprocess {
            return Err(Error::Format {
                path: s.dir.join("preprocess.json"),
                reason: format!("another preprocessing than {}'s", b.dir.display()),
            });
        }
        let weights = b.dir.join("weights.mpk");
        b.second_stage = Some(Box::new(s));
        b.dir = out.as_ref().to_path_buf();
        b.write(weights)?;
        ModelBundle::read(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_bundle(dir: &Path) -> ModelBundle {
        let model = ModelConfig::TinyUNet3d(aneu_models::TinyUNet3dConfig::new());
        ModelBundle {
            dir: dir.to_path_buf(),
            manifest: BundleManifest::new(&model, 16, true, 2, Metric::DenseAuc, 0.75),
            model,
            preprocess: PreprocessConfig::default(),
            train: serde_json::json!({"epochs": 2}),
            split: Split {
                train: vec!["a".into()],
                val: vec!["b".into()],
                test: vec!["c".into()],
            },
            thresholds: Thresholds::default(),
            second_stage: None,
        }
    }

    /// A two-stage bundle reads back with both stages whole; the second
    /// stage's weights are its own; stages of different preprocessing, or
    /// a second stage that has one itself, are refused.
    #[test]
    fn combined_bundles_keep_both_stages() {
        let d = tempfile::tempdir().unwrap();
        let (w1, w2) = (d.path().join("w1.mpk"), d.path().join("w2.mpk"));
        std::fs::write(&w1, b"first").unwrap();
        std::fs::write(&w2, b"second").unwrap();
        new_bundle(&d.path().join("one")).write(&w1).unwrap();
        let mut two = new_bundle(&d.path().join("two"));
        two.manifest.patch_size = 32;
        two.write(&w2).unwrap();
        let c = ModelBundle::combine(d.path().join("one"), d.path().join("two"), d.path().join("both")).unwrap();
        let s = c.second_stage.as_ref().unwrap();
        assert_eq!((c.manifest.patch_size, s.manifest.patch_size), (16, 32));
        assert_eq!(s.dir, d.path().join("both").join(SECOND_STAGE));
        assert_eq!(std::fs::read(c.dir.join("weights.mpk")).unwrap(), b"first");
        assert_eq!(std::fs::read(s.dir.join("weights.mpk")).unwrap(), b"second");
        assert!(ModelBundle::read(d.path().join("one")).unwrap().second_stage.is_none());
        // a two-stage bundle is no second stage
        let e = ModelBundle::combine(d.path().join("one"), d.path().join("both"), d.path().join("x")).unwrap_err();
        assert!(matches!(e, Error::Format { .. }), "{e}");
        let mut other = new_bundle(&d.path().join("three"));
        other.preprocess.mra.reorient = !other.preprocess.mra.reorient;
        other.write(&w2).unwrap();
        let e = ModelBundle::combine(d.path().join("one"), d.path().join("three"), d.path().join("y")).unwrap_err();
        assert!(matches!(e, Error::Format { .. }), "{e}");
        assert!(!d.path().join("x").exists() && !d.path().join("y").exists());
    }

    #[test]
    fn written_bundle_reads_back_field_for_field() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("w.mpk");
        std::fs::write(&w, b"weights").unwrap();
        let nb = new_bundle(&d.path().join("b"));
        nb.write(&w).unwrap();
        let b = ModelBundle::read(d.path().join("b")).unwrap();
        assert_eq!(b.manifest, nb.manifest);
        assert_eq!(b.model, nb.model);
        assert_eq!(b.preprocess, nb.preprocess);
        assert_eq!(b.train, nb.train);
        assert_eq!(b.split, nb.split);
        assert_eq!(b.thresholds, nb.thresholds);
        assert_eq!(std::fs::read(d.path().join("b/weights.mpk")).unwrap(), b"weights");
        assert!(!d.path().join("b.tmp").exists());
        // a second write replaces the bundle
        let mut nb2 = nb.clone();
        nb2.manifest.best_epoch = 9;
        nb2.write(&w).unwrap();
        assert_eq!(ModelBundle::read(d.path().join("b")).unwrap().manifest.best_epoch, 9);
    }

    /// A rescorer travels in thresholds.json; one whose vectors do not
    /// match its features is refused at reading, naming the file.
    #[test]
    fn rescorers_read_back_and_bad_ones_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("w.mpk");
        std::fs::write(&w, b"weights").unwrap();
        let mut nb = new_bundle(&d.path().join("b"));
        let r = Rescorer {
            features: vec!["x".into(), "y".into()],
            mean: vec![0.5, -1.0],
            scale: vec![2.0, 0.25],
            weights: vec![1.5, -0.5],
            bias: -2.0,
            fitted_on: 100,
            positives: 9,
        };
        nb.thresholds.rescorer = Some(r.clone());
        nb.write(&w).unwrap();
        assert_eq!(
            ModelBundle::read(d.path().join("b")).unwrap().thresholds.rescorer,
            Some(r.clone())
        );
        for bad in [
            Rescorer {
                weights: vec![1.0],
                ..r.clone()
            },
            Rescorer {
                scale: vec![0.0, 1.0],
                ..r.clone()
            },
            Rescorer {
                bias: f64::NAN,
                ..r.clone()
            },
        ] {
            nb.thresholds.rescorer = Some(bad);
            nb.write(&w).unwrap();
            let e = ModelBundle::read(d.path().join("b")).unwrap_err();
            assert!(
                matches!(e, Error::Format { .. }) && e.to_string().contains("thresholds.json"),
                "{e}"
            );
        }
    }

    /// A locator travels in thresholds.json too, as the candidate locator
    /// or the artery labeller; one with a ragged weight row, a missing
    /// intercept, one class or a NaN is refused at reading, in either
    /// place.
    #[test]
    fn locators_read_back_and_bad_ones_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("w.mpk");
        std::fs::write(&w, b"weights").unwrap();
        let mut nb = new_bundle(&d.path().join("b"));
        let l = Locator {
            features: vec!["x".into(), "y".into()],
            classes: vec!["a".into(), "b".into(), "c".into()],
            mean: vec![0.5, -1.0],
            scale: vec![2.0, 0.25],
            weights: vec![vec![1.0, 0.0], vec![-0.5, 2.0], vec![0.0, -1.0]],
            bias: vec![0.1, 0.2, -0.3],
            fitted_on: 40,
        };
        nb.thresholds.locator = Some(l.clone());
        nb.thresholds.artery_labeller = Some(Locator {
            fitted_on: 900,
            ..l.clone()
        });
        nb.write(&w).unwrap();
        let read = ModelBundle::read(d.path().join("b")).unwrap().thresholds;
        assert_eq!(read.artery_labeller.unwrap().fitted_on, 900);
        let back = read.locator.unwrap();
        assert_eq!(back, l);
        let p = back.probabilities(&[1.0, 2.0]);
        assert_eq!(p.len(), 3);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12 && p.iter().all(|p| *p > 0.0));
        let mut ragged = l.weights.clone();
        ragged[1].pop();
        for bad in [
            Locator {
                weights: ragged,
                ..l.clone()
            },
            Locator {
                bias: vec![0.0, 0.0],
                ..l.clone()
            },
            Locator {
                classes: vec!["a".into()],
                weights: vec![vec![1.0, 0.0]],
                bias: vec![0.0],
                ..l.clone()
            },
            Locator {
                mean: vec![f64::NAN, 0.0],
                ..l.clone()
            },
        ] {
            for labeller in [false, true] {
                let t = &mut nb.thresholds;
                (t.locator, t.artery_labeller) = if labeller {
                    (Some(l.clone()), Some(bad.clone()))
                } else {
                    (Some(bad.clone()), None)
                };
                nb.write(&w).unwrap();
                let e = ModelBundle::read(d.path().join("b")).unwrap_err();
                assert!(
                    matches!(e, Error::Format { .. }) && e.to_string().contains("thresholds.json"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn a_folder_that_is_not_a_bundle_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("w.mpk");
        std::fs::write(&w, b"weights").unwrap();
        let target = d.path().join("mine");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("notes.txt"), b"user data").unwrap();
        let e = new_bundle(&target).write(&w).unwrap_err();
        assert!(matches!(e, Error::Refused { .. }), "{e}");
        assert_eq!(std::fs::read(target.join("notes.txt")).unwrap(), b"user data");
        // missing weights: an error naming them, and no half bundle
        let e = new_bundle(&d.path().join("b"))
            .write(d.path().join("nope.mpk"))
            .unwrap_err();
        assert!(e.to_string().contains("nope.mpk"), "{e}");
        assert!(!d.path().join("b").exists() && !d.path().join("b.tmp").exists());
    }

    #[test]
    fn newer_versions_and_other_formats_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("w.mpk");
        std::fs::write(&w, b"weights").unwrap();
        for (format, version) in [(BUNDLE_FORMAT, BUNDLE_VERSION + 1), ("other", 1)] {
            let mut nb = new_bundle(&d.path().join("b"));
            nb.manifest.format = format.into();
            nb.manifest.version = version;
            nb.write(&w).unwrap();
            let e = ModelBundle::read(d.path().join("b")).unwrap_err();
            assert!(
                matches!(e, Error::Format { .. }) && e.to_string().contains("bundle.json"),
                "{e}"
            );
        }
    }
}

//! The training configuration, one JSON file.

use aneu_io::AtPath;
use std::path::Path;

use aneu_models::{ModelConfig, TinyUNet3dConfig};
use aneu_patch::SamplerConfig;
use aneu_patch::augment::Compose;
use serde::{Deserialize, Serialize};

use aneu_bundle::{Metric, ModelBundle};

use crate::{Error, Result};

/// The per-patch classification loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClassLoss {
    /// Binary cross-entropy with logits.
    Bce,
    /// Focal loss (Lin et al. 2017): `α_t (1 − p_t)^γ · BCE`, α on the
    /// positives (the seed's best: γ = 2, α = 0.8).
    Focal {
        /// Focusing parameter γ ≥ 0.
        gamma: f64,
        /// Weight of the positive class, in [0, 1].
        alpha: f64,
    },
}

/// The dense (voxel-map) loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenseLoss {
    /// Voxel-wise BCE with logits.
    Bce,
    /// Soft Dice over each patch (1 − Dice).
    Dice,
    /// Voxel-wise focal loss plus soft Dice.
    FocalDice,
    /// Voxel-wise BCE plus soft Dice (nnU-Net's default).
    BceDice,
}

/// The loss: a weighted sum of the patch term, the 13 location terms and
/// the dense term.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// The "aneurysm in patch" term.
    pub classification: ClassLoss,
    /// Its weight (RSNA's metric weighs Aneurysm Present 13 times a
    /// location).
    pub present_weight: f64,
    /// Weight of the mean BCE over the 13 location logits (models with a
    /// location head; 0 disables).
    pub location_weight: f64,
    /// The dense loss (models with a dense head).
    pub dense: DenseLoss,
    /// Its weight (0 disables).
    pub dense_weight: f64,
    /// γ of the focal terms of the dense loss.
    pub dense_focal_gamma: f64,
    /// Weight of the vessel head's voxel-wise cross-entropy against the
    /// vessel labels (`aneu_io::VESSEL_LABELS`; models with a vessel head,
    /// `vessel_classes` of 14; 0 disables). It counts only the patches of
    /// scans that have labels.
    pub vessel_weight: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            classification: ClassLoss::Bce,
            present_weight: 1.0,
            location_weight: 0.0,
            dense: DenseLoss::BceDice,
            dense_weight: 0.0,
            dense_focal_gamma: 2.0,
            vessel_weight: 0.0,
        }
    }
}

/// Which optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam, with L2 weight decay added to the gradient.
    Adam,
    /// AdamW, with decoupled weight decay.
    AdamW,
}

/// The optimiser.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Adam or AdamW.
    pub kind: OptimizerKind,
    /// The base learning rate.
    pub lr: f64,
    /// Weight decay (0 disables).
    pub weight_decay: f64,
    /// Clip the gradient norm to this (none when absent).
    pub grad_clip_norm: Option<f64>,
    /// Batches whose gradients are summed before a step.
    pub accumulation: usize,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Adam,
            lr: 1e-3,
            weight_decay: 0.0,
            grad_clip_norm: None,
            accumulation: 1,
        }
    }
}

/// The learning-rate schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// Multiply the rate by `factor` after `patience` epochs without
    /// improvement of the monitored metric, down to `min_lr`.
    ReduceOnPlateau {
        /// Factor in (0, 1).
        factor: f64,
        /// Epochs without improvement.
        patience: usize,
        /// The floor.
        min_lr: f64,
    },
    /// Linear warm-up over `warmup_epochs`, then a cosine decay to `min_lr`
    /// at the last epoch (per step).
    CosineWarmup {
        /// Warm-up epochs.
        warmup_epochs: usize,
        /// The final rate.
        min_lr: f64,
    },
}

/// Early stopping and checkpoint selection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EarlyStopping {
    /// The monitored metric.
    pub metric: Metric,
    /// Stop after this many epochs without improvement (0 never stops).
    pub patience: usize,
    /// The smallest change that counts as improvement.
    pub min_delta: f64,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        EarlyStopping {
            metric: Metric::F2,
            patience: 10,
            min_delta: 1e-4,
        }
    }
}

/// Floating-point precision of the forward and backward passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// f32 everywhere (the only choice on Flex).
    #[default]
    F32,
    /// f16 tensors (CUDA).
    F16,
    /// bf16 tensors (CUDA).
    Bf16,
}

/// Train/validation/test splitting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    /// Fraction of patients for training (without folds).
    pub train: f64,
    /// Fraction for validation (without folds).
    pub val: f64,
    /// Fraction held out for testing.
    pub test: f64,
    /// K-fold cross-validation over the non-test patients: `Some(k)`.
    pub folds: Option<usize>,
    /// The validation fold, `0..k`.
    pub fold: usize,
    /// The split's own seed.
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            train: 0.7,
            val: 0.2,
            test: 0.1,
            folds: None,
            fold: 0,
            seed: 42,
        }
    }
}

/// Hard-negative mining rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HardNegativeConfig {
    /// Rounds; round `r` mines after epoch `⌊r · epochs / (rounds + 1)⌋`.
    pub rounds: usize,
    /// False positives added per scan and round.
    pub per_case: usize,
    /// Only windows scoring at least this count as false positives.
    pub min_score: f64,
    /// Overlap of the mining windows.
    pub overlap: f64,
    /// Edge of the mining windows in voxels; `None` uses the patch size.
    /// Models with a dense head are fully convolutional: a window larger
    /// than the training patch (as large as the inference window) costs far
    /// fewer passes, and false positives are then read as local maxima of
    /// the merged dense map, several per window.
    pub window: Option<usize>,
}

impl Default for HardNegativeConfig {
    fn default() -> Self {
        HardNegativeConfig {
            rounds: 0,
            per_case: 8,
            min_score: 0.5,
            overlap: 0.5,
            window: None,
        }
    }
}

/// Everything a training run needs, as one JSON file. Every top-level
/// field and every field of the sub-configs has a default, except inside
/// `model`, where Burn's config types need every field spelled out.
///
/// ```
/// let c: aneu_train::TrainConfig = serde_json::from_str(r#"{
///     "model": {"UNet3d": {"in_channels": 1, "depth": 3, "base_filters": 8, "max_filters": 320,
///                          "norm": "instance", "residual": false, "head_hidden": 64}},
///     "sampler": {"patch_size": 32, "jitter": 4},
///     "loss": {"classification": {"type": "focal", "gamma": 2.0, "alpha": 0.8}, "dense_weight": 1.0},
///     "epochs": 20
/// }"#).unwrap();
/// c.validate().unwrap();
/// assert_eq!(c.batch_size, 8); // the default
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The architecture and its config.
    pub model: ModelConfig,
    /// Patch size, positives per aneurysm, negatives per scan by pool, jitter.
    pub sampler: SamplerConfig,
    /// Append the three normalised-position channels to the input (the
    /// model's `in_channels` must then be 4).
    pub position_prior: bool,
    /// Augmentations of training patches.
    pub augment: Compose,
    /// The loss.
    pub loss: LossConfig,
    /// The optimiser.
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// Epochs (one epoch = one freshly sampled set of patches per scan).
    pub epochs: usize,
    /// Patches per batch.
    pub batch_size: usize,
    /// Checkpoint selection and early stopping.
    pub early_stopping: EarlyStopping,
    /// Precision (f16/bf16 need CUDA).
    pub precision: Precision,
    /// The seed of weights, sampling and augmentation.
    pub seed: u64,
    /// The split.
    pub split: SplitConfig,
    /// Hard-negative rounds.
    pub hard_negatives: HardNegativeConfig,
    /// Train this model as the second stage (a candidate classifier) of
    /// the bundle in this folder: that bundle's split is used, and before
    /// the first epoch each training and validation scan's hard-negative
    /// pool is filled with the candidates that bundle proposes on it, as
    /// inference runs it (window edge and overlap from `hard_negatives`,
    /// at most `hard_negatives.per_case` candidates scoring at least
    /// `hard_negatives.min_score`, none near an aneurysm). With
    /// `sampler.pools.hard` weighted, the model learns to tell the first
    /// stage's false alarms from aneurysms. `ModelBundle::combine` then
    /// makes the two-stage detector.
    pub second_stage_of: Option<std::path::PathBuf>,
    /// Start from the weights of the bundle in this folder instead of
    /// random ones (fine-tuning): for example a network first trained
    /// to segment the arteries alone (`loss.vessel_weight` > 0, the
    /// aneurysm weights 0), then trained for aneurysms — RSNA 2025's
    /// winning recipe (a vessel-pretrained encoder). The bundle's model
    /// config must equal `model`, and it must have been trained on the
    /// data's preprocessing. The optimiser starts afresh.
    pub init_from: Option<std::path::PathBuf>,
    /// The aneu-phantom dataset root the data was preprocessed from (it
    /// holds `ground_truth/`): each aneurysm then has its true radius
    /// ([`crate::give_phantom_radii`]), which the dense target and
    /// `sampler.size_weighting` read. Without it findings have no size
    /// (RSNA's localizers carry none) and count as
    /// `sampler.default_radius_mm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phantom_truth: Option<std::path::PathBuf>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelConfig::TinyUNet3d(TinyUNet3dConfig::new()),
            sampler: SamplerConfig::default(),
            position_prior: false,
            augment: Compose::default(),
            loss: LossConfig::default(),
            optimizer: OptimizerConfig::default(),
            schedule: Schedule::Constant,
            epochs: 20,
            batch_size: 8,
            early_stopping: EarlyStopping::default(),
            precision: Precision::F32,
            seed: 0,
            split: SplitConfig::default(),
            hard_negatives: HardNegativeConfig::default(),
            second_stage_of: None,
            init_from: None,
            phantom_truth: None,
        }
    }
}

impl TrainConfig {
    /// Reads and validates a JSON config.
    ///
    /// # Errors
    /// [`Error::File`], [`Error::Format`] (unknown fields or architectures
    /// included) and [`Error::InvalidConfig`].
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).at(path)?;
        let c: TrainConfig = serde_json::from_str(&text).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// The config as a JSON value (what a bundle's `train.json` holds).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a value has no JSON form (a
    /// non-finite number).
    pub fn to_json_value(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self).map_err(|e| Error::InvalidConfig(format!("the config has no JSON form: {e}")))
    }

    /// The training config stored in a bundle (`train.json`).
    ///
    /// # Errors
    /// [`Error::Format`] naming the bundle's `train.json` when it is not a
    /// training config of this version.
    pub fn from_bundle(bundle: &ModelBundle) -> Result<Self> {
        serde_json::from_value(bundle.train.clone()).map_err(|e| Error::Format {
            path: bundle.dir.join("train.json"),
            reason: e.to_string(),
        })
    }

    /// Checks every range and the consistency between parts.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        self.sampler
            .validate()
            .map_err(|e| Error::InvalidConfig(format!("sampler: {e}")))?;
        self.augment
            .validate()
            .map_err(|e| Error::InvalidConfig(e.to_string()))?;
        self.model
            .validate_for_patch(self.sampler.patch_size)
            .map_err(|e| Error::InvalidConfig(format!("model: {e}")))?;
        let want_in = if self.position_prior { 4 } else { 1 };
        if self.model.in_channels() != want_in {
            return bad(format!(
                "the model takes {} input channels but position_prior = {} gives {want_in}",
                self.model.in_channels(),
                self.position_prior
            ));
        }
        if self.sampler.positives_per_finding == 0 {
            return bad("sampler.positives_per_finding is 0: training needs positive patches".into());
        }
        if self.epochs == 0 || self.batch_size == 0 || self.optimizer.accumulation == 0 {
            return bad("epochs, batch_size and optimizer.accumulation must be at least 1".into());
        }
        self.optimizer.validate()?;
        self.loss.validate(&self.model)?;
        self.schedule.validate(self.optimizer.lr)?;
        self.split.validate()?;
        let h = &self.hard_negatives;
        match &self.second_stage_of {
            None => h.validate(self.epochs, self.sampler.patch_size, &self.model)?,
            // the window and the candidates are the first stage's (checked
            // against its model when it loads)
            Some(_) if h.rounds > 0 => {
                return bad(
                    "second_stage_of: a second stage learns the first stage's candidates; hard_negatives.rounds must be 0"
                        .into(),
                );
            }
            Some(_) if h.per_case == 0 || !(0.0..1.0).contains(&h.overlap) => {
                return bad("second_stage_of: need hard_negatives.per_case ≥ 1 and overlap in [0, 1)".into());
            }
            Some(_) => {}
        }
        Ok(())
    }
}

fn bad(reason: String) -> Result<()> {
    Err(Error::InvalidConfig(reason))
}

impl OptimizerConfig {
    /// Checks the learning rate, weight decay and clipping.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0 && self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "optimizer lr {} must be > 0 and weight_decay {} ≥ 0",
                self.lr, self.weight_decay
            ));
        }
        if self.grad_clip_norm.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            return bad("optimizer.grad_clip_norm must be > 0".into());
        }
        Ok(())
    }
}

impl LossConfig {
    /// Checks the weights and parameters, and that `model` has the heads
    /// the weights train.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self, model: &ModelConfig) -> Result<()> {
        if [
            self.present_weight,
            self.location_weight,
            self.dense_weight,
            self.dense_focal_gamma,
            self.vessel_weight,
        ]
        .iter()
        .any(|w| !(w.is_finite() && *w >= 0.0))
        {
            return bad("loss weights and γ must be finite and ≥ 0".into());
        }
        if let ClassLoss::Focal { gamma, alpha } = self.classification
            && !(gamma >= 0.0 && (0.0..=1.0).contains(&alpha))
        {
            return bad(format!(
                "focal loss needs γ ≥ 0 and α in [0, 1], got γ = {gamma}, α = {alpha}"
            ));
        }
        if (self.dense_weight > 0.0 && !model.has_dense_head())
            || (self.location_weight > 0.0 && !model.has_location_head())
        {
            return bad("dense_weight and location_weight need a model with those heads (UNet3d)".into());
        }
        let classes = model.vessel_classes();
        if (self.vessel_weight > 0.0 || classes > 0) && classes != usize::from(aneu_io::MAX_VESSEL_LABEL) + 1 {
            return bad(format!(
                "a vessel head has {} classes (background and aneu_io::VESSEL_LABELS), not {classes}; vessel_weight needs one",
                usize::from(aneu_io::MAX_VESSEL_LABEL) + 1
            ));
        }
        if self.present_weight + self.location_weight + self.dense_weight + self.vessel_weight <= 0.0 {
            return bad("every loss weight is 0".into());
        }
        Ok(())
    }
}

impl Schedule {
    /// Checks the schedule's parameters against the base learning rate.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`].
    pub fn validate(&self, lr: f64) -> Result<()> {
        match *self {
            Schedule::ReduceOnPlateau { factor, min_lr, .. } if !(factor > 0.0 && factor < 1.0 && min_lr >= 0.0) => {
                bad(format!(
                    "reduce_on_plateau needs 0 < factor < 1 and min_lr ≥ 0, got {factor}, {min_lr}"
                ))
            }
            Schedule::CosineWarmup { min_lr, .. } if !(min_lr >= 0.0 && min_lr <= lr) => {
                bad(format!("cosine_warmup min_lr {min_lr} must be in [0, lr]"))
            }
            _ => Ok(()),
        }
    }
}

impl SplitConfig {
    /// Checks the folds or the fractions.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`].
    pub fn validate(&self) -> Result<()> {
        if let Some(k) = self.folds {
            if k < 2 || self.fold >= k {
                return bad(format!(
                    "split: need folds ≥ 2 and fold < folds, got {k} and {}",
                    self.fold
                ));
            }
            if !(0.0..1.0).contains(&self.test) {
                return bad(format!("split.test {} must be in [0, 1)", self.test));
            }
        } else if [self.train, self.val, self.test]
            .iter()
            .any(|f| !(0.0..=1.0).contains(f))
            || (self.train + self.val + self.test - 1.0).abs() > 1e-6
            || self.train <= 0.0
            || self.val <= 0.0
        {
            return bad(format!(
                "split fractions must be in [0, 1], sum to 1, with train and val > 0: {} + {} + {}",
                self.train, self.val, self.test
            ));
        }
        Ok(())
    }
}

impl HardNegativeConfig {
    /// Checks the rounds against `epochs`, and the mining window against
    /// the training patch and the model.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self, epochs: usize, patch_size: usize, model: &ModelConfig) -> Result<()> {
        if self.rounds > 0 && (self.per_case == 0 || !(0.0..1.0).contains(&self.overlap) || self.rounds >= epochs) {
            return bad("hard_negatives: need per_case ≥ 1, overlap in [0, 1) and rounds < epochs".into());
        }
        if let Some(w) = self.window {
            let m = model.size_multiple();
            if w < patch_size || !w.is_multiple_of(m) {
                return bad(format!(
                    "hard_negatives.window {w} must be at least the patch size {patch_size} and a multiple of {m}"
                ));
            }
            if w != patch_size && !model.has_dense_head() {
                return bad(format!(
                    "hard_negatives.window {w}: only a model with a dense head takes windows larger than its patch"
                ));
            }
        }
        Ok(())
    }
}

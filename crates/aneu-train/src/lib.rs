//! # aneu-train
//!
//! Training for the [`aneu_models`] networks on patches from
//! [`aneu_patch`], on any Burn autodiff backend (Flex on the CPU by
//! default; CUDA and wgpu with the `cuda` and `wgpu` features).
//!
//! * [`TrainConfig`]: one JSON file with the architecture, patch sampling,
//!   augmentation, loss (BCE, focal, a weighted 14-output BCE, dense
//!   BCE/Dice/focal), optimiser (Adam/AdamW, clipping, accumulation),
//!   schedule (constant, reduce-on-plateau, cosine with warm-up), early
//!   stopping, precision, seed, split and hard-negative rounds; validated
//!   before anything runs;
//! * [`make_split`]: patient-grouped, stratified splits and k-fold;
//!   [`extend_split`] places new series in an existing split;
//! * [`load_cases`], [`PatchDataset`] and [`PatchBatcher`]: the data path
//!   from a preprocessed dataset to Burn batches;
//! * [`train`]: the loop, with patch-level validation metrics from
//!   `aneu-metrics` every epoch, the best checkpoint, resumable
//!   checkpoints, `metrics.csv` and `metrics.png`, and the
//!   model bundle ([`aneu_bundle::ModelBundle`]) at the end;
//! * [`mine_hard_negatives`]: the candidates that inference's own
//!   [`aneu_infer::Predictor`] proposes on the training scans, away from
//!   every aneurysm, become hard negatives. Training calls inference;
//!   inference never calls training.
//!
//! ```no_run
//! use aneu_train::{TrainConfig, TrainOptions, train};
//! use burn::backend::{Autodiff, Flex};
//!
//! let config = TrainConfig::from_json_file("configs/ci_tiny.json")?;
//! let report = train::<Autodiff<Flex>>(
//!     "preprocessed/",
//!     &config,
//!     "runs/tiny",
//!     &Default::default(),
//!     &TrainOptions::default(),
//!     &|epoch| println!("epoch {} val AUC {:?}", epoch.epoch, epoch.val_auc),
//! )?;
//! println!("bundle at {:?}", report.bundle);
//! # Ok::<(), aneu_train::Error>(())
//! ```

mod config;
mod data;
mod error;
pub mod loss;
mod plot;
mod split;
mod trainer;

pub use aneu_bundle::Metric;
pub use config::{
    ClassLoss, DenseLoss, EarlyStopping, HardNegativeConfig, LossConfig, OptimizerConfig, OptimizerKind, Precision,
    Schedule, SplitConfig, TrainConfig,
};
pub use data::{CaseInfo, PHANTOM_MATCH_MM, PatchBatch, PatchBatcher, PatchDataset, give_phantom_radii, load_cases};
pub use error::{Error, Result};
pub use plot::plot_history;
pub use split::{Split, extend_split, make_split};
pub use trainer::{
    EpochRecord, TrainOptions, TrainReport, first_stage_config, mine_hard_negatives, mining_config, train,
};

//! The training loop.

use aneu_io::AtPath;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use aneu_metrics::ClassificationReport;
use aneu_models::{AnyModel, PatchModel, WeightsRecorder, load_model, save_weights};
use aneu_patch::{Case, PatchSampler};
use burn::data::dataloader::batcher::Batcher;
use burn::module::AutodiffModule;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::Recorder;
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use aneu_bundle::{BundleManifest, Metric, ModelBundle, Split, Thresholds};
use aneu_infer::{Blend, InferConfig, Predictor};
use aneu_preproc::PreprocessConfig;

use crate::config::{OptimizerKind, Schedule, TrainConfig};
use crate::data::{CaseInfo, PatchBatcher, PatchDataset, give_phantom_radii, load_cases};
use crate::loss::total_loss;
use crate::split::{extend_split, make_split};
use crate::{Error, Result};

/// One epoch, as a row of `metrics.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Learning rate at the epoch's end.
    pub lr: f64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// Patch-level validation ROC AUC of the present head (empty with one
    /// class).
    pub val_auc: Option<f64>,
    /// Patch-level validation ROC AUC of the dense head's peak: each
    /// patch scored by its most probable voxel, the quantity whole-scan
    /// inference turns into candidates and scan scores (empty without a
    /// dense head or with one class).
    #[serde(default)]
    pub val_dense_auc: Option<f64>,
    /// Accuracy at 0.5.
    pub val_accuracy: f64,
    /// Sensitivity at 0.5.
    pub val_sensitivity: f64,
    /// Specificity at 0.5.
    pub val_specificity: f64,
    /// F2 at 0.5.
    pub val_f2: f64,
    /// Training patches this epoch.
    pub patches: usize,
    /// Hard negatives in the pool after the epoch.
    pub hard_negatives: usize,
    /// Wall time of the epoch.
    pub seconds: f64,
    /// Vessel Dice on the validation patches that have vessel labels: the
    /// mean over the artery labels present of `2·TP / (2·TP + FP + FN)`
    /// of the vessel head's most probable label (empty without a vessel
    /// head or labels).
    #[serde(default)]
    pub val_vessel_dice: Option<f64>,
}

impl EpochRecord {
    /// The value of a monitored metric (AUC counts as 0.5 when undefined).
    pub fn metric(&self, m: Metric) -> f64 {
        match m {
            Metric::F2 => self.val_f2,
            Metric::Auc => self.val_auc.unwrap_or(0.5),
            Metric::DenseAuc => self.val_dense_auc.or(self.val_auc).unwrap_or(0.5),
            Metric::Sensitivity => self.val_sensitivity,
            Metric::Accuracy => self.val_accuracy,
            Metric::Loss => self.val_loss,
        }
    }
}

/// Options of one call to [`train`].
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Continue from `<out>/checkpoint` when it exists.
    pub resume: bool,
    /// Stop after this many epochs in this call (the checkpoint stays, and
    /// no bundle is written unless training is complete): for time-boxed
    /// jobs and for testing resumption.
    pub max_epochs_this_call: Option<usize>,
}

/// What [`train`] did.
#[derive(Clone, Debug)]
pub struct TrainReport {
    /// Every epoch so far (including those before a resume).
    pub history: Vec<EpochRecord>,
    /// The best epoch by the monitored metric.
    pub best_epoch: usize,
    /// Its value.
    pub best_value: f64,
    /// Whether training finished (all epochs or early stopping).
    pub finished: bool,
    /// Whether early stopping ended it.
    pub stopped_early: bool,
    /// The model bundle, when finished.
    pub bundle: Option<PathBuf>,
}

/// The state a checkpoint needs besides weights and optimiser moments.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainState {
    epochs_done: usize,
    history: Vec<EpochRecord>,
    best_epoch: usize,
    best_value: f64,
    stale: usize,
    plateau_factor: f64,
    plateau_stale: usize,
    plateau_best: f64,
    hard_negatives: Vec<(String, Vec<[usize; 3]>)>,
    stopped_early: bool,
}

const VAL_SEED: u64 = 0x5EED_0000_0000_0A11;

/// Trains the configured model on the preprocessed series under `data`,
/// writing into `out`: `split.json`, `metrics.csv`, `metrics.png`,
/// `best.mpk`, `checkpoint/` and, when done, the model bundle
/// `bundle/`.
///
/// Everything random derives from `config.seed`, so on a deterministic
/// backend (Flex) the same config gives the same loss curve, and resuming
/// from a checkpoint gives the same weights as an uninterrupted run.
///
/// # Errors
/// A bad config or data ([`Error::InvalidConfig`], [`Error::Data`]) before
/// any training; file errors while writing.
pub fn train<B: AutodiffBackend>(
    data: impl AsRef<Path>,
    config: &TrainConfig,
    out: impl AsRef<Path>,
    device: &B::Device,
    opts: &TrainOptions,
    progress: &dyn Fn(&EpochRecord),
) -> Result<TrainReport> {
    config.validate()?;
    let (data, out) = (data.as_ref(), out.as_ref());
    let (mut cases, infos) = load_cases(data)?;
    if let Some(root) = &config.phantom_truth {
        give_phantom_radii(&mut cases, root)?;
    }
    let sized = cases.iter().flat_map(|c| &c.findings).any(|f| f.radius_mm.is_some());
    if config.sampler.size_weighting.is_some() && !sized {
        return Err(Error::Data(
            "sampler.size_weighting weighs aneurysms by their radius, and no finding has one (RSNA's localizers \
             carry none): set phantom_truth for phantom data, or drop size_weighting"
                .into(),
        ));
    }
    let preprocess = dataset_preprocess_config(data)?;
    let p = config.sampler.patch_size;
    for c in &cases {
        let dims = c.image.size().to_kji();
        if dims.iter().all(|d| *d < p) {
            return Err(Error::InvalidConfig(format!(
                "patch_size {p} exceeds the volume of series {} ({:?} voxels)",
                c.id,
                c.image.size().to_ijk()
            )));
        }
    }
    let first_stage = config
        .second_stage_of
        .as_ref()
        .map(|dir| first_stage_bundle(dir, &preprocess))
        .transpose()?;
    std::fs::create_dir_all(out).at(out)?;
    let split_path = out.join("split.json");
    let split = if opts.resume && split_path.exists() {
        Split::read(&split_path)?
    } else {
        let s = match &first_stage {
            // the first stage's validation scans stay unseen by both;
            // scans it never saw are split afresh
            Some(b) => extend_split(&b.split, &infos, &config.split)?,
            None => make_split(&infos, &config.split)?,
        };
        s.write(&split_path)?;
        s
    };
    let (train_cases, val_cases) = partition(cases, &infos, &split);
    if !train_cases.iter().any(Case::is_positive) {
        return Err(Error::Data("the training split has no aneurysm to learn from".into()));
    }
    if val_cases.is_empty() {
        return Err(Error::Data("the validation split is empty".into()));
    }
    aneu_bundle::write_json(&out.join("train.json"), config)?;

    let sampler = PatchSampler::new(config.sampler.clone())?;
    let mut train_cases = train_cases;
    let mut val_cases = val_cases;
    {
        use rayon::prelude::*;
        train_cases
            .par_iter_mut()
            .chain(val_cases.par_iter_mut())
            .for_each(|c| sampler.prepare(c));
    }
    if let Some(b) = first_stage {
        let predictor = Predictor::<B::InnerBackend>::new(vec![b], first_stage_config(config), device)?;
        let train_fp = mine_hard_negatives(&predictor, &mut train_cases, config)?;
        let val_fp = mine_hard_negatives(&predictor, &mut val_cases, config)?;
        tracing::info!(train_fp, val_fp, "the first stage's false candidates");
    }
    // fixed validation patches, no augmentation
    let val_specs = sampler.plan_epoch(&val_cases, &mut StdRng::seed_from_u64(config.seed ^ VAL_SEED));
    let val_patches = sampler.extract_many(&val_cases, &val_specs);
    drop(val_cases);
    tracing::info!(
        train_series = train_cases.len(),
        val_patches = val_patches.len(),
        "training {}",
        config.model.architecture()
    );

    // the weights of the config's seed, whatever other threads of the
    // process (tests, folds) initialise meanwhile
    let model = match &config.init_from {
        Some(dir) => pretrained_bundle(dir, config, &preprocess)?.load_model::<B>(device)?,
        None => config.model.init_seeded::<B>(config.seed, device)?,
    };
    let o = &config.optimizer;
    let clip = o
        .grad_clip_norm
        .map(|c| burn::grad_clipping::GradientClippingConfig::Norm(c as f32));
    let ctx = Ctx {
        config,
        out,
        device,
        opts,
        progress,
        sampler: &sampler,
        val_patches: &val_patches,
        preprocess: &preprocess,
    };
    match o.kind {
        OptimizerKind::Adam => {
            let optim = AdamConfig::new()
                .with_weight_decay((o.weight_decay > 0.0).then(|| WeightDecayConfig::new(o.weight_decay as f32)))
                .with_grad_clipping(clip)
                .init::<B, AnyModel<B>>();
            run(&ctx, model, optim, train_cases, &split)
        }
        OptimizerKind::AdamW => {
            let optim = AdamWConfig::new()
                .with_weight_decay(o.weight_decay as f32)
                .with_grad_clipping(clip)
                .init::<B, AnyModel<B>>();
            run(&ctx, model, optim, train_cases, &split)
        }
    }
}

fn partition(cases: Vec<Case>, infos: &[CaseInfo], split: &Split) -> (Vec<Case>, Vec<Case>) {
    let mut train = Vec::new();
    let mut val = Vec::new();
    for (c, i) in cases.into_iter().zip(infos) {
        if split.train.contains(&i.series_uid) {
            train.push(c);
        } else if split.val.contains(&i.series_uid) {
            val.push(c);
        }
    }
    (train, val)
}

struct Ctx<'a, B: AutodiffBackend> {
    config: &'a TrainConfig,
    out: &'a Path,
    device: &'a B::Device,
    opts: &'a TrainOptions,
    progress: &'a dyn Fn(&EpochRecord),
    sampler: &'a PatchSampler,
    val_patches: &'a [aneu_patch::Patch],
    preprocess: &'a PreprocessConfig,
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_or(f64::NAN, |v| v.first().copied().unwrap_or(f32::NAN) as f64)
}

/// A training run in progress: the model, its optimiser, the training
/// cases with their hard-negative pools, and the state a checkpoint keeps.
/// [`train`] builds one, resumes it, runs epochs and finishes it.
struct Trainer<'a, B: AutodiffBackend, O> {
    ctx: &'a Ctx<'a, B>,
    split: &'a Split,
    model: AnyModel<B>,
    optim: O,
    cases: Arc<Vec<Case>>,
    st: TrainState,
    batcher: PatchBatcher,
}

/// What one epoch's training pass gives.
struct EpochTraining {
    mean_loss: f64,
    lr: f64,
    patches: usize,
}

/// What one validation pass gives.
struct Validation {
    loss: f64,
    report: ClassificationReport,
    dense_auc: Option<f64>,
    vessel_dice: Option<f64>,
}

fn run<B: AutodiffBackend, O: Optimizer<AnyModel<B>, B>>(
    ctx: &Ctx<'_, B>,
    model: AnyModel<B>,
    optim: O,
    train_cases: Vec<Case>,
    split: &Split,
) -> Result<TrainReport> {
    let mut t = Trainer::new(ctx, model, optim, train_cases, split);
    if ctx.opts.resume && t.checkpoint_dir().join("state.json").exists() {
        t.resume()?;
    }
    let mut ran = 0usize;
    while t.st.epochs_done < ctx.config.epochs && !t.st.stopped_early {
        if ctx.opts.max_epochs_this_call.is_some_and(|m| ran >= m) {
            break;
        }
        t.epoch()?;
        ran += 1;
    }
    t.finish()
}

impl<'a, B: AutodiffBackend, O: Optimizer<AnyModel<B>, B>> Trainer<'a, B, O> {
    fn new(ctx: &'a Ctx<'a, B>, model: AnyModel<B>, optim: O, cases: Vec<Case>, split: &'a Split) -> Self {
        // finite sentinels: the state goes through JSON, which has no infinities
        let worst = if ctx.config.early_stopping.metric.maximise() {
            f64::MIN
        } else {
            f64::MAX
        };
        Trainer {
            ctx,
            split,
            model,
            optim,
            cases: Arc::new(cases),
            st: TrainState {
                epochs_done: 0,
                history: Vec::new(),
                best_epoch: 0,
                best_value: worst,
                stale: 0,
                plateau_factor: 1.0,
                plateau_stale: 0,
                plateau_best: worst,
                hard_negatives: Vec::new(),
                stopped_early: false,
            },
            batcher: PatchBatcher {
                position_prior: ctx.config.position_prior,
            },
        }
    }

    fn checkpoint_dir(&self) -> PathBuf {
        self.ctx.out.join("checkpoint")
    }

    /// Restores the state, the weights, the optimiser's moments and the
    /// hard-negative pools from `<out>/checkpoint`.
    fn resume(&mut self) -> Result<()> {
        let ck = self.checkpoint_dir();
        let sp = ck.join("state.json");
        let text = std::fs::read_to_string(&sp).at(&sp)?;
        self.st = serde_json::from_str(&text).map_err(|e| Error::Format {
            path: sp.clone(),
            reason: e.to_string(),
        })?;
        self.model = load_model::<B>(&self.ctx.config.model, ck.join("model"), self.ctx.device)?;
        let rec = WeightsRecorder::new()
            .load(ck.join("optim"), self.ctx.device)
            .map_err(|e| Error::Checkpoint {
                path: ck.join("optim.mpk"),
                reason: e.to_string(),
            })?;
        self.optim = self.optim.clone().load_record(rec);
        if let Some(cs) = Arc::get_mut(&mut self.cases) {
            for c in cs.iter_mut() {
                if let Some((_, hn)) = self.st.hard_negatives.iter().find(|(id, _)| *id == c.id) {
                    c.hard_negatives = hn.iter().map(|p| aneu_io::VoxelIndex::from_kji(*p)).collect();
                }
            }
        }
        tracing::info!(epochs_done = self.st.epochs_done, "resumed from {}", ck.display());
        Ok(())
    }

    /// One epoch: train, validate, mine when a round is due, record, move
    /// the schedule, checkpoint.
    fn epoch(&mut self) -> Result<()> {
        let t0 = Instant::now();
        let epoch = self.st.epochs_done + 1;
        let trained = self.train_epoch(epoch)?;
        let valid = self.model.valid();
        let val = self.validate(&valid)?;
        if self.mining_due(epoch) {
            self.mine(epoch, &valid)?;
        }
        let rec = EpochRecord {
            epoch,
            lr: trained.lr,
            train_loss: trained.mean_loss,
            val_loss: val.loss,
            val_auc: val.report.auc,
            val_dense_auc: val.dense_auc,
            val_vessel_dice: val.vessel_dice,
            val_accuracy: val.report.accuracy,
            val_sensitivity: val.report.sensitivity,
            val_specificity: val.report.specificity,
            val_f2: val.report.f2,
            patches: trained.patches,
            hard_negatives: self.cases.iter().map(|c| c.hard_negatives.len()).sum(),
            seconds: t0.elapsed().as_secs_f64(),
        };
        self.schedule_step(&rec)?;
        tracing::info!(
            epoch,
            train_loss = rec.train_loss,
            val_loss = rec.val_loss,
            val_auc = ?rec.val_auc,
            val_dense_auc = ?rec.val_dense_auc,
            val_vessel_dice = ?rec.val_vessel_dice,
            val_f2 = rec.val_f2,
            seconds = rec.seconds,
            "epoch"
        );
        (self.ctx.progress)(&rec);
        self.st.history.push(rec);
        self.st.epochs_done = epoch;
        self.checkpoint()
    }

    /// The training pass of 1-based `epoch`: its patches, batched, with
    /// gradient accumulation and the scheduled learning rate.
    fn train_epoch(&mut self, epoch: usize) -> Result<EpochTraining> {
        let cfg = self.ctx.config;
        let seed = cfg.seed.wrapping_add((epoch as u64).wrapping_mul(0x9E37_79B9));
        let specs = self
            .ctx
            .sampler
            .plan_epoch(&self.cases, &mut StdRng::seed_from_u64(seed));
        let ds = PatchDataset::new(
            Arc::clone(&self.cases),
            specs,
            self.ctx.sampler.clone(),
            cfg.augment.clone(),
            seed,
        );
        let n = burn::data::dataset::Dataset::len(&ds);
        let nb = n.div_ceil(cfg.batch_size).max(1);
        let mut accum = GradientsAccumulator::<AnyModel<B>>::new();
        let mut pending = 0usize;
        let (mut loss_sum, mut loss_n) = (0.0, 0usize);
        let mut lr = current_lr(cfg, self.st.plateau_factor, epoch - 1, 0, nb);
        // the optimiser updates the weights in place when it owns them alone
        let mut model = self.model.clone();
        for b in 0..nb {
            let lo = b * cfg.batch_size;
            let hi = (lo + cfg.batch_size).min(n);
            if lo >= hi {
                break;
            }
            let batch = self.batcher.batch(ds.get_range(lo..hi), self.ctx.device);
            let outp = model.forward_patches(batch.images);
            let loss = total_loss(&cfg.loss, outp, &batch.targets);
            let lv = scalar(loss.clone());
            if !lv.is_finite() {
                return Err(Error::Data(format!(
                    "the training loss became {lv} in epoch {epoch}, batch {b}"
                )));
            }
            loss_sum += lv * (hi - lo) as f64;
            loss_n += hi - lo;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            accum.accumulate(&model, grads);
            pending += 1;
            if pending == cfg.optimizer.accumulation || b + 1 == nb {
                lr = current_lr(cfg, self.st.plateau_factor, epoch - 1, b, nb);
                model = self.optim.step(lr, model, accum.grads());
                pending = 0;
            }
        }
        self.model = model;
        Ok(EpochTraining {
            mean_loss: loss_sum / loss_n.max(1) as f64,
            lr,
            patches: n,
        })
    }

    /// Loss and patch-level metrics on the fixed validation patches.
    fn validate(&self, valid: &AnyModel<B::InnerBackend>) -> Result<Validation> {
        let cfg = self.ctx.config;
        let Evaluation {
            loss,
            labels,
            scores,
            peaks,
            vessel_dice,
        } = evaluate(valid, self.ctx.val_patches, cfg, self.batcher, self.ctx.device);
        let report = ClassificationReport::compute(&labels, &scores, 0.5, None)?;
        let dense_auc = match peaks {
            Some(p) => ClassificationReport::compute(&labels, &p, 0.5, None)?.auc,
            None => None,
        };
        Ok(Validation {
            loss,
            report,
            dense_auc,
            vessel_dice: vessel_dice.mean_dice(),
        })
    }

    /// Whether a hard-negative round follows 1-based `epoch`: round `r`
    /// after epoch `⌊r · epochs / (rounds + 1)⌋`.
    fn mining_due(&self, epoch: usize) -> bool {
        let cfg = self.ctx.config;
        let rounds = cfg.hard_negatives.rounds;
        (1..=rounds).any(|r| r * cfg.epochs / (rounds + 1) == epoch)
    }

    /// A hard-negative round: the predictor runs the current weights over
    /// the training scans ([`mine_hard_negatives`]).
    fn mine(&mut self, epoch: usize, valid: &AnyModel<B::InnerBackend>) -> Result<()> {
        let Some(cs) = Arc::get_mut(&mut self.cases) else {
            tracing::warn!("hard-negative round skipped: the cases are shared");
            return Ok(());
        };
        let bundle = in_training_bundle(self.ctx, self.split, &self.st);
        let predictor = Predictor::from_models(
            vec![(bundle, valid.clone())],
            mining_config(self.ctx.config),
            self.ctx.device,
        )?;
        let added = mine_hard_negatives(&predictor, cs, self.ctx.config)?;
        tracing::info!(epoch, added, "hard-negative round");
        Ok(())
    }

    /// Keeps the best weights, and moves reduce-on-plateau and early
    /// stopping by the epoch's monitored metric.
    fn schedule_step(&mut self, rec: &EpochRecord) -> Result<()> {
        let cfg = self.ctx.config;
        let maximise = cfg.early_stopping.metric.maximise();
        let value = rec.metric(cfg.early_stopping.metric);
        let better = |v: f64, best: f64| {
            if maximise {
                v > best + cfg.early_stopping.min_delta
            } else {
                v < best - cfg.early_stopping.min_delta
            }
        };
        let st = &mut self.st;
        if better(value, st.best_value) {
            st.best_value = value;
            st.best_epoch = rec.epoch;
            st.stale = 0;
            save_weights(self.model.clone(), self.ctx.out.join("best"))?;
        } else {
            st.stale += 1;
        }
        if let Schedule::ReduceOnPlateau {
            factor,
            patience,
            min_lr,
        } = cfg.schedule
        {
            if better(value, st.plateau_best) {
                st.plateau_best = value;
                st.plateau_stale = 0;
            } else {
                st.plateau_stale += 1;
                if st.plateau_stale > patience {
                    st.plateau_factor = (st.plateau_factor * factor).max(min_lr / cfg.optimizer.lr);
                    st.plateau_stale = 0;
                }
            }
        }
        if cfg.early_stopping.patience > 0 && st.stale >= cfg.early_stopping.patience {
            st.stopped_early = true;
        }
        Ok(())
    }

    /// Writes `metrics.csv`, `metrics.png` and the checkpoint (weights,
    /// optimiser, state with the hard-negative pools).
    fn checkpoint(&mut self) -> Result<()> {
        self.st.hard_negatives = self
            .cases
            .iter()
            .map(|c| (c.id.clone(), c.hard_negatives.iter().map(|v| v.to_kji()).collect()))
            .collect();
        write_metrics(self.ctx.out, &self.st.history)?;
        save_checkpoint(&self.checkpoint_dir(), &self.model, &self.optim, &self.st)
    }

    /// The report; when training is complete, the bundle of the best
    /// epoch, checked to load.
    fn finish(self) -> Result<TrainReport> {
        let (ctx, cfg, st) = (self.ctx, self.ctx.config, self.st);
        let finished = st.epochs_done >= cfg.epochs || st.stopped_early;
        let bundle = if finished {
            let dir = ctx.out.join("bundle");
            ModelBundle {
                dir: dir.clone(),
                manifest: manifest(cfg, &st),
                model: cfg.model.clone(),
                preprocess: ctx.preprocess.clone(),
                train: cfg.to_json_value()?,
                split: self.split.clone(),
                thresholds: Thresholds::default(),
                second_stage: None,
            }
            .write(ctx.out.join("best.mpk"))?;
            // the bundle must load
            ModelBundle::read(&dir)?.load_model::<B::InnerBackend>(&ctx.device.clone())?;
            Some(dir)
        } else {
            None
        };
        Ok(TrainReport {
            history: st.history,
            best_epoch: st.best_epoch,
            best_value: st.best_value,
            finished,
            stopped_early: st.stopped_early,
            bundle,
        })
    }
}

/// The one preprocessing config of the series under `data`: a bundle
/// records it, so inference can preprocess new scans the same way.
fn dataset_preprocess_config(data: &Path) -> Result<PreprocessConfig> {
    let mut hashes = std::collections::BTreeSet::new();
    for d in aneu_preproc::list_preprocessed(data)? {
        hashes.insert(aneu_preproc::read_meta(&d.join("meta.json"))?.config_hash);
    }
    let [hash] = hashes.iter().collect::<Vec<_>>()[..] else {
        return Err(Error::Data(format!(
            "the training data mixes {} preprocessing configs ({hashes:?}); a bundle needs one",
            hashes.len()
        )));
    };
    Ok(aneu_preproc::read_dataset_config(data, hash)?)
}

/// The bundle manifest of the best epoch so far.
fn manifest(cfg: &TrainConfig, st: &TrainState) -> BundleManifest {
    BundleManifest::new(
        &cfg.model,
        cfg.sampler.patch_size,
        cfg.position_prior,
        st.best_epoch,
        cfg.early_stopping.metric,
        st.best_value,
    )
}

/// The model being trained, described as a bundle (in memory; its folder
/// is the run's), so that the predictor can run it.
fn in_training_bundle<B: AutodiffBackend>(ctx: &Ctx<'_, B>, split: &Split, st: &TrainState) -> ModelBundle {
    ModelBundle {
        dir: ctx.out.to_path_buf(),
        manifest: manifest(ctx.config, st),
        model: ctx.config.model.clone(),
        preprocess: ctx.preprocess.clone(),
        train: serde_json::Value::Null,
        split: split.clone(),
        thresholds: Thresholds::default(),
        second_stage: None,
    }
}

/// The bundle a run starts from (`init_from`): trained on the data's
/// preprocessing, with the run's model config.
fn pretrained_bundle(dir: &Path, config: &TrainConfig, preprocess: &PreprocessConfig) -> Result<ModelBundle> {
    let b = ModelBundle::read(dir)?;
    if b.preprocess != *preprocess {
        return Err(Error::InvalidConfig(format!(
            "init_from: {} was trained on another preprocessing than the data's",
            dir.display()
        )));
    }
    if b.model != config.model {
        return Err(Error::InvalidConfig(format!(
            "init_from: {} holds a {} with another config than `model`",
            dir.display(),
            b.model.architecture()
        )));
    }
    Ok(b)
}

/// The first stage of a second-stage run: its bundle, which must have been
/// trained on the data's preprocessing and have no second stage.
fn first_stage_bundle(dir: &Path, preprocess: &PreprocessConfig) -> Result<ModelBundle> {
    let b = ModelBundle::read(dir)?;
    if b.preprocess != *preprocess {
        return Err(Error::InvalidConfig(format!(
            "second_stage_of: {} was trained on another preprocessing than the data's",
            dir.display()
        )));
    }
    if b.second_stage.is_some() {
        return Err(Error::InvalidConfig(format!(
            "second_stage_of: {} has a second stage already",
            dir.display()
        )));
    }
    Ok(b)
}

/// How the first stage runs when it proposes a second stage's
/// candidates: inference's defaults (Gaussian blending), the window edge
/// (the first stage's patch when unset) and overlap of
/// `hard_negatives`, the candidates' floor at `hard_negatives.min_score`.
pub fn first_stage_config(cfg: &TrainConfig) -> InferConfig {
    let h = &cfg.hard_negatives;
    let mut c = InferConfig::default();
    c.window = c.window.with_overlap(h.overlap).with_batch_size(cfg.batch_size.max(1));
    if let Some(w) = h.window {
        c.window = c.window.with_roi(w);
    }
    c.candidates = c.candidates.with_floor(h.min_score as f32);
    c
}

/// The inference settings of a hard-negative round: the sliding window of
/// `hard_negatives` (its window edge, overlap and the training batch
/// size), merged by maximum, and candidates from the inference defaults
/// with the floor at `hard_negatives.min_score`.
pub fn mining_config(cfg: &TrainConfig) -> InferConfig {
    let h = &cfg.hard_negatives;
    let mut c = InferConfig::default();
    c.window = c
        .window
        .with_roi(h.window.unwrap_or(cfg.sampler.patch_size))
        .with_overlap(h.overlap)
        .with_batch_size(cfg.batch_size.max(1))
        .with_blend(Blend::Max);
    c.candidates = c.candidates.with_floor(h.min_score as f32);
    c
}

/// The learning rate at batch `b` of `nb` in 0-based epoch `e`.
fn current_lr(cfg: &TrainConfig, plateau_factor: f64, e: usize, b: usize, nb: usize) -> f64 {
    let base = cfg.optimizer.lr;
    match cfg.schedule {
        Schedule::Constant => base,
        Schedule::ReduceOnPlateau { .. } => base * plateau_factor,
        Schedule::CosineWarmup { warmup_epochs, min_lr } => {
            let t = e as f64 + (b as f64 + 1.0) / nb as f64;
            let w = warmup_epochs as f64;
            if t <= w {
                base * t / w.max(1e-9)
            } else {
                let span = (cfg.epochs as f64 - w).max(1e-9);
                let q = ((t - w) / span).clamp(0.0, 1.0);
                min_lr + 0.5 * (base - min_lr) * (1.0 + (std::f64::consts::PI * q).cos())
            }
        }
    }
}

/// What [`evaluate`] measures on the validation patches.
struct Evaluation {
    /// The mean loss.
    loss: f64,
    /// Patch labels.
    labels: Vec<f64>,
    /// The present head's probabilities.
    scores: Vec<f64>,
    /// The dense head's peak probability per patch (with a dense head).
    peaks: Option<Vec<f64>>,
    /// The vessel head's label counts.
    vessel_dice: aneu_metrics::LabelOverlap,
}

/// Validation loss (patch-weighted), labels, present probabilities, with
/// a dense head each patch's peak voxel probability, and with a vessel
/// head its label counts.
fn evaluate<B: Backend>(
    model: &AnyModel<B>,
    patches: &[aneu_patch::Patch],
    cfg: &TrainConfig,
    batcher: PatchBatcher,
    device: &B::Device,
) -> Evaluation {
    let mut labels = Vec::with_capacity(patches.len());
    let mut scores = Vec::with_capacity(patches.len());
    let mut peaks: Vec<f64> = Vec::new();
    let mut vessel_dice = aneu_metrics::LabelOverlap::default();
    let (mut ls, mut ln) = (0.0, 0usize);
    for chunk in patches.chunks(cfg.batch_size.max(1)) {
        let batch: crate::data::PatchBatch<B> = batcher.batch(chunk.to_vec(), device);
        let out = model.forward_patches(batch.images);
        let probs = sigmoid(out.logit.clone())
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        if let Some(dense) = out.dense.as_ref() {
            // sigmoid is monotone: the peak of the logits is the peak voxel
            let peak = sigmoid(dense.clone().flatten::<2>(1, 4).max_dim(1))
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap_or_default();
            peaks.extend(peak.iter().map(|v| f64::from(*v)));
        }
        if let Some(v) = out.vessels.as_ref() {
            let predicted = v
                .clone()
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .unwrap_or_default();
            let per = predicted.len() / chunk.len().max(1);
            for (p, pred) in chunk.iter().zip(predicted.chunks(per.max(1))) {
                if let Some(truth) = &p.vessels {
                    let pred: Vec<u8> = pred.iter().map(|&v| u8::try_from(v).unwrap_or(0)).collect();
                    // a patch and its prediction have one shape
                    if vessel_dice.add(truth.as_slice().unwrap_or(&[]), &pred).is_err() {
                        tracing::warn!("a vessel prediction of another shape than its patch's labels");
                    }
                }
            }
        }
        let loss = scalar(total_loss(&cfg.loss, out, &batch.targets));
        ls += loss * chunk.len() as f64;
        ln += chunk.len();
        labels.extend(chunk.iter().map(|p| f64::from(p.label)));
        scores.extend(probs.iter().map(|v| f64::from(*v)));
    }
    Evaluation {
        loss: ls / ln.max(1) as f64,
        labels,
        scores,
        // empty exactly when the model has no dense head
        peaks: (!peaks.is_empty()).then_some(peaks),
        vessel_dice,
    }
}

/// Adds to each case's hard-negative pool the candidates that
/// `predictor` proposes on it, exactly as inference does (the sliding
/// window, then [`aneu_infer::find_peaks`], then the scan's candidate
/// list), keeping those that score at least `hard_negatives.min_score`,
/// lie beyond the exclusion radius of every aneurysm
/// (`sampler.exclusion_radius_mm`) and beyond the candidates' NMS distance
/// of the points earlier rounds put in the pool, highest first, at most
/// `hard_negatives.per_case` per scan. Each point is the candidate's
/// centre rounded to the nearest voxel. Returns the number added.
///
/// Build the predictor with [`mining_config`] for the trainer's
/// behaviour.
///
/// # Errors
/// The predictor's errors (a non-finite probability, say).
pub fn mine_hard_negatives<B: Backend>(
    predictor: &Predictor<B>,
    cases: &mut [Case],
    cfg: &TrainConfig,
) -> Result<usize> {
    let h = &cfg.hard_negatives;
    let nms = predictor.config().candidates.nms_mm;
    let mut added = 0;
    for case in cases.iter_mut() {
        let (_, detections) = predictor.detect(case, None)?;
        let dims = case.image.size().to_kji();
        let sp = case.image.spacing();
        let mm = |a: [f64; 3], b: [f64; 3]| (0..3).map(|x| ((a[x] - b[x]) * sp[2 - x]).powi(2)).sum::<f64>().sqrt();
        let kji = |v: aneu_io::VoxelIndex| v.to_kji().map(|x| x as f64);
        // the candidates are NMS-separated already; the pool's earlier
        // points (from earlier rounds) are not
        let earlier: Vec<[f64; 3]> = case.hard_negatives.iter().map(|v| kji(*v)).collect();
        let mut chosen = Vec::new();
        for d in detections.iter().filter(|d| d.score >= h.min_score) {
            if chosen.len() >= h.per_case {
                break;
            }
            let c: [usize; 3] = std::array::from_fn(|a| {
                let x = d.voxel.to_kji()[a].round().max(0.0) as usize;
                x.min(dims[a] - 1)
            });
            let cf = c.map(|x| x as f64);
            let near_finding = case
                .findings
                .iter()
                .any(|f| mm(cf, f.voxel.to_kji()) < cfg.sampler.exclusion_radius_mm);
            if near_finding || earlier.iter().any(|o| mm(cf, *o) < nms) {
                continue;
            }
            chosen.push(aneu_io::VoxelIndex::from_kji(c));
        }
        added += chosen.len();
        case.hard_negatives.extend(chosen);
    }
    Ok(added)
}

fn save_checkpoint<B: AutodiffBackend, O: Optimizer<AnyModel<B>, B>>(
    ck: &Path,
    model: &AnyModel<B>,
    optim: &O,
    st: &TrainState,
) -> Result<()> {
    let tmp = ck.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).at(&tmp)?;
    save_weights(model.clone(), tmp.join("model"))?;
    WeightsRecorder::new()
        .record(optim.to_record(), tmp.join("optim"))
        .map_err(|e| Error::Checkpoint {
            path: tmp.join("optim.mpk"),
            reason: e.to_string(),
        })?;
    let json = serde_json::to_string(st).unwrap_or_default();
    std::fs::write(tmp.join("state.json"), json).at(tmp.join("state.json"))?;
    if ck.exists() {
        std::fs::remove_dir_all(ck).at(ck)?;
    }
    Ok(std::fs::rename(&tmp, ck).at(ck)?)
}

fn write_metrics(out: &Path, history: &[EpochRecord]) -> Result<()> {
    let p = out.join("metrics.csv");
    let format = |e: csv::Error| Error::Format {
        path: p.clone(),
        reason: e.to_string(),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in history {
        w.serialize(r).map_err(format)?;
    }
    let bytes = w.into_inner().map_err(|e| format(e.into_error().into()))?;
    aneu_io::write_atomic(&p, &bytes)?;
    crate::plot::plot_history(history, &out.join("metrics.png"))
}

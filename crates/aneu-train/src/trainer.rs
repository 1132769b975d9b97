//! The training loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use aneu_metrics::ClassificationReport;
use aneu_models::{AnyModel, PatchModel, WeightsRecorder, load_model, save_weights};
use aneu_patch::{Case, PatchGrid, PatchSampler, PatchSource, PatchSpec, extract_patch};
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

use crate::bundle::{ModelBundle, write_bundle};
use crate::config::{Metric, OptimizerKind, Schedule, TrainConfig};
use crate::data::{CaseInfo, PatchBatcher, PatchDataset, load_cases};
use crate::error::file_err;
use crate::loss::total_loss;
use crate::split::{Split, make_split};
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
    let (cases, infos) = load_cases(data)?;
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
    std::fs::create_dir_all(out).map_err(|e| file_err(out, e))?;
    let split_path = out.join("split.json");
    let split = if opts.resume && split_path.exists() {
        Split::read(&split_path)?
    } else {
        let s = make_split(&infos, &config.split)?;
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
    std::fs::write(out.join("train.json"), config.to_json()).map_err(|e| file_err(&out.join("train.json"), e))?;

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
    let model = config.model.init_seeded::<B>(config.seed, device)?;
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
        data,
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
    data: &'a Path,
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_or(f64::NAN, |v| v.first().copied().unwrap_or(f32::NAN) as f64)
}

fn run<B: AutodiffBackend, O: Optimizer<AnyModel<B>, B>>(
    ctx: &Ctx<'_, B>,
    mut model: AnyModel<B>,
    mut optim: O,
    train_cases: Vec<Case>,
    split: &Split,
) -> Result<TrainReport> {
    let cfg = ctx.config;
    let ck = ctx.out.join("checkpoint");
    let mut cases = Arc::new(train_cases);
    let maximise = cfg.early_stopping.metric.maximise();
    // finite sentinels: the state goes through JSON, which has no infinities
    let worst = if maximise { f64::MIN } else { f64::MAX };
    let mut st = TrainState {
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
    };
    if ctx.opts.resume && ck.join("state.json").exists() {
        let sp = ck.join("state.json");
        let text = std::fs::read_to_string(&sp).map_err(|e| file_err(&sp, e))?;
        st = serde_json::from_str(&text).map_err(|e| Error::Format {
            path: sp.clone(),
            reason: e.to_string(),
        })?;
        model = load_model::<B>(&cfg.model, ck.join("model"), ctx.device)?;
        let rec = WeightsRecorder::new()
            .load(ck.join("optim"), ctx.device)
            .map_err(|e| Error::Checkpoint {
                path: ck.join("optim.mpk"),
                reason: e.to_string(),
            })?;
        optim = optim.load_record(rec);
        if let Some(cs) = Arc::get_mut(&mut cases) {
            for c in cs.iter_mut() {
                if let Some((_, hn)) = st.hard_negatives.iter().find(|(id, _)| *id == c.id) {
                    c.hard_negatives = hn.iter().map(|p| aneu_io::VoxelIndex::new(p[2], p[1], p[0])).collect();
                }
            }
        }
        tracing::info!(epochs_done = st.epochs_done, "resumed from {}", ck.display());
    }
    let batcher = PatchBatcher {
        position_prior: cfg.position_prior,
    };
    let mine_at: Vec<usize> = (1..=cfg.hard_negatives.rounds)
        .map(|r| r * cfg.epochs / (cfg.hard_negatives.rounds + 1))
        .collect();
    let mut ran = 0usize;
    while st.epochs_done < cfg.epochs && !st.stopped_early {
        if ctx.opts.max_epochs_this_call.is_some_and(|m| ran >= m) {
            break;
        }
        let t0 = Instant::now();
        let epoch = st.epochs_done + 1;
        let seed = cfg.seed.wrapping_add((epoch as u64).wrapping_mul(0x9E37_79B9));
        let specs = ctx.sampler.plan_epoch(&cases, &mut StdRng::seed_from_u64(seed));
        let ds = PatchDataset::new(
            Arc::clone(&cases),
            specs,
            ctx.sampler.clone(),
            cfg.augment.clone(),
            seed,
        );
        let n = burn::data::dataset::Dataset::len(&ds);
        let nb = n.div_ceil(cfg.batch_size).max(1);
        let mut accum = GradientsAccumulator::<AnyModel<B>>::new();
        let mut pending = 0usize;
        let (mut loss_sum, mut loss_n) = (0.0, 0usize);
        let mut lr = current_lr(cfg, st.plateau_factor, epoch - 1, 0, nb);
        for b in 0..nb {
            let lo = b * cfg.batch_size;
            let hi = (lo + cfg.batch_size).min(n);
            if lo >= hi {
                break;
            }
            let batch = batcher.batch(ds.get_range(lo..hi), ctx.device);
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
                lr = current_lr(cfg, st.plateau_factor, epoch - 1, b, nb);
                model = optim.step(lr, model, accum.grads());
                pending = 0;
            }
        }
        drop(ds);
        let valid = model.valid();
        let (val_loss, labels, scores, peaks) = evaluate(&valid, ctx.val_patches, cfg, batcher, ctx.device);
        let rep = ClassificationReport::compute(&labels, &scores, 0.5, None)?;
        let val_dense_auc = match peaks {
            Some(p) => ClassificationReport::compute(&labels, &p, 0.5, None)?.auc,
            None => None,
        };
        // hard-negative round
        if mine_at.contains(&epoch) {
            match Arc::get_mut(&mut cases) {
                Some(cs) => {
                    let added = mine_hard_negatives(&valid, cs, cfg, ctx.device);
                    tracing::info!(epoch, added, "hard-negative round");
                }
                None => tracing::warn!("hard-negative round skipped: the cases are shared"),
            }
        }
        let rec = EpochRecord {
            epoch,
            lr,
            train_loss: loss_sum / loss_n.max(1) as f64,
            val_loss,
            val_auc: rep.auc,
            val_dense_auc,
            val_accuracy: rep.accuracy,
            val_sensitivity: rep.sensitivity,
            val_specificity: rep.specificity,
            val_f2: rep.f2,
            patches: n,
            hard_negatives: cases.iter().map(|c| c.hard_negatives.len()).sum(),
            seconds: t0.elapsed().as_secs_f64(),
        };
        let value = rec.metric(cfg.early_stopping.metric);
        let better = |v: f64, best: f64| {
            if maximise {
                v > best + cfg.early_stopping.min_delta
            } else {
                v < best - cfg.early_stopping.min_delta
            }
        };
        if better(value, st.best_value) {
            st.best_value = value;
            st.best_epoch = epoch;
            st.stale = 0;
            save_weights(model.clone(), ctx.out.join("best"))?;
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
        tracing::info!(
            epoch,
            train_loss = rec.train_loss,
            val_loss = rec.val_loss,
            val_auc = ?rec.val_auc,
            val_dense_auc = ?rec.val_dense_auc,
            val_f2 = rec.val_f2,
            seconds = rec.seconds,
            "epoch"
        );
        (ctx.progress)(&rec);
        st.history.push(rec);
        st.epochs_done = epoch;
        st.hard_negatives = cases
            .iter()
            .map(|c| (c.id.clone(), c.hard_negatives.iter().map(|v| v.to_kji()).collect()))
            .collect();
        write_metrics(ctx.out, &st.history)?;
        save_checkpoint(&ck, &model, &optim, &st)?;
        ran += 1;
    }
    let finished = st.epochs_done >= cfg.epochs || st.stopped_early;
    let bundle = if finished {
        let hashes: std::collections::BTreeSet<String> = load_hashes(ctx.data)?;
        let dir = ctx.out.join("bundle");
        write_bundle(
            &dir,
            ctx.out,
            ctx.data,
            cfg,
            split,
            &hashes,
            st.best_epoch,
            st.best_value,
        )?;
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

fn load_hashes(data: &Path) -> Result<std::collections::BTreeSet<String>> {
    let mut out = std::collections::BTreeSet::new();
    for d in aneu_preproc::list_preprocessed(data)? {
        let mp = d.join("meta.json");
        let text = std::fs::read_to_string(&mp).map_err(|e| file_err(&mp, e))?;
        let meta: aneu_preproc::PreprocessMeta = serde_json::from_str(&text).map_err(|e| Error::Format {
            path: mp.clone(),
            reason: e.to_string(),
        })?;
        out.insert(meta.config_hash);
    }
    Ok(out)
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

/// Validation loss (patch-weighted), labels, present probabilities and,
/// with a dense head, each patch's peak voxel probability.
fn evaluate<B: Backend>(
    model: &AnyModel<B>,
    patches: &[aneu_patch::Patch],
    cfg: &TrainConfig,
    batcher: PatchBatcher,
    device: &B::Device,
) -> (f64, Vec<f64>, Vec<f64>, Option<Vec<f64>>) {
    let mut labels = Vec::with_capacity(patches.len());
    let mut scores = Vec::with_capacity(patches.len());
    let mut peaks: Vec<f64> = Vec::new();
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
        let loss = scalar(total_loss(&cfg.loss, out, &batch.targets));
        ls += loss * chunk.len() as f64;
        ln += chunk.len();
        labels.extend(chunk.iter().map(|p| f64::from(p.label)));
        scores.extend(probs.iter().map(|v| f64::from(*v)));
    }
    // empty exactly when the model has no dense head
    let peaks = (!peaks.is_empty()).then_some(peaks);
    (ls / ln.max(1) as f64, labels, scores, peaks)
}

/// Runs the model over every training scan (windows touching the mask)
/// and adds each scan's strongest responses that hold no aneurysm (beyond
/// the exclusion radius of every finding) to its hard-negative pool.
///
/// With a dense head the windows' dense probabilities are max-merged into
/// one map and the false positives are its strongest voxels inside the
/// brain mask, at least half a patch apart: the responses that become
/// candidates at inference. The windows may then be larger than the
/// training patch (`hard_negatives.window`). Without a dense head each
/// window scores its centre with the present head. Only responses of at
/// least `hard_negatives.min_score` count. Returns the number added.
pub fn mine_hard_negatives<B: Backend>(
    model: &AnyModel<B>,
    cases: &mut [Case],
    cfg: &TrainConfig,
    device: &B::Device,
) -> usize {
    let p = cfg.sampler.patch_size;
    let h = &cfg.hard_negatives;
    let w = h.window.unwrap_or(p);
    let batcher = PatchBatcher {
        position_prior: cfg.position_prior,
    };
    let mut added = 0;
    for case in cases.iter_mut() {
        let Ok(grid) = PatchGrid::new(case.image.size(), [w; 3], h.overlap) else {
            continue;
        };
        let Ok(tiles) = grid.tiles_in_mask(&case.mask) else {
            continue;
        };
        let dims = case.image.size().to_kji();
        let mask = case.mask.as_slice();
        let sp = case.image.spacing();
        let sp_kji = [sp[2], sp[1], sp[0]];
        // the dense map, max-merged over windows (dense models only)
        let mut map: Vec<f32> = if model.has_dense_head() {
            vec![0.0; dims.iter().product()]
        } else {
            Vec::new()
        };
        let mut cands: Vec<(f64, [usize; 3])> = Vec::new();
        for chunk in tiles.chunks(cfg.batch_size.max(1)) {
            let centres: Vec<[usize; 3]> = chunk.iter().map(|t| t.start.map(|x| x + w / 2)).collect();
            let patches: Vec<aneu_patch::Patch> = centres
                .iter()
                .map(|c| {
                    let spec = PatchSpec {
                        case: 0,
                        centre: aneu_io::VoxelIndex::new(c[2], c[1], c[0]),
                        source: PatchSource::Grid,
                    };
                    extract_patch(case, spec, w, cfg.sampler.dense, cfg.sampler.default_radius_mm)
                })
                .collect();
            let batch: crate::data::PatchBatch<B> = batcher.batch(patches, device);
            let out = model.forward_patches(batch.images);
            match out.dense {
                Some(d) => {
                    let probs = sigmoid(d)
                        .into_data()
                        .convert::<f32>()
                        .to_vec::<f32>()
                        .unwrap_or_default();
                    for (n, t) in chunk.iter().enumerate() {
                        let Some(win) = probs.get(n * w * w * w..(n + 1) * w * w * w) else {
                            continue;
                        };
                        // the part of the window inside the volume
                        let [nz, ny, nx]: [usize; 3] =
                            std::array::from_fn(|a| w.min(dims[a].saturating_sub(t.start[a])));
                        for z in 0..nz {
                            for y in 0..ny {
                                let row = ((t.start[0] + z) * dims[1] + t.start[1] + y) * dims[2] + t.start[2];
                                let src = (z * w + y) * w;
                                for (m, v) in map[row..row + nx].iter_mut().zip(&win[src..src + nx]) {
                                    *m = m.max(*v);
                                }
                            }
                        }
                    }
                }
                None => {
                    let probs = sigmoid(out.logit)
                        .into_data()
                        .convert::<f32>()
                        .to_vec::<f32>()
                        .unwrap_or_default();
                    for (prob, c) in probs.iter().zip(&centres) {
                        let c: [usize; 3] = std::array::from_fn(|a| c[a].min(dims[a] - 1));
                        if f64::from(*prob) >= h.min_score {
                            cands.push((f64::from(*prob), c));
                        }
                    }
                }
            }
        }
        let min_score = h.min_score as f32;
        cands.extend(
            map.iter()
                .enumerate()
                .filter(|&(idx, &v)| v >= min_score && mask.get(idx).is_some_and(|&m| m > 0))
                .map(|(idx, &v)| {
                    let c = [idx / (dims[1] * dims[2]), (idx / dims[2]) % dims[1], idx % dims[2]];
                    (f64::from(v), c)
                }),
        );
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        let excl = cfg.sampler.exclusion_radius_mm;
        let dist = |a: [usize; 3], b: [f64; 3]| -> f64 {
            (0..3)
                .map(|x| ((a[x] as f64 - b[x]) * sp_kji[x]).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let min_sep = p as f64 / 2.0 * sp_kji.iter().fold(f64::INFINITY, |a, b| a.min(*b));
        let existing: Vec<[usize; 3]> = case.hard_negatives.iter().map(|v| v.to_kji()).collect();
        let mut chosen: Vec<[usize; 3]> = Vec::new();
        for (_, c) in cands {
            if chosen.len() >= h.per_case {
                break;
            }
            let near_finding = case
                .findings
                .iter()
                .any(|f| dist(c, [f.voxel.k, f.voxel.j, f.voxel.i]) < excl);
            let near_chosen = chosen
                .iter()
                .chain(&existing)
                .any(|o| dist(c, o.map(|x| x as f64)) < min_sep);
            if !near_finding && !near_chosen {
                chosen.push(c);
            }
        }
        added += chosen.len();
        case.hard_negatives
            .extend(chosen.into_iter().map(|c| aneu_io::VoxelIndex::new(c[2], c[1], c[0])));
    }
    added
}

fn save_checkpoint<B: AutodiffBackend, O: Optimizer<AnyModel<B>, B>>(
    ck: &Path,
    model: &AnyModel<B>,
    optim: &O,
    st: &TrainState,
) -> Result<()> {
    let tmp = ck.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| file_err(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| file_err(&tmp, e))?;
    save_weights(model.clone(), tmp.join("model"))?;
    WeightsRecorder::new()
        .record(optim.to_record(), tmp.join("optim"))
        .map_err(|e| Error::Checkpoint {
            path: tmp.join("optim.mpk"),
            reason: e.to_string(),
        })?;
    let json = serde_json::to_string(st).unwrap_or_default();
    std::fs::write(tmp.join("state.json"), json).map_err(|e| file_err(&tmp.join("state.json"), e))?;
    if ck.exists() {
        std::fs::remove_dir_all(ck).map_err(|e| file_err(ck, e))?;
    }
    std::fs::rename(&tmp, ck).map_err(|e| file_err(ck, e))
}

fn write_metrics(out: &Path, history: &[EpochRecord]) -> Result<()> {
    let p = out.join("metrics.csv");
    let tmp = out.join(".metrics.csv.tmp");
    {
        let mut w = csv::Writer::from_path(&tmp).map_err(|e| Error::Format {
            path: tmp.clone(),
            reason: e.to_string(),
        })?;
        for r in history {
            w.serialize(r).map_err(|e| Error::Format {
                path: tmp.clone(),
                reason: e.to_string(),
            })?;
        }
        w.flush().map_err(|e| file_err(&tmp, e))?;
    }
    std::fs::rename(&tmp, &p).map_err(|e| file_err(&p, e))?;
    crate::plot::plot_history(history, &out.join("metrics.png"))
}

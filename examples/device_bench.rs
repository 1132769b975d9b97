//! Times the whole chain on one device — DICOM folder → the bundle's
//! preprocessing → sliding-window map → candidates → the 14 outputs — on a
//! phantom of the chosen size, then each stage alone, the sliding window
//! with and without the mask restriction (the figure set against MONAI by
//! `benches/torch/monai_sliding_window.py`, which reads this program's
//! JSON), and with `--train-steps` the models' training steps per second.
//! docs/benchmarks.md ("GPU") has the figures of an H200.
//!
//! ```sh
//! cargo run --release --features cuda --example device_bench -- \
//!     --device cuda --work /tmp/aneu-bench --out bench.json [--bundle RUN/bundle] [--train-steps]
//! ```
//!
//! Without `--bundle` it writes a bundle of `--model-config`
//! (`configs/unet_dense.json`) with freshly initialised weights: the
//! timing does not depend on the weights, except through the number of
//! candidates (capped by the config's `max_candidates`), which the JSON
//! records.

mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use aneu::bundle::{BundleManifest, Metric, ModelBundle, Split, Thresholds};
use aneu::infer::{InferConfig, Predictor};
use aneu::io::{DicomSeries, Modality};
use aneu::models::burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use aneu::models::burn::prelude::*;
use aneu::models::burn::tensor::Distribution;
use aneu::models::burn::tensor::backend::AutodiffBackend;
use aneu::models::{ModelConfig, PatchModel, TinyUNet3dConfig, save_weights, with_backend_rng};
use aneu::patch::{Case, PatchGrid};
use aneu::phantom::{PhantomConfig, SizePreset, generate};
use aneu::preproc::{PreprocessConfig, preprocess_series};
use aneu::train::TrainConfig;
use clap::Parser;
use serde_json::{Value, json};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Time aneu's chain and models on one device.
#[derive(Parser)]
struct Args {
    /// cpu (Flex), cuda or wgpu.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Scratch folder for the phantom and the bundle (kept between runs).
    #[arg(long)]
    work: PathBuf,
    /// The JSON summary to write.
    #[arg(long)]
    out: PathBuf,
    /// A trained bundle; without it, `--model-config` with fresh weights.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// The training config whose model, patch size and position prior the
    /// fresh bundle takes.
    #[arg(long, default_value = "configs/unet_dense.json")]
    model_config: PathBuf,
    /// Phantom size: tiny, small or full.
    #[arg(long, default_value = "full")]
    size: SizePreset,
    /// Phantom seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Timed repetitions of each stage (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Sliding-window edge (the bundle's patch size when absent).
    #[arg(long)]
    roi: Option<usize>,
    /// Sliding-window overlap.
    #[arg(long, default_value_t = 0.5)]
    overlap: f64,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Also time training steps (forward, backward, AdamW) of TinyUNet3d
    /// and the config's model at 32³ and 64³ patches.
    #[arg(long)]
    train_steps: bool,
    /// Skip the chain (time the training steps alone).
    #[arg(long)]
    only_train: bool,
    /// Time the model's forward pass alone on a batch of windows (the
    /// sliding window's share on the device).
    #[arg(long)]
    forward: bool,
    /// Patches per training step.
    #[arg(long, default_value_t = 4)]
    train_batch: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn timed<T>(f: impl FnOnce() -> BoxResult<T>) -> BoxResult<(T, f64)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, t.elapsed().as_secs_f64()))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The phantom's series folder, generated on first use.
fn phantom_series(a: &Args) -> BoxResult<(PathBuf, f64)> {
    let root = a.work.join(format!("phantom-{:?}-{}", a.size, a.seed).to_lowercase());
    let mut seconds = 0.0;
    if !root.join("series").is_dir() {
        let config = PhantomConfig::new(1, a.seed, a.size)
            .with_positive_rate(1.0)
            .with_modalities(&[aneu::io::Modality::Mra]);
        seconds = timed(|| Ok(generate(&config, &root)?))?.1;
    }
    let dir = std::fs::read_dir(root.join("series"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .ok_or_else(|| format!("{}: no series folder", root.display()))?;
    Ok((dir, seconds))
}

fn write_json(path: &Path, v: &impl serde::Serialize) -> BoxResult<()> {
    Ok(aneu::io::write_atomic(
        path,
        serde_json::to_string_pretty(v)?.as_bytes(),
    )?)
}

/// A bundle of `config` with freshly initialised weights.
fn fresh_bundle<B: Backend>(a: &Args, device: &B::Device) -> BoxResult<PathBuf> {
    let config = TrainConfig::from_json_file(&a.model_config)?;
    let dir = a.work.join("fresh-bundle");
    let weights = a.work.join("fresh-weights");
    std::fs::create_dir_all(&a.work)?;
    save_weights(config.model.init_seeded::<B>(config.seed, device)?, &weights)?;
    ModelBundle {
        dir: dir.clone(),
        manifest: BundleManifest::new(
            &config.model,
            config.sampler.patch_size,
            config.position_prior,
            0,
            Metric::Auc,
            0.0,
        ),
        model: config.model.clone(),
        preprocess: PreprocessConfig::default(),
        train: config.to_json_value()?,
        split: Split::default(),
        thresholds: Thresholds::default(),
        second_stage: None,
    }
    .write(weights.with_extension("mpk"))?;
    Ok(dir)
}

/// `--bundle`, or a fresh one.
fn bundle_dir<B: Backend>(a: &Args, device: &B::Device) -> BoxResult<PathBuf> {
    match &a.bundle {
        Some(b) => Ok(b.clone()),
        None => fresh_bundle::<B>(a, device),
    }
}

fn predictor<B: Backend>(a: &Args, bundle: &Path, mask_tiles: bool, device: &B::Device) -> BoxResult<Predictor<B>> {
    let mut config = InferConfig::default();
    config.window.roi = a.roi;
    config.window.overlap = a.overlap;
    config.window.batch_size = a.batch;
    config.window.mask_tiles = mask_tiles;
    Ok(Predictor::from_dirs(&[bundle], config, device)?)
}

/// The chain and its stages.
fn chain<B: Backend>(a: &Args, device: &B::Device) -> BoxResult<Value> {
    let (series_dir, gen_s) = phantom_series(a)?;
    let bundle = bundle_dir::<B>(a, device)?;
    let started = unix_now();
    let p = predictor::<B>(a, &bundle, true, device)?;
    let all_tiles = predictor::<B>(a, &bundle, false, device)?;
    // warm-up: kernel compilation and autotuning happen here
    let (first, first_s) = timed(|| Ok(p.predict_dir(&series_dir)?))?;
    let warm_done = unix_now();

    let (mut read, mut pre, mut map, mut map_all, mut case_s, mut whole) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut info = json!({});
    for _ in 0..a.repeats {
        let (series, t) = timed(|| Ok(DicomSeries::read(&series_dir)?))?;
        read.push(t);
        let (pp, t) = timed(|| {
            Ok(preprocess_series(
                &series,
                Modality::Mra,
                &[],
                None,
                p.preprocess_config(),
            )?)
        })?;
        pre.push(t);
        let case = Case::new("bench", pp.image, pp.mask, vec![])?;
        map.push(timed(|| Ok(p.probability_map(&case)?))?.1);
        map_all.push(timed(|| Ok(all_tiles.probability_map(&case)?))?.1);
        let (pred, t) = timed(|| Ok(p.predict_case(&case, Modality::Mra, Some(&series))?))?;
        case_s.push(t);
        whole.push(timed(|| Ok(p.predict_dir(&series_dir)?))?.1);
        let size = case.image.size();
        let dg = series.volume.size();
        let roi = a
            .roi
            .unwrap_or_else(|| p.bundles().next().map_or(64, |b| b.manifest.patch_size));
        let grid = PatchGrid::new(size, [roi; 3], a.overlap)?;
        info = json!({
            "dicom_grid_kji": [dg.nk, dg.nj, dg.ni],
            "preprocessed_shape_kji": [size.nk, size.nj, size.ni],
            "roi": roi,
            "overlap": a.overlap,
            "batch": a.batch,
            "in_channels": p.bundles().next().map_or(1, |b| b.model.in_channels()),
            "tiles_all": grid.tiles().count(),
            "tiles_in_mask": grid.tiles_in_mask(&case.mask)?.len(),
            "candidates": pred.scan.candidates.len(),
        });
    }
    Ok(json!({
        "device": a.device,
        "bundle": bundle,
        "phantom_generate_s": gen_s,
        "first_chain_s": first_s,
        "first_chain_candidates": first.scan.candidates.len(),
        "chain_s": median(whole.clone()),
        "chain_all_s": whole,
        "read_s": median(read),
        "preprocess_s": median(pre),
        "map_masked_tiles_s": median(map),
        "map_all_tiles_s": median(map_all),
        "predict_case_s": median(case_s),
        "grid": info,
        "unix_started": started,
        "unix_warm": warm_done,
        "unix_done": unix_now(),
    }))
}

/// Training steps per second of one model at one patch size.
fn train_steps<B: AutodiffBackend>(
    model: &ModelConfig,
    patch: usize,
    a: &Args,
    device: &B::Device,
) -> BoxResult<Value> {
    let mut m = model.init_seeded::<B>(1, device)?;
    let mut optim = AdamWConfig::new().init();
    let c = model.in_channels();
    let n = a.train_batch;
    let x = with_backend_rng(|| {
        Tensor::<B, 5>::random([n, c, patch, patch, patch], Distribution::Normal(0.0, 1.0), device)
    });
    let mut step = |m: aneu::models::AnyModel<B>| -> (aneu::models::AnyModel<B>, f64) {
        let out = m.forward_patches(x.clone());
        let mut loss = out.logit.mean();
        if let Some(d) = out.dense {
            loss = loss + d.mean();
        }
        let v: f64 = loss.clone().into_scalar().elem();
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        (optim.step(1e-4, m, grads), v)
    };
    let t0 = Instant::now();
    for _ in 0..2 {
        m = step(m).0;
    }
    let warm = t0.elapsed().as_secs_f64();
    let steps = 5;
    let t = Instant::now();
    let mut last = 0.0;
    for _ in 0..steps {
        let (next, v) = step(m);
        m = next;
        last = v;
    }
    let s = t.elapsed().as_secs_f64();
    if !last.is_finite() {
        return Err("a non-finite loss".into());
    }
    Ok(json!({
        "patch": patch,
        "batch": n,
        "warmup_s": warm,
        "step_s": s / steps as f64,
        "patches_per_s": (steps * n) as f64 / s,
    }))
}

/// Forward passes of the bundle's model on one batch of windows: with the
/// dense output read back to the host, and with a device sync only.
fn forward<B: Backend>(a: &Args, bundle: &Path, device: &B::Device) -> BoxResult<Value> {
    let b = ModelBundle::read(bundle)?;
    let m = b.load_model::<B>(device)?;
    let roi = a.roi.unwrap_or(b.manifest.patch_size);
    let c = b.model.in_channels();
    let x = with_backend_rng(|| {
        Tensor::<B, 5>::random([a.batch, c, roi, roi, roi], Distribution::Normal(0.0, 1.0), device)
    });
    let run = |read: bool| -> BoxResult<f64> {
        let out = m.forward_patches(x.clone());
        let d = out.dense.ok_or("the model has no dense head")?;
        if read {
            let v = aneu::models::burn::tensor::activation::sigmoid(d)
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()?;
            Ok(f64::from(v[0]))
        } else {
            B::sync(device).map_err(|e| format!("{e:?}"))?;
            Ok(0.0)
        }
    };
    for _ in 0..3 {
        run(true)?;
    }
    let mut rows = serde_json::Map::new();
    for read in [true, false] {
        let n = 10;
        let t = Instant::now();
        for _ in 0..n {
            run(read)?;
        }
        let key = if read { "with_readback_s" } else { "sync_only_s" };
        rows.insert(key.into(), json!(t.elapsed().as_secs_f64() / n as f64));
    }
    rows.insert("shape".into(), json!([a.batch, c, roi, roi, roi]));
    Ok(Value::Object(rows))
}

fn train_suite<B: AutodiffBackend>(a: &Args, device: &B::Device) -> BoxResult<Value> {
    let config = TrainConfig::from_json_file(&a.model_config)?;
    let models = [
        ("TinyUNet3d", ModelConfig::TinyUNet3d(TinyUNet3dConfig::new())),
        ("config_model", config.model.clone()),
    ];
    let mut rows = Vec::new();
    for (name, m) in &models {
        for patch in [32, 64] {
            let started = unix_now();
            let r = train_steps::<B>(m, patch, a, device)
                .unwrap_or_else(|e| json!({"patch": patch, "error": e.to_string()}));
            eprintln!("train step {name} {patch}³: {r}");
            rows.push(json!({"model": name, "result": r, "unix_started": started, "unix_done": unix_now()}));
        }
    }
    Ok(Value::Array(rows))
}

fn save(a: &Args, v: &Value) -> BoxResult<()> {
    write_json(&a.out, v)
}

fn run(a: &Args) -> BoxResult<()> {
    std::fs::create_dir_all(&a.work)?;
    let mut summary = json!({});
    match a.device.as_str() {
        "cpu" => {
            use aneu::models::burn::backend::{Autodiff, Flex};
            let dev = Default::default();
            if !a.only_train {
                summary["chain"] = chain::<Flex>(a, &dev)?;
                save(a, &summary)?;
            }
            if a.forward {
                summary["forward_f32"] = forward::<Flex>(a, &bundle_dir::<Flex>(a, &dev)?, &dev)?;
            }
            if a.train_steps {
                summary["train_f32"] = train_suite::<Autodiff<Flex>>(a, &dev)?;
            }
        }
        #[cfg(feature = "cuda")]
        "cuda" => {
            use aneu::models::burn::backend::{Autodiff, Cuda};
            use aneu::models::burn::tensor::f16;
            let dev = Default::default();
            if !a.only_train {
                summary["chain"] = chain::<Cuda<f32>>(a, &dev)?;
                save(a, &summary)?;
                eprintln!("{summary:#}");
                // the whole chain again in half precision
                let bundle = summary["chain"]["bundle"]
                    .as_str()
                    .map(PathBuf::from)
                    .ok_or("no bundle path")?;
                let (series_dir, _) = phantom_series(a)?;
                let half = (|| -> BoxResult<Value> {
                    let p = predictor::<Cuda<f16>>(a, &bundle, true, &dev)?;
                    let first = timed(|| Ok(p.predict_dir(&series_dir)?))?.1;
                    let mut t = Vec::new();
                    for _ in 0..a.repeats {
                        t.push(timed(|| Ok(p.predict_dir(&series_dir)?))?.1);
                    }
                    Ok(json!({"first_chain_s": first, "chain_s": median(t)}))
                })()
                .unwrap_or_else(|e| json!({"error": e.to_string()}));
                summary["chain_f16"] = half;
                save(a, &summary)?;
            }
            if a.forward {
                let bundle = bundle_dir::<Cuda<f32>>(a, &dev)?;
                summary["forward_f32"] = forward::<Cuda<f32>>(a, &bundle, &dev)?;
                save(a, &summary)?;
                summary["forward_f16"] =
                    forward::<Cuda<f16>>(a, &bundle, &dev).unwrap_or_else(|e| json!({"error": e.to_string()}));
                save(a, &summary)?;
            }
            if a.train_steps {
                summary["train_f32"] = train_suite::<Autodiff<Cuda<f32>>>(a, &dev)?;
                save(a, &summary)?;
                summary["train_f16"] = train_suite::<Autodiff<Cuda<f16>>>(a, &dev)?;
            }
        }
        #[cfg(feature = "wgpu")]
        "wgpu" => {
            use aneu::models::burn::backend::{Autodiff, Wgpu};
            let dev = Default::default();
            if !a.only_train {
                summary["chain"] = chain::<Wgpu>(a, &dev)?;
                save(a, &summary)?;
            }
            if a.forward {
                summary["forward_f32"] = forward::<Wgpu>(a, &bundle_dir::<Wgpu>(a, &dev)?, &dev)?;
            }
            if a.train_steps {
                summary["train_f32"] = train_suite::<Autodiff<Wgpu>>(a, &dev)?;
            }
        }
        d => return Err(format!("device {d:?} is not built in (see --features)").into()),
    }
    save(a, &summary)?;
    println!("{summary:#}");
    Ok(())
}

fn main() -> ExitCode {
    common::init_logging();
    let a = Args::parse();
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

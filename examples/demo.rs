//! The whole job on the CPU with nothing downloaded: phantoms → preprocess
//! → train (`configs/ci_dense.json`, `unet_dense.json` shortened) →
//! calibrate on the validation split → predict the held-out split from
//! DICOM → evaluate → HTML report.
//!
//! ```sh
//! cargo run --release --example demo [-- --out demo --n 30 --seed 2024 --device cpu|cuda --tta]
//! ```
//!
//! `--tta` adds left-right flip test-time augmentation to calibration and
//! prediction: better held-out figures, twice the inference time.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use aneu::bundle::ModelBundle;
use aneu::infer::{
    EvaluateOptions, InferConfig, PredictOptions, Predictor, SlidingWindow, ThresholdMethod, Tta,
    calibrate_on_validation, evaluate, predict_dataset,
};
use aneu::models::burn::prelude::Backend;
use aneu::models::burn::tensor::backend::AutodiffBackend;
use aneu::phantom::{PhantomConfig, SizePreset, generate};
use aneu::preproc::{PreprocessConfig, Shard, preprocess_dataset};
use aneu::train::{TrainConfig, TrainOptions, train};
use aneu::viz::{ReportOptions, report_dataset};
use clap::Parser;

/// Run the aneu demo.
#[derive(Parser)]
struct Args {
    /// Working folder (phantoms, preprocessed data, run, predictions, report).
    #[arg(long, default_value = "demo")]
    out: PathBuf,
    /// Number of `small` TOF-MRA phantoms.
    #[arg(long, default_value_t = 30)]
    n: usize,
    /// Phantom seed.
    #[arg(long, default_value_t = 2024)]
    seed: u64,
    /// The training config.
    #[arg(long, default_value = "configs/ci_dense.json")]
    config: PathBuf,
    /// cpu (Flex) or cuda (needs --features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Left-right flip test-time augmentation (doubles inference time).
    #[arg(long)]
    tta: bool,
    /// Sliding-window edge at inference, in voxels (a multiple of the
    /// model's size multiple; the training patch is the safest choice for
    /// an instance-normed model, see docs/benchmarks.md).
    #[arg(long, default_value_t = 48)]
    roi: usize,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn step(name: &str, t: Instant) {
    println!("  {name} done ({:.0} s)", t.elapsed().as_secs_f64());
}

fn train_part<A: AutodiffBackend>(a: &Args, data: &Path, run: &Path, device: &A::Device) -> Res<PathBuf> {
    let cfg = TrainConfig::from_json_file(&a.config)?;
    let bar = indicatif::ProgressBar::new(cfg.epochs as u64);
    let r = train::<A>(data, &cfg, run, device, &TrainOptions::default(), &|e| {
        bar.set_position(e.epoch as u64);
        bar.set_message(format!(
            "val AUC {:?} dense {:?}",
            e.val_auc.map(|v| (v * 1000.0).round() / 1000.0),
            e.val_dense_auc.map(|v| (v * 1000.0).round() / 1000.0)
        ));
    })?;
    bar.finish_and_clear();
    Ok(r.bundle.ok_or("training ended without a bundle")?)
}

fn infer_part<B: Backend>(
    a: &Args,
    raw: &Path,
    data: &Path,
    bundle_dir: &Path,
    pred: &Path,
    device: &B::Device,
) -> Res<()> {
    let config = InferConfig {
        window: SlidingWindow::default().with_roi(a.roi).with_overlap(0.25),
        tta: if a.tta { Tta::FlipLr } else { Tta::None },
        ..Default::default()
    };
    let t = Instant::now();
    let mut predictor = Predictor::<B>::from_dirs(&[bundle_dir], config, device)?;
    let th = calibrate_on_validation(&mut predictor, data, ThresholdMethod::Youden)?;
    let mut bundle = ModelBundle::read(bundle_dir)?;
    bundle.write_thresholds(th.clone())?;
    step(&format!("calibration (threshold {:.3})", th.present), t);
    let t = Instant::now();
    let opts = PredictOptions {
        prob_maps: true,
        series: Some(bundle.split.test.clone()),
        ..Default::default()
    };
    let bar = indicatif::ProgressBar::new(bundle.split.test.len() as u64);
    let s = predict_dataset(raw, &predictor, pred, &opts, &|n, _| bar.set_position(n as u64))?;
    bar.finish_and_clear();
    step(
        &format!("prediction of {} held-out series ({s})", s.done + s.skipped),
        t,
    );
    Ok(())
}

fn run(a: &Args) -> Res<()> {
    let total = Instant::now();
    let (raw, data, run, pred, report) = (
        a.out.join("phantoms"),
        a.out.join("preprocessed"),
        a.out.join("run"),
        a.out.join("predictions"),
        a.out.join("report"),
    );
    println!("1/6 phantoms → {}", raw.display());
    let t = Instant::now();
    if !raw.join("train.csv").exists() {
        generate(
            &PhantomConfig::new(a.n, a.seed, SizePreset::Small)
                .with_positive_rate(0.5)
                .with_modalities(&[aneu::io::Modality::Mra]),
            &raw,
        )?;
    }
    step("phantoms", t);
    println!("2/6 preprocessing → {}", data.display());
    let t = Instant::now();
    let s = preprocess_dataset(&raw, &data, &PreprocessConfig::default(), Shard::default(), &|_| {})?;
    step(&format!("preprocessing ({s})"), t);
    println!("3/6 training {} → {}", a.config.display(), run.display());
    let t = Instant::now();
    let bundle = match a.device.as_str() {
        "cpu" => {
            use aneu::models::burn::backend::{Autodiff, Flex};
            train_part::<Autodiff<Flex>>(a, &data, &run, &Default::default())?
        }
        #[cfg(feature = "cuda")]
        "cuda" => {
            use aneu::models::burn::backend::{Autodiff, Cuda};
            train_part::<Autodiff<Cuda>>(a, &data, &run, &Default::default())?
        }
        d => return Err(format!("device {d:?} is not built in (see --features)").into()),
    };
    step("training", t);
    println!("4/6 calibration and prediction → {}", pred.display());
    match a.device.as_str() {
        #[cfg(feature = "cuda")]
        "cuda" => infer_part::<aneu::models::burn::backend::Cuda>(a, &raw, &data, &bundle, &pred, &Default::default())?,
        _ => infer_part::<aneu::models::burn::backend::Flex>(a, &raw, &data, &bundle, &pred, &Default::default())?,
    }
    println!("5/6 evaluation");
    let r = evaluate(&pred, &raw, &EvaluateOptions::default())?;
    aneu::io::write_atomic(&a.out.join("evaluation.json"), r.to_json()?.as_bytes())?;
    println!("6/6 report → {}", report.display());
    let t = Instant::now();
    // the test series were preprocessed with the bundle's config in step 2
    let opts = ReportOptions {
        preprocessed: Some(data.clone()),
        ..Default::default()
    };
    let s = report_dataset(&pred, &raw, &report, &opts, &|_, _| {})?;
    step("report", t);
    println!("\n{}", r.to_markdown());
    println!("Report: {}", s.index.display());
    println!("Total: {:.0} s", total.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

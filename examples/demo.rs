//! The whole job on the CPU with nothing downloaded: phantoms → preprocess
//! → the shipped detector (`models/unet-vessels-mra-cta`) predicts the series from
//! DICOM → evaluate → HTML report. With `--train` it also trains
//! `configs/ci_dense.json` on the phantoms' training split, calibrates it on
//! the validation split, and scores both models on the held-out split.
//!
//! ```sh
//! cargo run --release --example demo [-- --out demo --n 30 --seed 2024 --train --device cpu|cuda --tta]
//! ```
//!
//! `--tta` adds left-right flip test-time augmentation to calibration and
//! prediction: twice the inference time. The shipped model runs it without
//! the flag: its calibration recorded it (`thresholds.json`).

mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use aneu::bundle::ModelBundle;
use aneu::infer::{
    EvaluateOptions, InferConfig, PredictOptions, Predictor, SlidingWindow, ThresholdMethod, Tta,
    calibrate_on_validation, evaluate, predict_dataset,
};
use aneu::io::Modality;
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
    /// Number of `small` phantoms (TOF-MRA and CTA).
    #[arg(long, default_value_t = 30)]
    n: usize,
    /// Phantom seed (the shipped model never saw this seed's phantoms).
    #[arg(long, default_value_t = 2024)]
    seed: u64,
    /// The detector that predicts the series.
    #[arg(long, default_value = "models/unet-vessels-mra-cta")]
    bundle: PathBuf,
    /// Also train a model here (`--config`) and compare it with `--bundle`
    /// on the held-out split.
    #[arg(long)]
    train: bool,
    /// The training config of `--train`.
    #[arg(long, default_value = "configs/ci_dense.json")]
    config: PathBuf,
    /// cpu (Flex) or cuda (needs --features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Left-right flip test-time augmentation (doubles inference time;
    /// without it, a bundle runs the TTA its calibration recorded, which
    /// for the shipped model is this one).
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

/// Predicts `series` (all when `None`) of `raw` with the bundle into
/// `pred`; calibrates the bundle's thresholds on its validation split
/// first when `calibrate` is set.
#[allow(clippy::too_many_arguments)]
fn infer_part<B: Backend>(
    a: &Args,
    raw: &Path,
    data: &Path,
    bundle_dir: &Path,
    calibrate: bool,
    series: Option<Vec<String>>,
    pred: &Path,
    device: &B::Device,
) -> Res<usize> {
    let config = InferConfig {
        window: SlidingWindow::default().with_roi(a.roi).with_overlap(0.25),
        tta: a.tta.then_some(Tta::FlipLr),
        ..Default::default()
    };
    let mut predictor = Predictor::<B>::from_dirs(&[bundle_dir], config, device)?;
    if calibrate {
        let t = Instant::now();
        let th = calibrate_on_validation(&mut predictor, data, ThresholdMethod::Youden)?;
        ModelBundle::read(bundle_dir)?.write_thresholds(th.clone())?;
        step(&format!("calibration (threshold {:.3})", th.present), t);
    }
    let t = Instant::now();
    let opts = PredictOptions {
        prob_maps: true,
        series,
        // the series were preprocessed with the default config in step 2
        preprocessed: Some(data.to_path_buf()),
        ..Default::default()
    };
    let bar = indicatif::ProgressBar::new(0);
    let s = predict_dataset(raw, &predictor, pred, &opts, &|n, total| {
        bar.set_length(total as u64);
        bar.set_position(n as u64)
    })?;
    bar.finish_and_clear();
    step(
        &format!(
            "{}: prediction of {} held-out series ({s})",
            bundle_dir.display(),
            s.done + s.skipped
        ),
        t,
    );
    Ok(s.done + s.skipped)
}

fn predict_on_device(
    a: &Args,
    raw: &Path,
    data: &Path,
    bundle: &Path,
    calibrate: bool,
    series: Option<Vec<String>>,
    pred: &Path,
) -> Res<usize> {
    match a.device.as_str() {
        #[cfg(feature = "cuda")]
        "cuda" => infer_part::<aneu::models::burn::backend::Cuda>(
            a,
            raw,
            data,
            bundle,
            calibrate,
            series,
            pred,
            &Default::default(),
        ),
        _ => infer_part::<aneu::models::burn::backend::Flex>(
            a,
            raw,
            data,
            bundle,
            calibrate,
            series,
            pred,
            &Default::default(),
        ),
    }
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
    if !a.bundle.join("bundle.json").exists() {
        return Err(format!(
            "{} holds no model bundle (run the demo from the repository root, or pass --bundle)",
            a.bundle.display()
        )
        .into());
    }
    println!("1/6 phantoms → {}", raw.display());
    let t = Instant::now();
    if !raw.join("train.csv").exists() {
        generate(
            &PhantomConfig::new(a.n, a.seed, SizePreset::Small)
                .with_positive_rate(0.5)
                .with_modalities(&[Modality::Mra, Modality::Cta]),
            &raw,
        )?;
    }
    step("phantoms", t);
    println!("2/6 preprocessing → {}", data.display());
    let t = Instant::now();
    let s = preprocess_dataset(&raw, &data, &PreprocessConfig::default(), Shard::default(), &|_| {})?;
    step(&format!("preprocessing ({s})"), t);
    let trained = if a.train {
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
        Some(bundle)
    } else {
        println!("3/6 training: skipped (--train trains {} too)", a.config.display());
        None
    };
    // held out: the trained model's test split, else every series (the
    // shipped model was trained on other seeds)
    let held_out = match &trained {
        Some(b) => Some(ModelBundle::read(b)?.split.test),
        None => None,
    };
    println!("4/6 prediction → {}", pred.display());
    let shipped = pred.join("shipped");
    let predicted = predict_on_device(a, &raw, &data, &a.bundle, false, held_out.clone(), &shipped)?;
    if let Some(b) = &trained {
        predict_on_device(a, &raw, &data, b, true, held_out, &pred.join("trained"))?;
    }
    println!("5/6 evaluation");
    let mut tables = Vec::new();
    for (name, dir) in [("shipped", &shipped), ("trained", &pred.join("trained"))] {
        if name == "trained" && trained.is_none() {
            continue;
        }
        let r = evaluate(dir, &raw, &EvaluateOptions::default())?;
        aneu::io::write_atomic(&a.out.join(format!("evaluation-{name}.json")), r.to_json()?.as_bytes())?;
        tables.push(format!("### The {name} model\n\n{}", r.to_markdown()));
    }
    println!("6/6 report → {}", report.display());
    let t = Instant::now();
    let opts = ReportOptions {
        preprocessed: Some(data.clone()),
        ..Default::default()
    };
    let s = report_dataset(&shipped, &raw, &report, &opts, &|_, _| {})?;
    step("report", t);
    println!("\n{}", tables.join("\n"));
    println!(
        "These figures are on {} series: see `benchmark_detection` for figures with intervals.",
        predicted
    );
    println!("Report: {}", s.index.display());
    println!("Total: {:.0} s", total.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> ExitCode {
    common::init_logging();
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

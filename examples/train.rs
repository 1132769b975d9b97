//! Trains a patch model on a preprocessed dataset and writes a model
//! bundle.
//!
//! ```sh
//! cargo run --release --example train -- --data PREPROC_DIR --config configs/ci_tiny.json --out RUN_DIR \
//!     [--resume] [--device cpu|cuda|wgpu]
//! ```
//!
//! `--device cuda` needs `--features cuda` (and `precision` f16/bf16 in the
//! config picks a half-precision CUDA backend); `--device wgpu` needs
//! `--features wgpu`.

mod common;

use std::process::ExitCode;

use aneu::train::{EpochRecord, Precision, TrainConfig, TrainOptions, TrainReport, train};
use clap::Parser;

/// Train a model.
#[derive(Parser)]
struct Args {
    /// The preprocessed dataset (output of the preprocess example).
    #[arg(long)]
    data: std::path::PathBuf,
    /// The TrainConfig JSON.
    #[arg(long)]
    config: std::path::PathBuf,
    /// The run folder (checkpoints, metrics, bundle/).
    #[arg(long)]
    out: std::path::PathBuf,
    /// Continue from the run folder's checkpoint.
    #[arg(long)]
    resume: bool,
    /// Stop after this many epochs in this call (resume later).
    #[arg(long)]
    max_epochs: Option<usize>,
    /// cpu (Flex), cuda or wgpu.
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn run(a: &Args) -> Result<TrainReport, Box<dyn std::error::Error>> {
    let config = TrainConfig::from_json_file(&a.config)?;
    let opts = TrainOptions {
        resume: a.resume,
        max_epochs_this_call: a.max_epochs,
    };
    let bar = indicatif::ProgressBar::new(config.epochs as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |r: &EpochRecord| {
        bar.set_position(r.epoch as u64);
        bar.set_message(format!(
            "loss {:.4} val AUC {} dense {} F2 {:.3}{}",
            r.train_loss,
            r.val_auc.map_or("-".into(), |v| format!("{v:.3}")),
            r.val_dense_auc.map_or("-".into(), |v| format!("{v:.3}")),
            r.val_f2,
            r.val_vessel_dice
                .map_or(String::new(), |v| format!(" vessel Dice {v:.3}")),
        ));
    };
    let report = match (a.device.as_str(), config.precision) {
        ("cpu", Precision::F32) => {
            use aneu::models::burn::backend::{Autodiff, Flex};
            train::<Autodiff<Flex>>(&a.data, &config, &a.out, &Default::default(), &opts, &progress)?
        }
        ("cpu", p) => return Err(format!("precision {p:?} needs --device cuda").into()),
        #[cfg(feature = "cuda")]
        ("cuda", p) => {
            use aneu::models::burn::backend::{Autodiff, Cuda};
            let dev = Default::default();
            match p {
                Precision::F32 => train::<Autodiff<Cuda<f32>>>(&a.data, &config, &a.out, &dev, &opts, &progress)?,
                Precision::F16 => train::<Autodiff<Cuda<aneu::models::burn::tensor::f16>>>(
                    &a.data, &config, &a.out, &dev, &opts, &progress,
                )?,
                Precision::Bf16 => train::<Autodiff<Cuda<aneu::models::burn::tensor::bf16>>>(
                    &a.data, &config, &a.out, &dev, &opts, &progress,
                )?,
            }
        }
        #[cfg(feature = "wgpu")]
        ("wgpu", Precision::F32) => {
            use aneu::models::burn::backend::{Autodiff, Wgpu};
            train::<Autodiff<Wgpu>>(&a.data, &config, &a.out, &Default::default(), &opts, &progress)?
        }
        (d, p) => return Err(format!("device {d:?} with precision {p:?} is not built in (see --features)").into()),
    };
    bar.finish_and_clear();
    Ok(report)
}

/// A finished second-stage run (`second_stage_of` in the config) also
/// writes the two-stage detector, `<out>/detector`.
fn two_stage(a: &Args, r: &TrainReport) -> Result<(), Box<dyn std::error::Error>> {
    let config = TrainConfig::from_json_file(&a.config)?;
    if let (Some(first), Some(second)) = (&config.second_stage_of, &r.bundle) {
        let d = aneu::bundle::ModelBundle::combine(first, second, a.out.join("detector"))?;
        println!("two-stage detector: {}", d.dir.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    common::init_logging();
    let a = Args::parse();
    match run(&a) {
        Ok(r) => {
            let last = r.history.last();
            println!(
                "{} after {} epochs{}; best epoch {} ({:.4}); bundle: {}",
                if r.finished { "finished" } else { "paused" },
                r.history.len(),
                if r.stopped_early { " (early stop)" } else { "" },
                r.best_epoch,
                r.best_value,
                r.bundle.as_ref().map_or("not yet".into(), |b| b.display().to_string())
            );
            if let Some(l) = last {
                println!(
                    "last epoch: val AUC {:?}, sensitivity {:.3}, specificity {:.3}",
                    l.val_auc, l.val_sensitivity, l.val_specificity
                );
            }
            if let Err(e) = two_stage(&a, &r) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

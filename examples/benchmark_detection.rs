//! The detection benchmark (`aneu::benchmark`): fresh `small` phantoms per
//! modality, each bundle run over them from DICOM, and every detection
//! figure with its 95 % bootstrap interval, per modality and overall, as
//! `benchmark.json` and `benchmark.md`. Resumable: run it again to finish
//! an interrupted run, or with more bundles.
//!
//! ```sh
//! cargo run --release --example benchmark_detection -- --bundle B [--bundle B2 …] --out DIR \
//!     [--n 120] [--seed 9000001] [--modality MRA,CTA] [--appearance outside] [--config infer.json] [--roi 48] [--tta] [--device cpu|cuda|wgpu]
//! ```

mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use aneu::benchmark::{BenchmarkConfig, BenchmarkProgress, BenchmarkReport, run_benchmark};
use aneu::infer::{InferConfig, Tta};
use aneu::io::Modality;
use aneu::models::burn::prelude::Backend;
use aneu::phantom::AppearanceRange;
use clap::Parser;

/// Benchmark detection on fresh phantoms.
#[derive(Parser)]
struct Args {
    /// A model bundle; repeat to compare several on the same phantoms.
    #[arg(long, required = true)]
    bundle: Vec<PathBuf>,
    /// The output folder (phantoms, predictions, benchmark.json / .md).
    #[arg(long)]
    out: PathBuf,
    /// Phantoms per modality.
    #[arg(long, default_value_t = BenchmarkConfig::default().n)]
    n: usize,
    /// The benchmark's seed (never a training seed).
    #[arg(long, default_value_t = BenchmarkConfig::default().seed)]
    seed: u64,
    /// Modalities, comma-separated (MRA, CTA, "MRI T2", "MRI T1post").
    #[arg(long, value_delimiter = ',', default_values_t = BenchmarkConfig::default().modalities)]
    modality: Vec<Modality>,
    /// The phantoms' appearance: standard, wide, or outside the training
    /// ranges (lower contrast, more noise, blur; the same anatomy).
    #[arg(long, default_value = "standard")]
    appearance: AppearanceRange,
    /// A JSON InferConfig (defaults otherwise).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Sliding-window edge in voxels (overrides the config's).
    #[arg(long)]
    roi: Option<usize>,
    /// Left-right flip test-time augmentation (without it and without a
    /// config's `tta`, each bundle runs the TTA its calibration recorded).
    #[arg(long)]
    tta: bool,
    /// cpu (Flex), cuda or wgpu.
    #[arg(long, default_value = "cpu")]
    device: String,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn go<B: Backend>(a: &Args, config: &BenchmarkConfig, device: &B::Device) -> Res<BenchmarkReport> {
    let bar = indicatif::ProgressBar::new(0);
    let r = run_benchmark::<B>(&a.bundle, &a.out, config, device, &|p| match p {
        BenchmarkProgress::Phantoms(m) => bar.set_message(format!("phantoms {m}")),
        BenchmarkProgress::Predict(label, m, n, total) => {
            bar.set_message(format!("{label} {m}"));
            bar.set_length(total as u64);
            bar.set_position(n as u64);
        }
        BenchmarkProgress::Score(label) => bar.set_message(format!("scoring {label}")),
    })?;
    bar.finish_and_clear();
    Ok(r)
}

fn run(a: &Args) -> Res<BenchmarkReport> {
    let mut infer = match &a.config {
        Some(p) => InferConfig::from_json_file(p)?,
        None => InferConfig::default(),
    };
    if let Some(roi) = a.roi {
        infer.window = infer.window.with_roi(roi);
    }
    if a.tta {
        infer.tta = Some(Tta::FlipLr);
    }
    let config = BenchmarkConfig {
        n: a.n,
        seed: a.seed,
        modalities: a.modality.clone(),
        appearance: a.appearance,
        infer,
        ..Default::default()
    };
    match a.device.as_str() {
        "cpu" => go::<aneu::models::burn::backend::Flex>(a, &config, &Default::default()),
        #[cfg(feature = "cuda")]
        "cuda" => go::<aneu::models::burn::backend::Cuda>(a, &config, &Default::default()),
        #[cfg(feature = "wgpu")]
        "wgpu" => go::<aneu::models::burn::backend::Wgpu>(a, &config, &Default::default()),
        d => Err(format!("device {d:?} is not built in (see --features)").into()),
    }
}

fn main() -> ExitCode {
    common::init_logging();
    let a = Args::parse();
    let t = std::time::Instant::now();
    match run(&a) {
        Ok(r) => {
            println!("{}", r.to_markdown());
            println!(
                "{:.0} s; see {}",
                t.elapsed().as_secs_f64(),
                a.out.join("benchmark.md").display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

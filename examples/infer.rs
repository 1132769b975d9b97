//! Runs one or more model bundles (an ensemble) over an RSNA-layout
//! dataset or one DICOM series folder, writing `submission.csv`, a JSON
//! file per series and optionally the probability maps. Restartable and
//! shardable.
//!
//! ```sh
//! cargo run --release --example infer -- --bundle RUN/bundle --input (RSNA_ROOT|SERIES_DIR) --out DIR \
//!     [--bundle FOLD2/bundle …] [--config infer.json] [--prob-maps] [--tta] [--shard I/N] [--device cpu|cuda|wgpu] \
//!     [--preprocessed PREPROCESSED_DIR]
//! ```

mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use aneu::infer::{InferConfig, PredictOptions, PredictSummary, Predictor, Tta, predict_dataset};
use aneu::preproc::Shard;
use clap::Parser;

/// Predict aneurysms in DICOM series.
#[derive(Parser)]
struct Args {
    /// A model bundle; repeat for an ensemble (the folds of a
    /// cross-validation, say).
    #[arg(long, required = true)]
    bundle: Vec<PathBuf>,
    /// An RSNA-layout root (with series/) or one series folder.
    #[arg(long)]
    input: PathBuf,
    /// The output folder.
    #[arg(long)]
    out: PathBuf,
    /// A JSON InferConfig (defaults otherwise).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write <uid>_prob.nii.gz too.
    #[arg(long)]
    prob_maps: bool,
    /// Left–right flip TTA (overrides the config's tta; without either,
    /// the bundle runs the TTA its calibration recorded).
    #[arg(long)]
    tta: bool,
    /// Write <uid>_arteries.nii.gz too: the artery labels (the artery
    /// labeller's when the bundle's thresholds hold one, else the vessel head's)
    /// (sets the config's arteries; bundles without a vessel head make none).
    #[arg(long)]
    arteries: bool,
    /// This machine's shard, I/N (0-based).
    #[arg(long, default_value = "0/1")]
    shard: Shard,
    /// cpu (Flex), cuda or wgpu.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// A preprocess output made with the bundle's config: its series are
    /// read instead of preprocessed again.
    #[arg(long)]
    preprocessed: Option<PathBuf>,
}

fn go<B: aneu::models::burn::prelude::Backend>(
    a: &Args,
    config: InferConfig,
    device: &B::Device,
) -> Result<PredictSummary, Box<dyn std::error::Error>> {
    let predictor = Predictor::<B>::from_dirs(&a.bundle, config, device)?;
    if !predictor.thresholds().calibrated {
        eprintln!("note: the thresholds are not calibrated (run the calibrate example)");
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} series [{elapsed} < {eta}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let opts = PredictOptions {
        prob_maps: a.prob_maps,
        shard: a.shard,
        series: None,
        preprocessed: a.preprocessed.clone(),
    };
    let s = predict_dataset(&a.input, &predictor, &a.out, &opts, &|n, total| {
        bar.set_length(total as u64);
        bar.set_position(n as u64);
    })?;
    bar.finish_and_clear();
    Ok(s)
}

fn run(a: &Args) -> Result<PredictSummary, Box<dyn std::error::Error>> {
    let mut config = match &a.config {
        Some(p) => InferConfig::from_json_file(p)?,
        None => InferConfig::default(),
    };
    if a.tta {
        config.tta = Some(Tta::FlipLr);
    }
    config.arteries |= a.arteries;
    match a.device.as_str() {
        "cpu" => go::<aneu::models::burn::backend::Flex>(a, config, &Default::default()),
        #[cfg(feature = "cuda")]
        "cuda" => go::<aneu::models::burn::backend::Cuda>(a, config, &Default::default()),
        #[cfg(feature = "wgpu")]
        "wgpu" => go::<aneu::models::burn::backend::Wgpu>(a, config, &Default::default()),
        d => Err(format!("device {d:?} is not built in (see --features)").into()),
    }
}

fn main() -> ExitCode {
    common::init_logging();
    let a = Args::parse();
    match run(&a) {
        Ok(s) => {
            for (u, e) in &s.errors {
                eprintln!("failed: {u}: {e}");
            }
            println!("{s}; see {}", a.out.display());
            if s.failed > 0 || s.missing > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

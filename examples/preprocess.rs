//! Preprocesses an RSNA-layout dataset: reorient, head mask, resample,
//! normalise; restartable and shardable.
//!
//! ```sh
//! cargo run --release --example preprocess -- --input RSNA_ROOT --out DIR [--config F] [--shard I/N] [--jobs N]
//! ```

mod common;

use std::process::ExitCode;

use aneu::preproc::{PreprocessConfig, Shard, preprocess_dataset, worker_threads};
use clap::Parser;

/// Preprocess a dataset in the RSNA layout.
#[derive(Parser)]
struct Args {
    /// Dataset root (train.csv, train_localizers.csv, series/).
    #[arg(long)]
    input: std::path::PathBuf,
    /// Output folder.
    #[arg(long)]
    out: std::path::PathBuf,
    /// JSON PreprocessConfig (defaults otherwise).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// This machine's shard, I/N (0-based).
    #[arg(long, default_value = "0/1")]
    shard: Shard,
    /// Worker threads (default: all cores; at most 4 per core).
    #[arg(long)]
    jobs: Option<usize>,
}

fn main() -> ExitCode {
    common::init_logging();
    let a = Args::parse();
    if let Some(j) = a.jobs {
        let capped = worker_threads(j);
        if capped != j {
            eprintln!("note: --jobs {j} capped to {capped} (4 per core)");
        }
        let _ = rayon::ThreadPoolBuilder::new().num_threads(capped).build_global();
    }
    let config = match &a.config {
        Some(p) => match PreprocessConfig::from_json_file(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => PreprocessConfig::default(),
    };
    let bar = indicatif::ProgressBar::new_spinner();
    match preprocess_dataset(&a.input, &a.out, &config, a.shard, &|n| {
        bar.set_message(format!("{n} series"))
    }) {
        Ok(s) => {
            bar.finish_and_clear();
            let hash = config.hash().unwrap_or_else(|e| e.to_string());
            println!("{s} (config {hash}; see {})", a.out.display());
            if s.failed > 0 || s.missing > 0 {
                ExitCode::from(3)
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

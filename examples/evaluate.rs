//! Scores a prediction folder (from the infer example) against an
//! RSNA-layout truth: scan-level metrics, the RSNA weighted AUC, FROC and
//! localisation error.
//!
//! ```sh
//! cargo run --release --example evaluate -- --predictions DIR --truth RSNA_ROOT --out report.json [--bootstrap 1000]
//! ```

mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use aneu::infer::{EvaluateOptions, evaluate};
use aneu::metrics::BootstrapOptions;
use clap::Parser;

/// Evaluate predictions.
#[derive(Parser)]
struct Args {
    /// The infer example's output folder.
    #[arg(long)]
    predictions: PathBuf,
    /// The RSNA-layout root holding the labels and localizers.
    #[arg(long)]
    truth: PathBuf,
    /// Where to write the JSON report (a Markdown twin goes beside it).
    #[arg(long)]
    out: PathBuf,
    /// Bootstrap resamples for confidence intervals (none by default).
    #[arg(long)]
    bootstrap: Option<usize>,
}

fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let opts = EvaluateOptions {
        bootstrap: a.bootstrap.map(|n| BootstrapOptions::default().with_resamples(n)),
        ..Default::default()
    };
    let r = evaluate(&a.predictions, &a.truth, &opts)?;
    aneu::io::write_atomic(&a.out, r.to_json()?.as_bytes())?;
    let md = r.to_markdown();
    aneu::io::write_atomic(&a.out.with_extension("md"), md.as_bytes())?;
    println!("{md}");
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

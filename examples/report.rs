//! Writes the HTML report of a prediction folder: a page per series
//! (outputs, candidates, orthogonal views, MIPs, crops, a slice viewer)
//! and `index.html` (metrics, ROC and FROC, confusion matrix, links).
//!
//! ```sh
//! cargo run --release --example report -- --predictions PRED_DIR --input RSNA_ROOT_OR_SERIES --out REPORT_DIR \
//!     [--neurological] [--preprocessed PREPROCESSED_DIR]
//! ```

mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use aneu::viz::{Convention, ReportOptions, report_dataset};
use clap::Parser;

/// Render predictions as HTML.
#[derive(Parser)]
struct Args {
    /// The infer example's output folder.
    #[arg(long)]
    predictions: PathBuf,
    /// The RSNA-layout root (or the series folder) the predictions came from.
    #[arg(long)]
    input: PathBuf,
    /// The report folder.
    #[arg(long)]
    out: PathBuf,
    /// Patient's right on the screen's right (radiological otherwise).
    #[arg(long)]
    neurological: bool,
    /// A preprocess output made with the bundle's config: its series are
    /// read instead of preprocessed again.
    #[arg(long)]
    preprocessed: Option<PathBuf>,
}

fn main() -> ExitCode {
    common::init_logging();
    let a = Args::parse();
    let opts = ReportOptions {
        convention: if a.neurological {
            Convention::Neurological
        } else {
            Convention::Radiological
        },
        preprocessed: a.preprocessed.clone(),
        ..Default::default()
    };
    let bar = indicatif::ProgressBar::new(0);
    match report_dataset(&a.predictions, &a.input, &a.out, &opts, &|n, t| {
        bar.set_length(t as u64);
        bar.set_position(n as u64);
    }) {
        Ok(s) => {
            bar.finish_and_clear();
            for (u, e) in &s.failed {
                eprintln!("not rendered: {u}: {e}");
            }
            println!("{} series pages; open {}", s.series, s.index.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

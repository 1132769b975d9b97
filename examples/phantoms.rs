//! Generates a synthetic dataset in the RSNA layout.
//!
//! ```sh
//! cargo run --release --example phantoms -- --out phantoms --n 20 --seed 1 --size small [--appearance wide|outside]
//! ```

use std::process::ExitCode;

use aneu::phantom::{AppearanceRange, PhantomConfig, SizePreset, generate_with_progress};
use clap::Parser;

/// Synthetic head angiography phantoms (CTA, TOF-MRA, T1post, T2).
#[derive(Parser)]
struct Args {
    /// Output folder (RSNA layout plus ground_truth/).
    #[arg(long)]
    out: std::path::PathBuf,
    /// Number of series.
    #[arg(long, default_value_t = 10)]
    n: usize,
    /// Seed; the same seed gives the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// tiny, small or full.
    #[arg(long, default_value = "tiny")]
    size: SizePreset,
    /// Share of positive series.
    #[arg(long, default_value_t = 0.5)]
    positive_rate: f64,
    /// Only these modalities, comma-separated (CTA, MRA, "MRI T2",
    /// "MRI T1post"), in equal shares; all four by default.
    #[arg(long, value_delimiter = ',')]
    modality: Vec<aneu::io::Modality>,
    /// The appearance ranges: standard; wide (for training: ranges that hold
    /// the standard ones); or outside (lower contrast, more noise, blur,
    /// beyond both). The anatomy is that of the standard series of the seed.
    #[arg(long, default_value = "standard")]
    appearance: AppearanceRange,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let mut config = PhantomConfig::new(a.n, a.seed, a.size)
        .with_positive_rate(a.positive_rate)
        .with_appearance(a.appearance);
    if !a.modality.is_empty() {
        config = config.with_modalities(&a.modality);
    }
    let bar = indicatif::ProgressBar::new(a.n as u64);
    let t = std::time::Instant::now();
    match generate_with_progress(&config, &a.out, &|d| bar.set_position(d as u64)) {
        Ok(s) => {
            bar.finish_and_clear();
            println!(
                "{}: {} series ({} positive, {} aneurysms) in {:.1} s",
                s.root.display(),
                s.series,
                s.positives,
                s.aneurysms,
                t.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

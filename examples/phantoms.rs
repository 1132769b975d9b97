//! Generates a synthetic dataset in the RSNA layout.
//!
//! ```sh
//! cargo run --release --example phantoms -- --out phantoms --n 20 --seed 1 --size small [--appearance wide|outside] \
//!     [--small-share 0.5 --small-radius 1.0,1.75]
//! ```

mod common;

use std::process::ExitCode;

use aneu::phantom::{AppearanceRange, DomeRadii, PhantomConfig, SizePreset, generate_with_progress};
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
    /// The share of aneurysms whose dome radius is drawn uniformly from
    /// --small-radius instead of the clinical distribution (for training
    /// sets; keep 0 for evaluation).
    #[arg(long, default_value_t = DomeRadii::default().small_share)]
    small_share: f64,
    /// The range of those radii in mm, "min,max".
    #[arg(long, value_delimiter = ',', default_values_t = DomeRadii::default().small_mm)]
    small_radius: Vec<f64>,
}

fn main() -> ExitCode {
    common::init_logging();
    let a = Args::parse();
    let &[lo, hi] = a.small_radius.as_slice() else {
        eprintln!("error: --small-radius takes two radii, \"min,max\"");
        return ExitCode::FAILURE;
    };
    let mut config = PhantomConfig::new(a.n, a.seed, a.size)
        .with_positive_rate(a.positive_rate)
        .with_appearance(a.appearance)
        .with_dome_radii(DomeRadii {
            small_share: a.small_share,
            small_mm: [lo, hi],
        });
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

//! Calibrates a model bundle's decision thresholds on the validation
//! split it was trained with, and stores them in the bundle.
//!
//! ```sh
//! cargo run --release --example calibrate -- --bundle RUN/bundle --data PREPROC_DIR [--method youden|f2|sensitivity:0.9]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use aneu::bundle::ModelBundle;
use aneu::infer::{InferConfig, Predictor, ThresholdMethod, calibrate_on_validation};
use aneu::models::burn::backend::Flex;
use clap::Parser;

/// Calibrate a bundle's thresholds.
#[derive(Parser)]
struct Args {
    /// The model bundle (updated in place).
    #[arg(long)]
    bundle: PathBuf,
    /// The preprocessed dataset the bundle was trained on.
    #[arg(long)]
    data: PathBuf,
    /// youden, f2, or sensitivity:T.
    #[arg(long, default_value = "youden")]
    method: String,
    /// A JSON InferConfig (defaults otherwise).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn method(s: &str) -> Result<ThresholdMethod, String> {
    match s {
        "youden" => Ok(ThresholdMethod::Youden),
        "f2" => Ok(ThresholdMethod::F2),
        o => match o.strip_prefix("sensitivity:").map(str::parse::<f64>) {
            Some(Ok(target)) => Ok(ThresholdMethod::Sensitivity { target }),
            _ => Err(format!("unknown method {o:?} (youden, f2, sensitivity:T)")),
        },
    }
}

fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = match &a.config {
        Some(p) => InferConfig::from_json_file(p)?,
        None => InferConfig::default(),
    };
    let mut bundle = ModelBundle::read(&a.bundle)?;
    let mut p = Predictor::<Flex>::new(vec![bundle.clone()], config, &Default::default())?;
    let t = calibrate_on_validation(&mut p, &a.data, method(&a.method)?)?;
    bundle.write_thresholds(t.clone())?;
    println!(
        "Aneurysm Present threshold {:.4} ({}), stored in {}",
        t.present,
        t.method.as_deref().unwrap_or("-"),
        a.bundle.join("thresholds.json").display()
    );
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

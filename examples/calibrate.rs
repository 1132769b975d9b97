//! Calibrates a model bundle's decision thresholds on the validation
//! split it was trained with (or, with `--fresh`, on every series of a
//! preprocessed set that no stage trained on), and stores them in the
//! bundle. With `--rescorer` it first fits the candidate rescorer (a
//! logistic regression on the detector's scores and the vessel head's
//! features) on the same series, and with `--locator` the candidate
//! locator (which names a candidate's artery from its territory and its
//! place in the head). With `--arteries` it fits the artery labeller (which
//! names each voxel of the artery map from the vessel head's probabilities
//! and its place in the head) on the same series' vessel segmentations;
//! the thresholds do not depend on it, so with `--arteries` alone they are
//! kept as they are and only the labeller is added.
//!
//! ```sh
//! cargo run --release --example calibrate -- --bundle RUN/bundle --data PREPROC_DIR [--method youden|f2|sensitivity:0.9]
//! cargo run --release --example calibrate -- --bundle RUN/bundle --data FRESH_PREPROC_DIR --fresh --rescorer --locator
//! cargo run --release --example calibrate -- --bundle RUN/bundle --data FRESH_PREPROC_DIR --fresh --arteries
//! ```

mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use aneu::bundle::ModelBundle;
use aneu::infer::{
    InferConfig, Predictor, RescorerOptions, ThresholdMethod, calibrate_on_series, calibrate_on_validation,
    fit_artery_labeller, fit_locator, fit_rescorer,
};
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
    /// Calibrate on every series in --data (scans no stage trained on)
    /// rather than on the bundle's validation split.
    #[arg(long)]
    fresh: bool,
    /// First fit the candidate rescorer on the same series (needs
    /// --fresh, and a bundle with a vessel head); it is stored with the
    /// thresholds.
    #[arg(long)]
    rescorer: bool,
    /// Then fit the candidate locator on the same series (needs --fresh,
    /// and a bundle with a vessel head); it is stored with the thresholds.
    #[arg(long)]
    locator: bool,
    /// Fit the artery labeller on the same series' vessel segmentations
    /// (needs --fresh, and a bundle with a vessel head); it is stored with
    /// the thresholds. Alone, it leaves the thresholds as they are.
    #[arg(long)]
    arteries: bool,
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
    if (a.rescorer || a.locator || a.arteries) && !a.fresh {
        return Err(
            "--rescorer, --locator and --arteries need --fresh: fit them on scans neither stage trained on".into(),
        );
    }
    let series: Vec<String> = if a.fresh {
        aneu::preproc::list_preprocessed(&a.data)?
            .iter()
            .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    } else {
        Vec::new()
    };
    if a.rescorer {
        let r = fit_rescorer(&mut p, &a.data, &series, &RescorerOptions::default())?;
        println!(
            "rescorer fitted on {} candidates ({} hits): weights {:?}",
            r.fitted_on,
            r.positives,
            r.features.iter().zip(&r.weights).collect::<Vec<_>>()
        );
    }
    if a.locator {
        let l = fit_locator(&mut p, &a.data, &series, &RescorerOptions::default())?;
        println!("locator fitted on {} hits", l.fitted_on);
    }
    if a.arteries {
        let l = fit_artery_labeller(&mut p, &a.data, &series, &RescorerOptions::default())?;
        println!("artery labeller fitted on {} vessel voxels", l.fitted_on);
        if !(a.rescorer || a.locator) {
            bundle.write_thresholds(p.thresholds().clone())?;
            println!(
                "thresholds kept; the labeller stored in {}",
                a.bundle.join("thresholds.json").display()
            );
            return Ok(());
        }
    }
    let t = if a.fresh {
        calibrate_on_series(&mut p, &a.data, &series, method(&a.method)?)?
    } else {
        calibrate_on_validation(&mut p, &a.data, method(&a.method)?)?
    };
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
    common::init_logging();
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

//! # aneu-metrics
//!
//! Metrics for aneurysm detection on plain numbers (no Burn), each defined
//! exactly as its source defines it and tested against scikit-learn:
//!
//! * [`Confusion`] at a threshold: accuracy, sensitivity, specificity,
//!   precision, NPV, F-beta, MCC, balanced accuracy;
//! * [`roc_curve`], [`roc_auc`] (ties as scikit-learn), [`pr_curve`],
//!   [`average_precision`];
//! * operating points: [`youden_threshold`], [`f_beta_threshold`],
//!   [`threshold_for_sensitivity`] — chosen on one set, applied to another
//!   with [`Confusion::at_threshold`];
//! * calibration: [`reliability_bins`], [`expected_calibration_error`],
//!   [`PlattScaling`], [`Temperature`];
//! * the RSNA weighted multi-label AUC, [`rsna_weighted_auc`], over
//!   [`RsnaTable`]s read from CSV;
//! * detection: [`froc`] (ADAM hit rule, sensitivity at 0.125…8 FP per
//!   scan, their mean, localisation error);
//! * seeded [`bootstrap`] intervals, and an [`EvaluationReport`] that
//!   renders as JSON or Markdown;
//! * the detection benchmark's [`BenchmarkFigures`]: scan AUC, RSNA
//!   weighted AUC, mean location AUC, FROC sensitivities and the median
//!   localisation error, each with its interval, from per-scan
//!   [`ScanOutcome`]s, with the artery and vessel Dice of a vessel
//!   segmentation ([`LabelOverlap`]) where one was scored.
//!
//! Labels are `f64` 0/1 values, so that anything else is caught: every bad
//! input (empty, mismatched lengths, NaN, labels other than 0/1) is a typed
//! [`Error`], never a panic and never a silent NaN.
//!
//! ```
//! use aneu_metrics::{Confusion, roc_auc, youden_threshold};
//! let labels = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0];
//! let scores = [0.1, 0.3, 0.35, 0.8, 0.5, 0.9];
//! assert!((roc_auc(&labels, &scores)? - 8.0 / 9.0).abs() < 1e-12);
//! let op = youden_threshold(&labels, &scores)?;       // chosen on validation
//! assert_eq!(op.threshold, 0.8); // J = 2/3 at 0.8 and at 0.35: the more specific wins
//! let test = Confusion::at_threshold(&[1.0, 0.0], &[0.85, 0.2], op.threshold)?; // applied to test
//! assert_eq!(test.sensitivity(), 1.0);
//! # Ok::<(), aneu_metrics::Error>(())
//! ```

#![forbid(unsafe_code)]

mod benchmark;
mod binary;
mod bootstrap;
mod calibration;
mod curves;
mod error;
mod froc;
mod overlap;
mod report;
mod rsna;
mod thresholds;

pub use benchmark::{
    BenchmarkFigures, LabelDice, PairedDifference, SIZE_BINS, ScanOutcome, SensitivityAt, SizeBin, SizeSensitivity,
};
pub use binary::Confusion;
pub use bootstrap::{BootstrapOptions, Interval, auc_interval, bootstrap, froc_sensitivity_interval, rsna_interval};
pub use calibration::{PlattScaling, ReliabilityBin, Temperature, expected_calibration_error, reliability_bins};
pub use curves::{PrCurve, RocCurve, average_precision, pr_curve, roc_auc, roc_curve};
pub use error::{Error, Result};
pub use froc::{Candidate, Froc, FrocOptions, FrocPoint, Lesion, ScanDetections, froc};
pub use overlap::{LabelOverlap, OverlapCounts};
pub use report::{ClassificationReport, DetectionReport, EvaluationReport};
pub use rsna::{RSNA_COLUMNS, RSNA_WEIGHTS, RsnaScore, RsnaTable, rsna_weighted_auc};
pub use thresholds::{OperatingPoint, f_beta_threshold, threshold_for_sensitivity, youden_threshold};

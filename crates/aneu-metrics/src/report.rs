//! [`EvaluationReport`]: patch-level, scan-level and detection metrics in
//! one serde value, rendered as JSON or Markdown.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::binary::Confusion;
use crate::bootstrap::{BootstrapOptions, Interval, auc_interval, froc_sensitivity_interval};
use crate::curves::{average_precision, roc_auc};
use crate::error::{Error, Result};
use crate::froc::{Froc, FrocOptions, ScanDetections, froc};
use crate::rsna::RsnaScore;

/// Classification metrics at one threshold, plus the threshold-free ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Samples.
    pub n: usize,
    /// Positive samples.
    pub positives: usize,
    /// The decision threshold (`score >= threshold`).
    pub threshold: f64,
    /// Counts at the threshold.
    pub confusion: Confusion,
    /// Accuracy.
    pub accuracy: f64,
    /// Sensitivity (recall).
    pub sensitivity: f64,
    /// Specificity.
    pub specificity: f64,
    /// Precision.
    pub precision: f64,
    /// Negative predictive value.
    pub npv: f64,
    /// F1.
    pub f1: f64,
    /// F2.
    pub f2: f64,
    /// Matthews correlation.
    pub mcc: f64,
    /// Balanced accuracy.
    pub balanced_accuracy: f64,
    /// ROC AUC (`None` with one class only).
    pub auc: Option<f64>,
    /// Bootstrap interval of the AUC, when requested and defined.
    pub auc_interval: Option<Interval>,
    /// Average precision (`None` without positives).
    pub average_precision: Option<f64>,
}

fn defined(r: Result<f64>) -> Result<Option<f64>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::SingleClass { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl ClassificationReport {
    /// Computes every metric at `threshold`, and a bootstrap interval of the
    /// AUC when `bootstrap` is given.
    ///
    /// # Errors
    /// Bad input (see [`Confusion::at_threshold`]).
    pub fn compute(
        labels: &[f64],
        scores: &[f64],
        threshold: f64,
        bootstrap: Option<&BootstrapOptions>,
    ) -> Result<Self> {
        let c = Confusion::at_threshold(labels, scores, threshold)?;
        let auc = defined(roc_auc(labels, scores))?;
        let auc_interval = match (auc, bootstrap) {
            (Some(_), Some(o)) => Some(auc_interval(labels, scores, o)?),
            _ => None,
        };
        Ok(Self {
            n: labels.len(),
            positives: (c.tp + c.fn_) as usize,
            threshold,
            confusion: c,
            accuracy: c.accuracy(),
            sensitivity: c.sensitivity(),
            specificity: c.specificity(),
            precision: c.precision(),
            npv: c.npv(),
            f1: c.f1(),
            f2: c.f2(),
            mcc: c.mcc(),
            balanced_accuracy: c.balanced_accuracy(),
            auc,
            auc_interval,
            average_precision: defined(average_precision(labels, scores))?,
        })
    }
}

/// FROC summary with an optional interval at one FP rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectionReport {
    /// The analysis.
    pub froc: Froc,
    /// Bootstrap interval of the sensitivity at `interval_fp_rate`.
    pub sensitivity_interval: Option<Interval>,
    /// The FP rate of that interval.
    pub interval_fp_rate: Option<f64>,
}

impl DetectionReport {
    /// Runs the FROC analysis, and a bootstrap over scans of the
    /// sensitivity at `fp_rate` when both are given.
    ///
    /// # Errors
    /// As [`froc`].
    pub fn compute(
        scans: &[ScanDetections],
        opts: &FrocOptions,
        interval: Option<(f64, &BootstrapOptions)>,
    ) -> Result<Self> {
        let f = froc(scans, opts)?;
        let sensitivity_interval = match interval {
            Some((r, b)) => Some(froc_sensitivity_interval(scans, r, opts, b)?),
            None => None,
        };
        Ok(Self {
            froc: f,
            sensitivity_interval,
            interval_fp_rate: interval.map(|(r, _)| r),
        })
    }
}

/// Everything an evaluation run reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    /// Patch-level classification.
    pub patch: Option<ClassificationReport>,
    /// Scan-level classification (`Aneurysm Present`).
    pub scan: Option<ClassificationReport>,
    /// Detection (FROC).
    pub detection: Option<DetectionReport>,
    /// The RSNA weighted AUC.
    pub rsna: Option<RsnaScore>,
    /// Inputs left out of the figures, each with its reason (a predicted
    /// series without a label, a localizer that does not map onto its
    /// series): nothing is dropped silently.
    #[serde(default)]
    pub left_out: Vec<String>,
}

fn opt(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |x| format!("{x:.4}"))
}

fn interval(i: &Option<Interval>) -> String {
    i.map_or(String::new(), |i| {
        format!(" ({:.0} % CI {:.4}–{:.4})", i.confidence * 100.0, i.low, i.high)
    })
}

impl EvaluationReport {
    /// Pretty JSON.
    ///
    /// # Errors
    /// Never in practice (every field serialises); kept typed.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::InvalidArgument { reason: e.to_string() })
    }

    /// Markdown tables, one per part present.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let mut class = |title: &str, r: &ClassificationReport| {
            let _ = writeln!(s, "### {title}\n");
            let _ = writeln!(s, "| metric | value |\n|---|---|");
            let _ = writeln!(s, "| samples (positive) | {} ({}) |", r.n, r.positives);
            let _ = writeln!(s, "| threshold | {:.4} |", r.threshold);
            let c = r.confusion;
            let _ = writeln!(s, "| TP / FP / TN / FN | {} / {} / {} / {} |", c.tp, c.fp, c.tn, c.fn_);
            for (k, v) in [
                ("accuracy", r.accuracy),
                ("sensitivity", r.sensitivity),
                ("specificity", r.specificity),
                ("precision", r.precision),
                ("NPV", r.npv),
                ("F1", r.f1),
                ("F2", r.f2),
                ("MCC", r.mcc),
                ("balanced accuracy", r.balanced_accuracy),
            ] {
                let _ = writeln!(s, "| {k} | {v:.4} |");
            }
            let _ = writeln!(s, "| ROC AUC | {}{} |", opt(r.auc), interval(&r.auc_interval));
            let _ = writeln!(s, "| average precision | {} |\n", opt(r.average_precision));
        };
        if let Some(r) = &self.patch {
            class("Patch level", r);
        }
        if let Some(r) = &self.scan {
            class("Scan level", r);
        }
        if let Some(d) = &self.detection {
            let f = &d.froc;
            let _ = writeln!(s, "### Detection ({} aneurysms in {} scans)\n", f.lesions, f.scans);
            let _ = writeln!(s, "| FP per scan | sensitivity |\n|---|---|");
            for (r, v) in &f.sensitivity_at {
                let ci = if d.interval_fp_rate == Some(*r) {
                    interval(&d.sensitivity_interval)
                } else {
                    String::new()
                };
                let _ = writeln!(s, "| {r} | {v:.4}{ci} |");
            }
            let _ = writeln!(s, "| **mean** | **{:.4}** |", f.mean_sensitivity);
            let _ = writeln!(
                s,
                "\nMean localisation error: {} mm\n",
                opt(f.mean_localisation_error_mm())
            );
        }
        if let Some(r) = &self.rsna {
            let _ = writeln!(s, "### RSNA weighted AUC: {:.4}\n", r.score);
            let _ = writeln!(s, "| column | AUC |\n|---|---|");
            for (name, a) in crate::rsna::RSNA_COLUMNS.iter().zip(&r.column_auc) {
                let _ = writeln!(s, "| {name} | {} |", opt(*a));
            }
            if !r.skipped.is_empty() {
                let _ = writeln!(s, "\nLeft out (one class only): {}", r.skipped.join(", "));
            }
        }
        if !self.left_out.is_empty() {
            let _ = writeln!(s, "\n### Left out of the figures ({})\n", self.left_out.len());
            for l in &self.left_out {
                let _ = writeln!(s, "* {l}");
            }
        }
        s
    }
}

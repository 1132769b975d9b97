//! ROC and precision–recall curves, ROC AUC and average precision, with
//! scikit-learn's exact algorithms (`_binary_clf_curve`, `roc_curve`,
//! `precision_recall_curve`, `average_precision_score`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_binary};

/// Cumulative counts at each distinct score, highest first: scikit-learn's
/// `_binary_clf_curve`. Returns (false positives, true positives,
/// thresholds).
pub(crate) fn binary_clf_curve(y: &[bool], scores: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    // descending by score; ties keep any order (they are grouped below)
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut fps, mut tps, mut thr) = (Vec::new(), Vec::new(), Vec::new());
    let mut tp = 0.0;
    for (n, &i) in idx.iter().enumerate() {
        if y[i] {
            tp += 1.0;
        }
        let last = n + 1 == idx.len() || scores[idx[n + 1]] != scores[i];
        if last {
            tps.push(tp);
            fps.push((n + 1) as f64 - tp);
            thr.push(scores[i]);
        }
    }
    (fps, tps, thr)
}

/// A ROC curve: false- and true-positive rates at decreasing thresholds,
/// starting at (0, 0) with threshold +∞.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RocCurve {
    /// False-positive rates.
    pub fpr: Vec<f64>,
    /// True-positive rates.
    pub tpr: Vec<f64>,
    /// The thresholds (`score >= threshold` is positive); the first is +∞.
    pub thresholds: Vec<f64>,
}

fn both_classes(y: &[bool], what: &'static str) -> Result<()> {
    let pos = y.iter().filter(|&&v| v).count();
    if pos == 0 {
        return Err(Error::SingleClass { what, class: 0 });
    }
    if pos == y.len() {
        return Err(Error::SingleClass { what, class: 1 });
    }
    Ok(())
}

/// The ROC curve, as scikit-learn's `roc_curve`. With `drop_intermediate`
/// (scikit-learn's default) collinear points are dropped.
///
/// # Errors
/// Bad input (see [`crate::Confusion::at_threshold`]) and
/// [`Error::SingleClass`].
pub fn roc_curve(labels: &[f64], scores: &[f64], drop_intermediate: bool) -> Result<RocCurve> {
    let y = check_binary(labels, scores)?;
    both_classes(&y, "ROC curve")?;
    let (mut fps, mut tps, mut thr) = binary_clf_curve(&y, scores);
    if drop_intermediate && fps.len() > 2 {
        let n = fps.len();
        let keep: Vec<usize> = (0..n)
            .filter(|&i| {
                i == 0 || i == n - 1 || {
                    let d2 = |v: &[f64]| v[i + 1] - 2.0 * v[i] + v[i - 1];
                    d2(&fps) != 0.0 || d2(&tps) != 0.0
                }
            })
            .collect();
        fps = keep.iter().map(|&i| fps[i]).collect();
        tps = keep.iter().map(|&i| tps[i]).collect();
        thr = keep.iter().map(|&i| thr[i]).collect();
    }
    let (fmax, tmax) = (fps[fps.len() - 1], tps[tps.len() - 1]);
    let mut curve = RocCurve {
        fpr: vec![0.0],
        tpr: vec![0.0],
        thresholds: vec![f64::INFINITY],
    };
    curve.fpr.extend(fps.iter().map(|v| v / fmax));
    curve.tpr.extend(tps.iter().map(|v| v / tmax));
    curve.thresholds.extend(thr);
    Ok(curve)
}

/// Area under the ROC curve by the trapezoidal rule, as scikit-learn's
/// `roc_auc_score`: tied scores form one diagonal step, so a tie between a
/// positive and a negative counts one half.
///
/// ```
/// let auc = aneu_metrics::roc_auc(&[0.0, 0.0, 1.0, 1.0], &[0.1, 0.4, 0.35, 0.8]).unwrap();
/// assert_eq!(auc, 0.75);
/// ```
///
/// # Errors
/// As [`roc_curve`].
pub fn roc_auc(labels: &[f64], scores: &[f64]) -> Result<f64> {
    let c = roc_curve(labels, scores, true)?;
    Ok(trapezoid(&c.fpr, &c.tpr))
}

/// `numpy.trapezoid(y, x)`.
pub(crate) fn trapezoid(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2)
        .zip(y.windows(2))
        .map(|(xs, ys)| (xs[1] - xs[0]) * (ys[1] + ys[0]) / 2.0)
        .sum()
}

/// A precision–recall curve, as scikit-learn's `precision_recall_curve`:
/// thresholds increasing; `precision` and `recall` have one more element,
/// ending at precision 1, recall 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrCurve {
    /// Precision at each threshold, then 1.
    pub precision: Vec<f64>,
    /// Recall at each threshold, then 0.
    pub recall: Vec<f64>,
    /// Increasing thresholds.
    pub thresholds: Vec<f64>,
}

/// The precision–recall curve.
///
/// # Errors
/// Bad input, and [`Error::SingleClass`] when there is no positive label
/// (recall is undefined).
pub fn pr_curve(labels: &[f64], scores: &[f64]) -> Result<PrCurve> {
    let y = check_binary(labels, scores)?;
    if !y.iter().any(|&v| v) {
        return Err(Error::SingleClass {
            what: "precision-recall curve",
            class: 0,
        });
    }
    let (fps, tps, thr) = binary_clf_curve(&y, scores);
    let tmax = tps[tps.len() - 1];
    let mut precision: Vec<f64> = tps
        .iter()
        .zip(&fps)
        .map(|(t, f)| if t + f == 0.0 { 0.0 } else { t / (t + f) })
        .rev()
        .collect();
    let mut recall: Vec<f64> = tps.iter().map(|t| t / tmax).rev().collect();
    precision.push(1.0);
    recall.push(0.0);
    Ok(PrCurve {
        precision,
        recall,
        thresholds: thr.into_iter().rev().collect(),
    })
}

/// Average precision, as scikit-learn's `average_precision_score`:
/// `Σ (R_n − R_{n−1}) · P_n`, without interpolation.
///
/// # Errors
/// As [`pr_curve`].
pub fn average_precision(labels: &[f64], scores: &[f64]) -> Result<f64> {
    let c = pr_curve(labels, scores)?;
    Ok(-c
        .recall
        .windows(2)
        .zip(&c.precision)
        .map(|(r, p)| (r[1] - r[0]) * p)
        .sum::<f64>())
}

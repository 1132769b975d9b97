//! Operating points: Youden's J optimum, the F-beta optimum, and the
//! threshold that reaches a target sensitivity. Compute them on one set
//! (validation), then apply them to another with
//! [`Confusion::at_threshold`].

use serde::{Deserialize, Serialize};

use crate::binary::Confusion;
use crate::curves::binary_clf_curve;
use crate::error::{Error, Result, check_binary};

/// A threshold and what it gives on the set it was chosen on.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// Predict positive when `score >= threshold`.
    pub threshold: f64,
    /// The confusion matrix at that threshold.
    pub confusion: Confusion,
}

impl OperatingPoint {
    /// Sensitivity at this point.
    pub fn sensitivity(&self) -> f64 {
        self.confusion.sensitivity()
    }
    /// Specificity at this point.
    pub fn specificity(&self) -> f64 {
        self.confusion.specificity()
    }
}

/// Every distinct threshold (each distinct score, highest first) with its
/// confusion matrix.
fn candidates(labels: &[f64], scores: &[f64]) -> Result<Vec<OperatingPoint>> {
    let y = check_binary(labels, scores)?;
    let (fps, tps, thr) = binary_clf_curve(&y, scores);
    let pos = tps[tps.len() - 1] as u64;
    let neg = fps[fps.len() - 1] as u64;
    Ok(fps
        .iter()
        .zip(&tps)
        .zip(&thr)
        .map(|((&f, &t), &th)| OperatingPoint {
            threshold: th,
            confusion: Confusion {
                tp: t as u64,
                fp: f as u64,
                tn: neg - f as u64,
                fn_: pos - t as u64,
            },
        })
        .collect())
}

/// The point that maximises `key`; ties go to the higher threshold (the
/// more specific point).
fn best(points: Vec<OperatingPoint>, key: impl Fn(&Confusion) -> f64) -> OperatingPoint {
    let mut best = points[0];
    for p in points.into_iter().skip(1) {
        if key(&p.confusion) > key(&best.confusion) {
            best = p;
        }
    }
    best
}

/// The threshold that maximises Youden's J = sensitivity + specificity − 1.
///
/// ```
/// let p = aneu_metrics::youden_threshold(&[0.0, 0.0, 1.0, 1.0], &[0.1, 0.4, 0.35, 0.8]).unwrap();
/// assert_eq!(p.threshold, 0.8);
/// ```
///
/// # Errors
/// Bad input; [`Error::SingleClass`] if one class is missing.
pub fn youden_threshold(labels: &[f64], scores: &[f64]) -> Result<OperatingPoint> {
    let pts = candidates(labels, scores)?;
    need_both(&pts, "Youden's J")?;
    Ok(best(pts, Confusion::youden_j))
}

/// The threshold that maximises F-beta (F2 with `beta = 2`).
///
/// # Errors
/// Bad input; [`Error::SingleClass`] if there is no positive;
/// [`Error::InvalidArgument`] if `beta` is not positive.
pub fn f_beta_threshold(labels: &[f64], scores: &[f64], beta: f64) -> Result<OperatingPoint> {
    if !(beta.is_finite() && beta > 0.0) {
        return Err(Error::InvalidArgument {
            reason: format!("beta = {beta} must be positive"),
        });
    }
    let pts = candidates(labels, scores)?;
    if pts[pts.len() - 1].confusion.tp == 0 {
        return Err(Error::SingleClass {
            what: "F-beta optimum",
            class: 0,
        });
    }
    Ok(best(pts, |c| c.f_beta(beta)))
}

/// The highest threshold whose sensitivity reaches `target` (in 0..=1),
/// i.e. the most specific point that still finds that share of positives.
///
/// # Errors
/// Bad input; [`Error::SingleClass`] if there is no positive;
/// [`Error::InvalidArgument`] if `target` is outside 0..=1.
pub fn threshold_for_sensitivity(labels: &[f64], scores: &[f64], target: f64) -> Result<OperatingPoint> {
    if !(0.0..=1.0).contains(&target) {
        return Err(Error::InvalidArgument {
            reason: format!("target sensitivity {target} is outside 0..=1"),
        });
    }
    let pts = candidates(labels, scores)?;
    if pts[pts.len() - 1].confusion.tp == 0 {
        return Err(Error::SingleClass {
            what: "sensitivity target",
            class: 0,
        });
    }
    // sensitivity only grows as the threshold falls; the last point has 1
    Ok(*pts
        .iter()
        .find(|p| p.sensitivity() >= target)
        .unwrap_or(&pts[pts.len() - 1]))
}

fn need_both(pts: &[OperatingPoint], what: &'static str) -> Result<()> {
    let c = pts[pts.len() - 1].confusion;
    if c.tp + c.fn_ == 0 {
        return Err(Error::SingleClass { what, class: 0 });
    }
    if c.tn + c.fp == 0 {
        return Err(Error::SingleClass { what, class: 1 });
    }
    Ok(())
}

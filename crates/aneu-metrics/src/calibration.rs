//! Calibration: reliability bins, expected calibration error, Platt
//! scaling and temperature fitting.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_binary, check_finite};

/// One bin of a reliability curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge (inclusive).
    pub lo: f64,
    /// Upper edge (exclusive, except the last bin, which includes 1).
    pub hi: f64,
    /// Samples in the bin.
    pub count: usize,
    /// Mean predicted probability in the bin (0 if empty).
    pub mean_predicted: f64,
    /// Fraction of positives in the bin (0 if empty).
    pub fraction_positive: f64,
}

fn check_probs(p: &[f64]) -> Result<()> {
    check_finite("probabilities", p)?;
    if let Some(i) = p.iter().position(|v| !(0.0..=1.0).contains(v)) {
        return Err(Error::InvalidArgument {
            reason: format!("probability[{i}] = {} is outside 0..=1", p[i]),
        });
    }
    Ok(())
}

/// Equal-width reliability bins over [0, 1]: a probability p falls in bin
/// `min(floor(p · n_bins), n_bins − 1)`.
///
/// # Errors
/// Bad input, probabilities outside 0..=1, or `n_bins == 0`.
pub fn reliability_bins(labels: &[f64], probs: &[f64], n_bins: usize) -> Result<Vec<ReliabilityBin>> {
    let y = check_binary(labels, probs)?;
    check_probs(probs)?;
    if n_bins == 0 {
        return Err(Error::InvalidArgument {
            reason: "n_bins must be at least 1".into(),
        });
    }
    let mut sum_p = vec![0.0; n_bins];
    let mut pos = vec![0usize; n_bins];
    let mut count = vec![0usize; n_bins];
    for (&t, &p) in y.iter().zip(probs) {
        let b = ((p * n_bins as f64).floor() as usize).min(n_bins - 1);
        sum_p[b] += p;
        pos[b] += usize::from(t);
        count[b] += 1;
    }
    Ok((0..n_bins)
        .map(|b| ReliabilityBin {
            lo: b as f64 / n_bins as f64,
            hi: (b + 1) as f64 / n_bins as f64,
            count: count[b],
            mean_predicted: if count[b] > 0 { sum_p[b] / count[b] as f64 } else { 0.0 },
            fraction_positive: if count[b] > 0 {
                pos[b] as f64 / count[b] as f64
            } else {
                0.0
            },
        })
        .collect())
}

/// Expected calibration error: `Σ_b (n_b / N) · |frac_pos_b − mean_pred_b|`
/// over [`reliability_bins`].
///
/// ```
/// // bin [0.5, 0.6): calibrated; bin [0.9, 1.0]: predicts 0.95, observes 1.0
/// let ece = aneu_metrics::expected_calibration_error(&[0.0, 1.0, 1.0, 1.0], &[0.5, 0.5, 0.95, 0.95], 10).unwrap();
/// assert!((ece - 0.5 * 0.05).abs() < 1e-12);
/// ```
///
/// # Errors
/// As [`reliability_bins`].
pub fn expected_calibration_error(labels: &[f64], probs: &[f64], n_bins: usize) -> Result<f64> {
    let bins = reliability_bins(labels, probs, n_bins)?;
    let n = probs.len() as f64;
    Ok(bins
        .iter()
        .map(|b| b.count as f64 / n * (b.fraction_positive - b.mean_predicted).abs())
        .sum())
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + exp(x))` without overflow.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// Platt scaling: `P(y = 1 | s) = 1 / (1 + exp(a·s + b))`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlattScaling {
    /// Slope (negative when higher scores mean positive).
    pub a: f64,
    /// Offset.
    pub b: f64,
}

impl PlattScaling {
    /// Fits `a` and `b` by Platt's (1999) method with the improvements of
    /// Lin, Lin & Weng (2007): regularised targets
    /// `(N₊ + 1)/(N₊ + 2)` and `1/(N₋ + 2)`, Newton's method with a
    /// backtracking line search. scikit-learn's
    /// `CalibratedClassifierCV(method="sigmoid")` fits the same model.
    ///
    /// # Errors
    /// Bad input.
    pub fn fit(labels: &[f64], scores: &[f64]) -> Result<Self> {
        let y = check_binary(labels, scores)?;
        let n_pos = y.iter().filter(|&&v| v).count() as f64;
        let n_neg = y.len() as f64 - n_pos;
        let hi = (n_pos + 1.0) / (n_pos + 2.0);
        let lo = 1.0 / (n_neg + 2.0);
        let t: Vec<f64> = y.iter().map(|&v| if v { hi } else { lo }).collect();
        // loss(a, b) = Σ t·(a s + b) + log(1 + exp(−(a s + b)))  (P = σ(−(a s + b)))
        let loss = |a: f64, b: f64| -> f64 {
            scores
                .iter()
                .zip(&t)
                .map(|(&s, &ti)| {
                    let f = a * s + b;
                    ti * f + softplus(-f)
                })
                .sum()
        };
        let (mut a, mut b) = (0.0, ((n_neg + 1.0) / (n_pos + 1.0)).ln());
        let mut fval = loss(a, b);
        for _ in 0..100 {
            let (mut h11, mut h22, mut h21, mut g1, mut g2) = (1e-12, 1e-12, 0.0, 0.0, 0.0);
            for (&s, &ti) in scores.iter().zip(&t) {
                let p = sigmoid(-(a * s + b)); // model probability of y = 1
                let q = 1.0 - p;
                let d2 = p * q;
                h11 += s * s * d2;
                h22 += d2;
                h21 += s * d2;
                let d1 = ti - p;
                g1 += s * d1;
                g2 += d1;
            }
            if g1.abs() < 1e-10 && g2.abs() < 1e-10 {
                break;
            }
            let det = h11 * h22 - h21 * h21;
            let da = -(h22 * g1 - h21 * g2) / det;
            let db = -(-h21 * g1 + h11 * g2) / det;
            let gd = g1 * da + g2 * db;
            let mut step = 1.0;
            let mut moved = false;
            while step >= 1e-10 {
                let (na, nb) = (a + step * da, b + step * db);
                let nf = loss(na, nb);
                if nf < fval + 1e-4 * step * gd {
                    a = na;
                    b = nb;
                    fval = nf;
                    moved = true;
                    break;
                }
                step /= 2.0;
            }
            if !moved {
                break;
            }
        }
        Ok(Self { a, b })
    }

    /// The calibrated probability of a score.
    pub fn apply(&self, score: f64) -> f64 {
        sigmoid(-(self.a * score + self.b))
    }
}

/// Temperature scaling of logits: `P(y = 1 | z) = σ(z / T)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    /// The temperature, > 0.
    pub t: f64,
}

impl Temperature {
    /// Fits T by minimising the negative log-likelihood. The loss is convex
    /// in 1/T, so Newton's method on 1/T converges to the global optimum.
    ///
    /// # Errors
    /// Bad input; [`Error::InvalidArgument`] if the logits are not
    /// positively related to the labels (no positive T fits).
    pub fn fit(labels: &[f64], logits: &[f64]) -> Result<Self> {
        let y = check_binary(labels, logits)?;
        let nll = |u: f64| -> f64 {
            logits
                .iter()
                .zip(&y)
                .map(|(&z, &t)| softplus(u * z) - if t { u * z } else { 0.0 })
                .sum()
        };
        let mut u: f64 = 1.0;
        for _ in 0..200 {
            let (mut g, mut h) = (0.0, 1e-12);
            for (&z, &t) in logits.iter().zip(&y) {
                let p = sigmoid(u * z);
                g += z * (p - f64::from(u8::from(t)));
                h += z * z * p * (1.0 - p);
            }
            if g.abs() < 1e-12 * (1.0 + h) {
                break;
            }
            let mut step = 1.0;
            let f0 = nll(u);
            let dir = -g / h;
            while step > 1e-12 && nll(u + step * dir) > f0 - 1e-4 * step * g * g / h {
                step /= 2.0;
            }
            u += step * dir;
            if !u.is_finite() || u.abs() > 1e6 {
                break;
            }
        }
        if !(u.is_finite() && u > 0.0) {
            return Err(Error::InvalidArgument {
                reason: format!("no positive temperature fits (optimum of 1/T = {u})"),
            });
        }
        Ok(Self { t: 1.0 / u })
    }

    /// The calibrated probability of a logit.
    pub fn apply(&self, logit: f64) -> f64 {
        sigmoid(logit / self.t)
    }
}

//! Confusion matrix and the metrics derived from it.

use serde::{Deserialize, Serialize};

use crate::error::{Result, check_binary};

/// Counts of a binary decision against the truth. A sample is predicted
/// positive when its score is **≥** the threshold (scikit-learn's rule for
/// its curves).
///
/// Ratios with a zero denominator are 0, as scikit-learn's
/// `zero_division=0`; Matthews correlation is 0 when any margin is empty,
/// as in scikit-learn.
///
/// ```
/// use aneu_metrics::Confusion;
/// let c = Confusion::at_threshold(&[1.0, 1.0, 0.0, 0.0], &[0.9, 0.4, 0.6, 0.1], 0.5).unwrap();
/// assert_eq!((c.tp, c.fp, c.tn, c.fn_), (1, 1, 1, 1));
/// assert_eq!(c.sensitivity(), 0.5);
/// assert_eq!(c.f_beta(2.0), 0.5);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Confusion {
    /// Counts the decisions `score >= threshold` against 0/1 labels.
    ///
    /// # Errors
    /// Empty or mismatched inputs, labels other than 0/1, non-finite
    /// scores, or a non-finite threshold.
    pub fn at_threshold(labels: &[f64], scores: &[f64], threshold: f64) -> Result<Self> {
        let y = check_binary(labels, scores)?;
        if threshold.is_nan() {
            return Err(crate::Error::InvalidArgument {
                reason: "threshold is NaN".into(),
            });
        }
        let mut c = Confusion::default();
        for (&t, &s) in y.iter().zip(scores) {
            match (t, s >= threshold) {
                (true, true) => c.tp += 1,
                (true, false) => c.fn_ += 1,
                (false, true) => c.fp += 1,
                (false, false) => c.tn += 1,
            }
        }
        Ok(c)
    }

    /// All samples.
    pub fn total(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// (TP + TN) / all.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }

    /// Sensitivity (recall, true-positive rate): TP / (TP + FN).
    pub fn sensitivity(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Specificity (true-negative rate): TN / (TN + FP).
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }

    /// Precision (positive predictive value): TP / (TP + FP).
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// Negative predictive value: TN / (TN + FN).
    pub fn npv(&self) -> f64 {
        ratio(self.tn, self.tn + self.fn_)
    }

    /// F-beta: (1 + β²)·TP / ((1 + β²)·TP + β²·FN + FP). F2 (β = 2) weighs
    /// recall four times as much as precision.
    pub fn f_beta(&self, beta: f64) -> f64 {
        let b2 = beta * beta;
        let num = (1.0 + b2) * self.tp as f64;
        let den = num + b2 * self.fn_ as f64 + self.fp as f64;
        if den == 0.0 { 0.0 } else { num / den }
    }

    /// F1.
    pub fn f1(&self) -> f64 {
        self.f_beta(1.0)
    }

    /// F2.
    pub fn f2(&self) -> f64 {
        self.f_beta(2.0)
    }

    /// Matthews correlation coefficient, computed as scikit-learn does
    /// (from the covariance of the one-hot confusion matrix).
    pub fn mcc(&self) -> f64 {
        let (tp, fp, tn, fn_) = (self.tp as f64, self.fp as f64, self.tn as f64, self.fn_ as f64);
        let n = tp + fp + tn + fn_;
        let t_pos = tp + fn_;
        let p_pos = tp + fp;
        let t_neg = tn + fp;
        let p_neg = tn + fn_;
        let correct = tp + tn;
        let cov_ytyp = correct * n - (t_pos * p_pos + t_neg * p_neg);
        let cov_ypyp = n * n - (p_pos * p_pos + p_neg * p_neg);
        let cov_ytyt = n * n - (t_pos * t_pos + t_neg * t_neg);
        if cov_ypyp * cov_ytyt == 0.0 {
            0.0
        } else {
            cov_ytyp / (cov_ytyt * cov_ypyp).sqrt()
        }
    }

    /// Balanced accuracy: the mean of sensitivity and specificity (over the
    /// classes present, as scikit-learn).
    pub fn balanced_accuracy(&self) -> f64 {
        match (self.tp + self.fn_ > 0, self.tn + self.fp > 0) {
            (true, true) => (self.sensitivity() + self.specificity()) / 2.0,
            (true, false) => self.sensitivity(),
            (false, true) => self.specificity(),
            (false, false) => 0.0,
        }
    }

    /// Youden's J: sensitivity + specificity − 1.
    pub fn youden_j(&self) -> f64 {
        self.sensitivity() + self.specificity() - 1.0
    }
}

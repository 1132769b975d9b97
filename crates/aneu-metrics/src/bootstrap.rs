//! Seeded bootstrap confidence intervals.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::curves::roc_auc;
use crate::error::{Error, Result};
use crate::froc::{FrocOptions, ScanDetections, froc};
use crate::rsna::{RsnaTable, rsna_weighted_auc};

/// Options of a percentile bootstrap.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BootstrapOptions {
    /// Number of resamples.
    pub resamples: usize,
    /// Coverage of the interval, in (0, 1).
    pub confidence: f64,
    /// Seed of the resampling RNG; the same seed gives the same interval.
    pub seed: u64,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        Self {
            resamples: 1000,
            confidence: 0.95,
            seed: 0,
        }
    }
}

impl BootstrapOptions {
    /// Sets the number of resamples.
    pub fn with_resamples(mut self, n: usize) -> Self {
        self.resamples = n;
        self
    }
    /// Sets the coverage.
    pub fn with_confidence(mut self, c: f64) -> Self {
        self.confidence = c;
        self
    }
    /// Sets the seed.
    pub fn with_seed(mut self, s: u64) -> Self {
        self.seed = s;
        self
    }
}

/// A point estimate with its bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The statistic on the full sample.
    pub estimate: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Coverage.
    pub confidence: f64,
    /// Resamples on which the statistic was defined (resamples that lose a
    /// class are skipped).
    pub resamples_used: usize,
}

/// `numpy.quantile` with linear interpolation on sorted data.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// A percentile bootstrap of `stat` over `n` units (samples, scans or
/// series): each resample draws `n` unit indices with replacement.
/// Resamples on which the statistic is undefined
/// ([`Error::SingleClass`]) are skipped; other errors are returned.
///
/// The interval is the (1 − c)/2 and (1 + c)/2 quantiles of the resampled
/// statistics, widened to hold the point estimate in the rare skewed case
/// where it falls outside.
///
/// # Errors
/// [`Error::InvalidArgument`] for bad options or when fewer than half the
/// resamples are usable; errors of `stat` on the full sample.
pub fn bootstrap(n: usize, opts: &BootstrapOptions, stat: impl Fn(&[usize]) -> Result<f64>) -> Result<Interval> {
    if n == 0 {
        return Err(Error::Empty {
            what: "bootstrap sample",
        });
    }
    if opts.resamples == 0 || !(opts.confidence > 0.0 && opts.confidence < 1.0) {
        return Err(Error::InvalidArgument {
            reason: format!("{} resamples at confidence {}", opts.resamples, opts.confidence),
        });
    }
    let all: Vec<usize> = (0..n).collect();
    let estimate = stat(&all)?;
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut values = Vec::with_capacity(opts.resamples);
    let mut idx = vec![0usize; n];
    for _ in 0..opts.resamples {
        for v in idx.iter_mut() {
            *v = rng.random_range(0..n);
        }
        match stat(&idx) {
            Ok(v) => values.push(v),
            Err(Error::SingleClass { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if values.len() * 2 < opts.resamples {
        return Err(Error::InvalidArgument {
            reason: format!(
                "only {} of {} resamples hold both classes",
                values.len(),
                opts.resamples
            ),
        });
    }
    values.sort_by(f64::total_cmp);
    let a = (1.0 - opts.confidence) / 2.0;
    Ok(Interval {
        estimate,
        low: quantile(&values, a).min(estimate),
        high: quantile(&values, 1.0 - a).max(estimate),
        confidence: opts.confidence,
        resamples_used: values.len(),
    })
}

/// Bootstrap interval of the ROC AUC (resampling samples).
///
/// # Errors
/// As [`bootstrap`] and [`roc_auc`].
pub fn auc_interval(labels: &[f64], scores: &[f64], opts: &BootstrapOptions) -> Result<Interval> {
    roc_auc(labels, scores)?;
    bootstrap(labels.len(), opts, |idx| {
        let l: Vec<f64> = idx.iter().map(|&i| labels[i]).collect();
        let s: Vec<f64> = idx.iter().map(|&i| scores[i]).collect();
        roc_auc(&l, &s)
    })
}

/// Bootstrap interval of the FROC sensitivity at `fp_rate` FP per scan
/// (resampling scans).
///
/// # Errors
/// As [`bootstrap`] and [`froc`].
pub fn froc_sensitivity_interval(
    scans: &[ScanDetections],
    fp_rate: f64,
    froc_opts: &FrocOptions,
    opts: &BootstrapOptions,
) -> Result<Interval> {
    let o = froc_opts.clone().with_fp_rates(vec![fp_rate]);
    bootstrap(scans.len(), opts, |idx| {
        let s: Vec<ScanDetections> = idx.iter().map(|&i| scans[i].clone()).collect();
        Ok(froc(&s, &o)?.sensitivity_at[0].1)
    })
}

/// Bootstrap interval of the RSNA weighted AUC (resampling series).
///
/// # Errors
/// As [`bootstrap`] and [`rsna_weighted_auc`].
pub fn rsna_interval(truth: &RsnaTable, pred: &RsnaTable, opts: &BootstrapOptions) -> Result<Interval> {
    rsna_weighted_auc(truth, pred)?;
    let uids: Vec<&str> = truth.uids().collect();
    bootstrap(uids.len(), opts, |idx| {
        let (mut t, mut p) = (RsnaTable::new(), RsnaTable::new());
        for (n, &i) in idx.iter().enumerate() {
            let u = uids[i];
            let key = format!("{u}#{n}");
            if let (Some(tv), Some(pv)) = (truth.get(u), pred.get(u)) {
                t.insert(key.clone(), *tv);
                p.insert(key, *pv);
            }
        }
        let s = rsna_weighted_auc(&t, &p)?;
        // a resample that loses a column that the full sample has is not
        // comparable: skip it
        if s.skipped.len() > rsna_weighted_auc(truth, pred).map_or(0, |f| f.skipped.len()) {
            return Err(Error::SingleClass {
                what: "RSNA resample",
                class: 0,
            });
        }
        Ok(s.score)
    })
}

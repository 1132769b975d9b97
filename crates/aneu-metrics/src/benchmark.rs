//! The detection benchmark's figures: every detection-quality number of a
//! set of scans with its bootstrap interval, from one list of per-scan
//! outcomes.
//!
//! A figure on a handful of scans is noise; this module never gives a
//! point estimate without its interval. Scans are the resampling unit for
//! every figure (one resample draws `n` scans with replacement, the same
//! draws for every figure), so a figure's interval reflects how much it
//! would move on another set of scans like these. The vessel Dice figures
//! are resampled among the scans that have them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bootstrap::{BootstrapOptions, Interval, bootstrap};
use crate::curves::roc_auc;
use crate::error::{Error, Result};
use crate::froc::{FrocOptions, Lesion, ScanDetections, froc};
use crate::overlap::LabelOverlap;
use crate::rsna::{RsnaTable, rsna_weighted_auc};

/// What one scan contributes to the benchmark: its truth and what a model
/// predicted for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanOutcome {
    /// The truth's `Aneurysm Present`.
    pub present: bool,
    /// The truth's 13 locations, in RSNA column order.
    pub locations: [bool; 13],
    /// The predicted `Aneurysm Present` probability.
    pub score: f64,
    /// The predicted 13 location probabilities, in RSNA column order.
    pub location_scores: [f64; 13],
    /// The candidates in mm and the aneurysms (centre, radius) in mm.
    pub detections: ScanDetections,
    /// The predicted artery labels against the scan's reference labels,
    /// when both exist (a model with a vessel head, a scan with a vessel
    /// segmentation).
    #[serde(default)]
    pub arteries: Option<LabelOverlap>,
}

impl ScanOutcome {
    /// The truth as an RSNA row (13 locations, then `Aneurysm Present`).
    pub fn truth_row(&self) -> [f64; 14] {
        let mut r = [0.0; 14];
        for (v, &l) in r.iter_mut().zip(&self.locations) {
            *v = f64::from(u8::from(l));
        }
        r[13] = f64::from(u8::from(self.present));
        r
    }

    /// The prediction as an RSNA row (a submission row).
    pub fn predicted_row(&self) -> [f64; 14] {
        let mut r = [0.0; 14];
        r[..13].copy_from_slice(&self.location_scores);
        r[13] = self.score;
        r
    }
}

/// Sensitivity at one rate of false positives per scan.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensitivityAt {
    /// False positives per scan.
    pub fp_per_scan: f64,
    /// Share of aneurysms hit at that rate.
    pub sensitivity: Interval,
}

/// A range of aneurysm sizes, by dome diameter (twice
/// [`Lesion::radius_mm`]): from `min_diameter_mm` up to, not including,
/// `max_diameter_mm` (no upper end when `None`). Aneurysms of unknown size
/// (radius 0) are in no bin.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SizeBin {
    /// The smallest diameter (mm) in the bin.
    pub min_diameter_mm: f64,
    /// The diameter (mm) where the next bin starts; `None` for the last.
    pub max_diameter_mm: Option<f64>,
}

impl SizeBin {
    /// Whether the bin holds an aneurysm.
    pub fn holds(&self, l: &Lesion) -> bool {
        let d = 2.0 * l.radius_mm;
        l.radius_mm > 0.0 && d >= self.min_diameter_mm && self.max_diameter_mm.is_none_or(|m| d < m)
    }
}

/// The sizes the benchmark reports sensitivity for: under 3 mm, 3–5 mm,
/// 5–7 mm and 7 mm or more across, the bins in which clinical studies of
/// unruptured aneurysms report detection (the smallest is where readers
/// miss most).
pub const SIZE_BINS: [SizeBin; 4] = [
    SizeBin {
        min_diameter_mm: 0.0,
        max_diameter_mm: Some(3.0),
    },
    SizeBin {
        min_diameter_mm: 3.0,
        max_diameter_mm: Some(5.0),
    },
    SizeBin {
        min_diameter_mm: 5.0,
        max_diameter_mm: Some(7.0),
    },
    SizeBin {
        min_diameter_mm: 7.0,
        max_diameter_mm: None,
    },
];

/// The FROC sensitivity for the aneurysms of one size bin, at the whole
/// detector's false-positive rates ([`ScanDetections::restricted_to`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SizeSensitivity {
    /// The bin.
    pub bin: SizeBin,
    /// Aneurysms in the bin, over all scans.
    pub aneurysms: usize,
    /// The sensitivity (or, in a [`PairedDifference`], its difference) at
    /// each of [`FrocOptions::fp_rates`].
    pub sensitivity_at: Vec<SensitivityAt>,
}

impl SizeSensitivity {
    /// The entry at `fp` false positives per scan, if computed.
    pub fn sensitivity(&self, fp: f64) -> Option<Interval> {
        find_sensitivity(&self.sensitivity_at, fp)
    }
}

/// Every figure of the detection benchmark on one set of scans, each with
/// its bootstrap interval; a figure is `None` where the scans cannot
/// define it (no negative scan for an AUC, no aneurysm for FROC, nothing
/// hit for a localisation error).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkFigures {
    /// Scans.
    pub scans: usize,
    /// Scans with an aneurysm.
    pub positives: usize,
    /// Aneurysms in all scans.
    pub aneurysms: usize,
    /// ROC AUC of `Aneurysm Present` over scans.
    pub scan_auc: Option<Interval>,
    /// The RSNA weighted multi-label AUC. Columns with one class are left
    /// out, as [`rsna_weighted_auc`] says, in the whole set and in each
    /// resample: rare locations come and go between resamples, and
    /// skipping every resample that loses one would leave no interval on
    /// a set of a hundred scans.
    pub rsna_weighted_auc: Option<Interval>,
    /// The mean AUC of the location columns that the set (each resample)
    /// defines.
    pub mean_location_auc: Option<Interval>,
    /// FROC sensitivity at each of [`FrocOptions::fp_rates`].
    pub sensitivity_at: Vec<SensitivityAt>,
    /// The same for each bin of [`SIZE_BINS`] that holds an aneurysm.
    #[serde(default)]
    pub by_size: Vec<SizeSensitivity>,
    /// Median distance (mm) from a hit aneurysm's centre to the best
    /// candidate that hits it.
    pub median_localisation_error_mm: Option<Interval>,
    /// Scans whose predicted artery labels were scored against reference
    /// labels ([`ScanOutcome::arteries`]); the two Dice figures are means
    /// over these scans, resampled among them.
    #[serde(default)]
    pub segmented: usize,
    /// The mean over scans of each scan's mean Dice over the artery labels
    /// its reference holds ([`LabelOverlap::mean_dice`]).
    #[serde(default)]
    pub artery_dice: Option<Interval>,
    /// The mean over scans of the foreground Dice (any artery against
    /// background, [`LabelOverlap::foreground_dice`]).
    #[serde(default)]
    pub vessel_dice: Option<Interval>,
    /// Per artery label (1 to 255) that some scan's reference holds: the
    /// mean Dice of that label over those scans, with its interval.
    #[serde(default)]
    pub dice_by_label: Vec<LabelDice>,
    /// The segmented scans' confusion matrices ([`LabelOverlap::confusion`])
    /// summed: for each reference label, the voxels the prediction gave
    /// each label.
    #[serde(default)]
    pub confusion: BTreeMap<u8, BTreeMap<u8, u64>>,
}

/// One label's Dice over the scans whose reference holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelDice {
    /// The label.
    pub label: u8,
    /// Scans whose reference holds it.
    pub scans: usize,
    /// The mean of their Dice for the label.
    pub dice: Option<Interval>,
}

impl BenchmarkFigures {
    /// Computes every figure on `scans`.
    ///
    /// ```
    /// use aneu_metrics::{BenchmarkFigures, BootstrapOptions, Candidate, FrocOptions, Lesion, ScanDetections, ScanOutcome};
    /// let scan = |present: bool, score: f64| ScanOutcome {
    ///     present,
    ///     locations: [present; 13],
    ///     score,
    ///     location_scores: [score; 13],
    ///     detections: ScanDetections {
    ///         candidates: vec![Candidate { point: [1.0, 0.0, 0.0], score }],
    ///         lesions: if present { vec![Lesion { centre: [0.0; 3], radius_mm: 3.0 }] } else { vec![] },
    ///     },
    ///     arteries: None,
    /// };
    /// let scans: Vec<ScanOutcome> = (0..20).map(|n| scan(n % 2 == 0, if n % 2 == 0 { 0.9 } else { 0.1 })).collect();
    /// let f = BenchmarkFigures::compute(&scans, &FrocOptions::default(), &BootstrapOptions::default())?;
    /// assert_eq!(f.scan_auc.unwrap().estimate, 1.0);
    /// assert_eq!(f.sensitivity_at[3].sensitivity.estimate, 1.0); // at 1 FP per scan
    /// assert_eq!(f.median_localisation_error_mm.unwrap().estimate, 1.0);
    /// # Ok::<(), aneu_metrics::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Empty`] without scans; the metrics' errors on bad values
    /// (non-finite scores, bad options).
    pub fn compute(scans: &[ScanOutcome], froc_opts: &FrocOptions, boot: &BootstrapOptions) -> Result<Self> {
        if scans.is_empty() {
            return Err(Error::Empty { what: "scans" });
        }
        // bad options and bad values are errors, not absent figures
        if boot.resamples == 0 || !(boot.confidence > 0.0 && boot.confidence < 1.0) {
            return Err(Error::InvalidArgument {
                reason: format!("{} resamples at confidence {}", boot.resamples, boot.confidence),
            });
        }
        let all: Vec<ScanDetections> = scans.iter().map(|o| o.detections.clone()).collect();
        match froc(&all, froc_opts) {
            Ok(_) | Err(Error::SingleClass { .. }) => {}
            Err(e) => return Err(e),
        }
        let scan_auc = defined(bootstrap(scans.len(), boot, |idx| scan_auc_of(scans, idx)))?;

        let rsna_weighted_auc = defined(bootstrap(scans.len(), boot, |idx| Ok(rsna_score(scans, idx)?.score)))?;
        let mean_location_auc = defined(bootstrap(scans.len(), boot, |idx| mean_location_auc_of(scans, idx)))?;

        let detections =
            |idx: &[usize]| -> Vec<ScanDetections> { idx.iter().map(|&i| scans[i].detections.clone()).collect() };
        let sensitivity_at = sensitivities(scans.len(), froc_opts, boot, |idx, one| {
            sensitivity_of(scans, idx, one, None)
        })?;
        let by_size = by_size(scans, froc_opts, boot, |idx, one, bin| {
            sensitivity_of(scans, idx, one, Some(bin))
        })?;
        let median_localisation_error_mm = defined(bootstrap(scans.len(), boot, |idx| {
            let mut e = froc(&detections(idx), froc_opts)?.localisation_errors_mm;
            if e.is_empty() {
                return Err(Error::SingleClass {
                    what: "localisation error (nothing hit)",
                    class: 0,
                });
            }
            e.sort_by(f64::total_cmp);
            Ok(median(&e))
        }))?;
        let dice = |f: fn(&LabelOverlap) -> Option<f64>| {
            let v: Vec<f64> = scans.iter().filter_map(|o| o.arteries.as_ref().and_then(f)).collect();
            mean_interval(&v, boot)
        };
        let mut dice_by_label = Vec::new();
        for label in 1..=u8::MAX {
            let v: Vec<f64> = scans
                .iter()
                .filter_map(|o| o.arteries.as_ref()?.labels.get(&label))
                .filter(|c| c.true_positive + c.false_negative > 0)
                .filter_map(|c| c.dice())
                .collect();
            if !v.is_empty() {
                dice_by_label.push(LabelDice {
                    label,
                    scans: v.len(),
                    dice: mean_interval(&v, boot)?,
                });
            }
        }
        let mut confusion: BTreeMap<u8, BTreeMap<u8, u64>> = BTreeMap::new();
        for (&t, row) in scans
            .iter()
            .filter_map(|o| o.arteries.as_ref())
            .flat_map(|a| &a.confusion)
        {
            let pooled = confusion.entry(t).or_default();
            for (&p, &n) in row {
                *pooled.entry(p).or_default() += n;
            }
        }
        Ok(Self {
            scans: scans.len(),
            positives: scans.iter().filter(|o| o.present).count(),
            aneurysms: scans.iter().map(|o| o.detections.lesions.len()).sum(),
            scan_auc,
            rsna_weighted_auc,
            mean_location_auc,
            sensitivity_at,
            by_size,
            median_localisation_error_mm,
            segmented: scans.iter().filter(|o| o.arteries.is_some()).count(),
            artery_dice: dice(LabelOverlap::mean_dice)?,
            vessel_dice: dice(LabelOverlap::foreground_dice)?,
            dice_by_label,
            confusion,
        })
    }

    /// The sensitivity at `fp` false positives per scan, if computed.
    pub fn sensitivity(&self, fp: f64) -> Option<Interval> {
        find_sensitivity(&self.sensitivity_at, fp)
    }
}

/// The scan-level ROC AUC of the scans `idx` (a bootstrap resample).
fn scan_auc_of(scans: &[ScanOutcome], idx: &[usize]) -> Result<f64> {
    let labels: Vec<f64> = idx.iter().map(|&i| f64::from(u8::from(scans[i].present))).collect();
    let scores: Vec<f64> = idx.iter().map(|&i| scans[i].score).collect();
    roc_auc(&labels, &scores)
}

/// The mean AUC of the 13 location columns that are defined (both
/// classes present) on the scans `idx`.
fn mean_location_auc_of(scans: &[ScanOutcome], idx: &[usize]) -> Result<f64> {
    let aucs: Vec<f64> = rsna_score(scans, idx)?.column_auc[..13]
        .iter()
        .flatten()
        .copied()
        .collect();
    if aucs.is_empty() {
        return Err(Error::SingleClass {
            what: "location columns",
            class: 0,
        });
    }
    Ok(aucs.iter().sum::<f64>() / aucs.len() as f64)
}

/// The FROC sensitivity of the scans `idx` at `one`'s single rate, for
/// the aneurysms of `bin` (all of them when `None`).
fn sensitivity_of(scans: &[ScanOutcome], idx: &[usize], one: &FrocOptions, bin: Option<&SizeBin>) -> Result<f64> {
    let d: Vec<ScanDetections> = idx
        .iter()
        .map(|&i| {
            let s = &scans[i].detections;
            match bin {
                Some(b) => s.restricted_to(|l| b.holds(l), one.min_hit_distance_mm),
                None => s.clone(),
            }
        })
        .collect();
    Ok(froc(&d, one)?.sensitivity_at[0].1)
}

/// `stat` (a sensitivity, or a difference of two) bootstrapped over `n`
/// scans at each of `froc_opts`' rates; the rates where it is undefined
/// are left out.
fn sensitivities(
    n: usize,
    froc_opts: &FrocOptions,
    boot: &BootstrapOptions,
    stat: impl Fn(&[usize], &FrocOptions) -> Result<f64>,
) -> Result<Vec<SensitivityAt>> {
    let mut out = Vec::with_capacity(froc_opts.fp_rates.len());
    for &fp in &froc_opts.fp_rates {
        let one = froc_opts.clone().with_fp_rates(vec![fp]);
        if let Some(s) = defined(bootstrap(n, boot, |idx| stat(idx, &one)))? {
            out.push(SensitivityAt {
                fp_per_scan: fp,
                sensitivity: s,
            });
        }
    }
    Ok(out)
}

/// [`sensitivities`] of `stat` for each bin of [`SIZE_BINS`] that holds
/// an aneurysm of `scans`.
fn by_size(
    scans: &[ScanOutcome],
    froc_opts: &FrocOptions,
    boot: &BootstrapOptions,
    stat: impl Fn(&[usize], &FrocOptions, &SizeBin) -> Result<f64>,
) -> Result<Vec<SizeSensitivity>> {
    let mut out = Vec::new();
    for bin in &SIZE_BINS {
        let aneurysms = scans
            .iter()
            .flat_map(|o| &o.detections.lesions)
            .filter(|l| bin.holds(l))
            .count();
        if aneurysms > 0 {
            out.push(SizeSensitivity {
                bin: *bin,
                aneurysms,
                sensitivity_at: sensitivities(scans.len(), froc_opts, boot, |idx, one| stat(idx, one, bin))?,
            });
        }
    }
    Ok(out)
}

/// The entry of `at` for `fp` false positives per scan.
fn find_sensitivity(at: &[SensitivityAt], fp: f64) -> Option<Interval> {
    at.iter().find(|s| s.fp_per_scan == fp).map(|s| s.sensitivity)
}

/// How much better a model `b` is than a model `a` on the same scans:
/// `b − a` for the scan AUC and the FROC sensitivities, each with the
/// bootstrap interval of the *paired* difference (one resample draws the
/// same scans for both models).
///
/// Two models' separate intervals overlap long before their difference
/// is noise: the scans that are hard for one are mostly hard for the
/// other, and the paired resampling cancels that shared variation. A
/// difference whose interval excludes 0 is a difference on scans like
/// these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    /// Scans compared.
    pub scans: usize,
    /// `b − a` of the scan AUC.
    pub scan_auc: Option<Interval>,
    /// `b − a` of the FROC sensitivity at each of
    /// [`FrocOptions::fp_rates`].
    pub sensitivity_at: Vec<SensitivityAt>,
    /// `b − a` of the sensitivity for each bin of [`SIZE_BINS`] that holds
    /// an aneurysm.
    #[serde(default)]
    pub by_size: Vec<SizeSensitivity>,
    /// `b − a` of the artery Dice ([`BenchmarkFigures::artery_dice`]), on
    /// the scans where both were scored.
    #[serde(default)]
    pub artery_dice: Option<Interval>,
    /// `b − a` of the mean location AUC
    /// ([`BenchmarkFigures::mean_location_auc`]).
    #[serde(default)]
    pub mean_location_auc: Option<Interval>,
}

impl PairedDifference {
    /// Compares `b` with `a`, scan by scan.
    ///
    /// ```
    /// use aneu_metrics::{BootstrapOptions, Candidate, FrocOptions, Lesion, PairedDifference, ScanDetections, ScanOutcome};
    /// let scan = |present: bool, score: f64| ScanOutcome {
    ///     present,
    ///     locations: [present; 13],
    ///     score,
    ///     location_scores: [score; 13],
    ///     detections: ScanDetections {
    ///         candidates: vec![Candidate { point: [1.0, 0.0, 0.0], score }],
    ///         lesions: if present { vec![Lesion { centre: [0.0; 3], radius_mm: 3.0 }] } else { vec![] },
    ///     },
    ///     arteries: None,
    /// };
    /// let a: Vec<ScanOutcome> = (0..20).map(|n| scan(n % 2 == 0, 0.5)).collect();
    /// let d = PairedDifference::compute(&a, &a, &FrocOptions::default(), &BootstrapOptions::default())?;
    /// let auc = d.scan_auc.unwrap();
    /// assert_eq!((auc.estimate, auc.low, auc.high), (0.0, 0.0, 0.0));
    /// # Ok::<(), aneu_metrics::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the two lists do not hold the same
    /// scans in the same order (their truths differ); [`Error::Empty`]
    /// without scans; the metrics' errors on bad values.
    pub fn compute(
        a: &[ScanOutcome],
        b: &[ScanOutcome],
        froc_opts: &FrocOptions,
        boot: &BootstrapOptions,
    ) -> Result<Self> {
        if a.len() != b.len() {
            return Err(Error::InvalidArgument {
                reason: format!("paired scans: {} against {}", a.len(), b.len()),
            });
        }
        if let Some(i) = a.iter().zip(b).position(|(x, y)| {
            x.present != y.present || x.locations != y.locations || x.detections.lesions != y.detections.lesions
        }) {
            return Err(Error::InvalidArgument {
                reason: format!("paired scans: scan {i} has another truth in each list"),
            });
        }
        let n = a.len();
        let scan_auc = defined(bootstrap(
            n,
            boot,
            |idx| Ok(scan_auc_of(b, idx)? - scan_auc_of(a, idx)?),
        ))?;
        let mean_location_auc = defined(bootstrap(n, boot, |idx| {
            Ok(mean_location_auc_of(b, idx)? - mean_location_auc_of(a, idx)?)
        }))?;
        let sensitivity_at = sensitivities(n, froc_opts, boot, |idx, one| {
            Ok(sensitivity_of(b, idx, one, None)? - sensitivity_of(a, idx, one, None)?)
        })?;
        let by_size = by_size(a, froc_opts, boot, |idx, one, bin| {
            Ok(sensitivity_of(b, idx, one, Some(bin))? - sensitivity_of(a, idx, one, Some(bin))?)
        })?;
        let dice: Vec<f64> = a
            .iter()
            .zip(b)
            .filter_map(|(x, y)| {
                let (x, y) = (x.arteries.as_ref()?.mean_dice()?, y.arteries.as_ref()?.mean_dice()?);
                Some(y - x)
            })
            .collect();
        Ok(Self {
            scans: n,
            scan_auc,
            sensitivity_at,
            by_size,
            artery_dice: mean_interval(&dice, boot)?,
            mean_location_auc,
        })
    }

    /// `b − a` of the sensitivity at `fp` false positives per scan, if
    /// computed.
    pub fn sensitivity(&self, fp: f64) -> Option<Interval> {
        find_sensitivity(&self.sensitivity_at, fp)
    }
}

/// The mean of `values` with its bootstrap interval; `None` without
/// values.
fn mean_interval(values: &[f64], boot: &BootstrapOptions) -> Result<Option<Interval>> {
    if values.is_empty() {
        return Ok(None);
    }
    defined(bootstrap(values.len(), boot, |idx| {
        Ok(idx.iter().map(|&i| values[i]).sum::<f64>() / idx.len() as f64)
    }))
}

/// The median of sorted, non-empty values.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The RSNA score of the scans at `idx` (each draw a row of its own).
fn rsna_score(scans: &[ScanOutcome], idx: &[usize]) -> Result<crate::rsna::RsnaScore> {
    let (mut truth, mut pred) = (RsnaTable::new(), RsnaTable::new());
    for (n, &i) in idx.iter().enumerate() {
        truth.insert(n.to_string(), scans[i].truth_row());
        pred.insert(n.to_string(), scans[i].predicted_row());
    }
    rsna_weighted_auc(&truth, &pred)
}

/// A figure that the whole set cannot define (one class only, nothing to
/// hit, too few resamples that define it: `bootstrap`'s
/// `InvalidArgument` once the options are checked) is absent; other
/// errors stay errors.
fn defined(r: Result<Interval>) -> Result<Option<Interval>> {
    match r {
        Ok(i) => Ok(Some(i)),
        Err(Error::SingleClass { .. } | Error::InvalidArgument { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::froc::{Candidate, Lesion};

    fn outcome(present: bool, score: f64, hit_at: Option<f64>) -> ScanOutcome {
        let mut candidates = vec![Candidate {
            point: [60.0, 0.0, 0.0],
            score: score * 0.5,
        }];
        if let Some(d) = hit_at {
            candidates.push(Candidate {
                point: [d, 0.0, 0.0],
                score,
            });
        }
        let mut locations = [false; 13];
        locations[3] = present;
        let mut location_scores = [0.1; 13];
        location_scores[3] = score;
        ScanOutcome {
            present,
            locations,
            score,
            location_scores,
            detections: ScanDetections {
                candidates,
                lesions: if present {
                    vec![Lesion {
                        centre: [0.0; 3],
                        radius_mm: 2.5,
                    }]
                } else {
                    vec![]
                },
            },
            arteries: None,
        }
    }

    /// Point estimates equal the metrics on the whole set; the interval
    /// holds the estimate; figures with one class are absent.
    #[test]
    fn estimates_are_the_whole_sets_metrics() {
        let scans: Vec<ScanOutcome> = (0..40)
            .map(|n| {
                let present = n % 3 == 0;
                let score = ((n * 37) % 40) as f64 / 40.0 + if present { 0.3 } else { 0.0 };
                outcome(present, score.min(1.0), present.then_some((n % 5) as f64 * 0.5))
            })
            .collect();
        let f = BenchmarkFigures::compute(&scans, &FrocOptions::default(), &BootstrapOptions::default()).unwrap();
        let labels: Vec<f64> = scans.iter().map(|o| f64::from(u8::from(o.present))).collect();
        let scores: Vec<f64> = scans.iter().map(|o| o.score).collect();
        let auc = f.scan_auc.unwrap();
        assert_eq!(auc.estimate, roc_auc(&labels, &scores).unwrap());
        assert!(auc.low <= auc.estimate && auc.estimate <= auc.high && auc.low < auc.high);
        let dets: Vec<ScanDetections> = scans.iter().map(|o| o.detections.clone()).collect();
        let whole = froc(&dets, &FrocOptions::default()).unwrap();
        for (s, (fp, v)) in f.sensitivity_at.iter().zip(&whole.sensitivity_at) {
            assert_eq!((s.fp_per_scan, s.sensitivity.estimate), (*fp, *v));
        }
        // errors 0, 0.5, 1, 1.5, 2 mm in turn over 14 positives
        let mut e = whole.localisation_errors_mm.clone();
        e.sort_by(f64::total_cmp);
        assert_eq!(f.median_localisation_error_mm.unwrap().estimate, median(&e));
        // only one location column has both classes: its AUC is the mean
        let loc_labels: Vec<f64> = scans.iter().map(|o| f64::from(u8::from(o.locations[3]))).collect();
        let loc_scores: Vec<f64> = scans.iter().map(|o| o.location_scores[3]).collect();
        assert_eq!(
            f.mean_location_auc.unwrap().estimate,
            roc_auc(&loc_labels, &loc_scores).unwrap()
        );
        assert_eq!((f.scans, f.positives, f.aneurysms), (40, 14, 14));

        let negatives: Vec<ScanOutcome> = (0..10).map(|n| outcome(false, n as f64 / 10.0, None)).collect();
        let f = BenchmarkFigures::compute(&negatives, &FrocOptions::default(), &BootstrapOptions::default()).unwrap();
        assert!(f.scan_auc.is_none() && f.sensitivity_at.is_empty() && f.median_localisation_error_mm.is_none());
        assert!(BenchmarkFigures::compute(&[], &FrocOptions::default(), &BootstrapOptions::default()).is_err());
    }

    /// The paired difference: its estimate is the difference of the two
    /// models' estimates; a model that beats another by the same margin on
    /// every scan gets an interval that excludes 0 even where the two
    /// models' own intervals overlap; swapping the models negates it; two
    /// lists of different scans are refused.
    #[test]
    fn paired_differences_see_what_overlapping_intervals_hide() {
        // a: an informative but noisy score; b: the same plus a margin on
        // the positives (so the two share every hard scan)
        let score = |n: usize| ((n * 37) % 60) as f64 / 60.0;
        let a: Vec<ScanOutcome> = (0..60)
            .map(|n| {
                let present = n % 2 == 0;
                outcome(
                    present,
                    score(n) * 0.7 + if present { 0.2 } else { 0.0 },
                    present.then_some(1.0),
                )
            })
            .collect();
        let b: Vec<ScanOutcome> = a
            .iter()
            .map(|o| {
                let mut o = o.clone();
                if o.present {
                    o.score = (o.score + 0.12).min(1.0);
                    o.location_scores[3] = o.score;
                }
                o
            })
            .collect();
        let (froc_opts, boot) = (FrocOptions::default(), BootstrapOptions::default());
        let fa = BenchmarkFigures::compute(&a, &froc_opts, &boot).unwrap();
        let fb = BenchmarkFigures::compute(&b, &froc_opts, &boot).unwrap();
        let (ia, ib) = (fa.scan_auc.unwrap(), fb.scan_auc.unwrap());
        assert!(
            ib.estimate > ia.estimate && ib.low < ia.high,
            "{ia:?} {ib:?}: the separate intervals overlap"
        );
        let d = PairedDifference::compute(&a, &b, &froc_opts, &boot).unwrap();
        let auc = d.scan_auc.unwrap();
        assert!((auc.estimate - (ib.estimate - ia.estimate)).abs() < 1e-12);
        assert!(auc.low > 0.0, "{auc:?}: the paired interval excludes 0");
        let back = PairedDifference::compute(&b, &a, &froc_opts, &boot)
            .unwrap()
            .scan_auc
            .unwrap();
        assert!((back.estimate + auc.estimate).abs() < 1e-12 && (back.high + auc.low).abs() < 1e-12);
        // the sensitivities' differences are those of the two estimates
        for s in &d.sensitivity_at {
            let (x, y) = (
                fa.sensitivity(s.fp_per_scan).unwrap(),
                fb.sensitivity(s.fp_per_scan).unwrap(),
            );
            assert!((s.sensitivity.estimate - (y.estimate - x.estimate)).abs() < 1e-12);
        }
        // the location scores follow the scan scores (column 3, the only
        // one with both classes), and so does their paired difference
        let (la, lb) = (fa.mean_location_auc.unwrap(), fb.mean_location_auc.unwrap());
        let loc = d.mean_location_auc.unwrap();
        assert!((loc.estimate - (lb.estimate - la.estimate)).abs() < 1e-12, "{loc:?}");
        assert!(loc.low > 0.0, "{loc:?}");
        assert_eq!(d.scans, 60);
        // other scans, or fewer, are an error
        let mut other = b.clone();
        other[3].present = !other[3].present;
        assert!(PairedDifference::compute(&a, &other, &froc_opts, &boot).is_err());
        assert!(PairedDifference::compute(&a, &b[1..], &froc_opts, &boot).is_err());
    }

    /// A perfect ranking has a degenerate interval at 1; a random one on
    /// few scans has a wide interval around 0.5.
    #[test]
    fn intervals_narrow_with_certainty_and_widen_with_few_scans() {
        let perfect: Vec<ScanOutcome> = (0..30)
            .map(|n| outcome(n % 2 == 0, if n % 2 == 0 { 0.9 } else { 0.2 }, Some(1.0)))
            .collect();
        let f = BenchmarkFigures::compute(&perfect, &FrocOptions::default(), &BootstrapOptions::default()).unwrap();
        let a = f.scan_auc.unwrap();
        assert_eq!((a.low, a.estimate, a.high), (1.0, 1.0, 1.0));
        let noisy: Vec<ScanOutcome> = (0..12)
            .map(|n| outcome(n % 2 == 0, ((n * 7) % 12) as f64 / 12.0, Some(1.0)))
            .collect();
        let f = BenchmarkFigures::compute(&noisy, &FrocOptions::default(), &BootstrapOptions::default()).unwrap();
        let a = f.scan_auc.unwrap();
        assert!(a.high - a.low > 0.4, "{a:?}");
    }

    /// The Dice figures are the means over the scans that were segmented
    /// (the others are left out, not counted as 0), and the paired
    /// difference is that of the two means on the scans both segmented.
    #[test]
    fn dice_figures_are_means_over_the_segmented_scans() {
        let truth = [0u8, 1, 1, 2, 2, 0];
        // mean Dice 0.65, foreground 8/9 (the doc example of LabelOverlap)
        let half = LabelOverlap::of(&truth, &[0, 1, 2, 2, 2, 1]).unwrap();
        let whole = LabelOverlap::of(&truth, &truth).unwrap();
        let scans: Vec<ScanOutcome> = (0..20)
            .map(|n| {
                let mut o = outcome(n % 2 == 0, 0.5, Some(1.0));
                o.arteries = match n % 4 {
                    0 => Some(half.clone()),
                    1 => Some(whole.clone()),
                    _ => None,
                };
                o
            })
            .collect();
        let (froc_opts, boot) = (FrocOptions::default(), BootstrapOptions::default());
        let f = BenchmarkFigures::compute(&scans, &froc_opts, &boot).unwrap();
        assert_eq!(f.segmented, 10);
        let (a, v) = (f.artery_dice.unwrap(), f.vessel_dice.unwrap());
        assert!((a.estimate - (0.65 + 1.0) / 2.0).abs() < 1e-12, "{a:?}");
        assert!((v.estimate - (8.0 / 9.0 + 1.0) / 2.0).abs() < 1e-12, "{v:?}");
        assert!(a.low >= 0.65 && a.high <= 1.0 && a.low < a.high);
        // label 1: Dice 0.5 on 5 scans and 1 on 5; label 2: 0.8 and 1
        let by: Vec<(u8, usize, f64)> = f
            .dice_by_label
            .iter()
            .map(|l| (l.label, l.scans, l.dice.unwrap().estimate))
            .collect();
        assert_eq!(by.len(), 2);
        assert_eq!((by[0].0, by[0].1, by[1].0, by[1].1), (1, 10, 2, 10));
        assert!(
            (by[0].2 - 0.75).abs() < 1e-12 && (by[1].2 - 0.9).abs() < 1e-12,
            "{by:?}"
        );
        // confusion pooled over the 10 segmented scans: label 1's voxels
        // went to 1 and 2 (half) or to 1 twice (whole), label 2's to 2
        let row = |l: u8| f.confusion[&l].iter().map(|(&k, &v)| (k, v)).collect::<Vec<_>>();
        assert_eq!(row(1), [(1, 15), (2, 5)]);
        assert_eq!(row(2), [(2, 20)]);
        let better: Vec<ScanOutcome> = scans
            .iter()
            .map(|o| {
                let mut o = o.clone();
                o.arteries = o.arteries.as_ref().map(|_| whole.clone());
                o
            })
            .collect();
        let d = PairedDifference::compute(&scans, &better, &froc_opts, &boot).unwrap();
        let dd = d.artery_dice.unwrap();
        assert!((dd.estimate - 0.35 / 2.0).abs() < 1e-12 && dd.low > 0.0, "{dd:?}");
        let none: Vec<ScanOutcome> = scans
            .iter()
            .map(|o| ScanOutcome {
                arteries: None,
                ..o.clone()
            })
            .collect();
        let f = BenchmarkFigures::compute(&none, &froc_opts, &boot).unwrap();
        assert_eq!((f.segmented, f.artery_dice, f.vessel_dice), (0, None, None));
        assert!(f.dice_by_label.is_empty() && f.confusion.is_empty());
    }

    /// Sensitivity by size counts each bin's aneurysms alone, and a hit on
    /// an aneurysm of another bin is no false positive: a model that finds
    /// only the large aneurysms scores 0 on the small ones and 1 on the
    /// large ones at every rate; one that also finds the small ones scores
    /// 1 on them even at 0.125 false positives per scan, though its hits on
    /// the large ones (one per positive scan, a quarter of a scan's share)
    /// score higher.
    #[test]
    fn sensitivity_by_size_counts_each_bin_alone() {
        let scan = |n: usize, small_found: bool| {
            let present = n.is_multiple_of(2);
            let mut candidates = vec![Candidate {
                point: [60.0, 0.0, 0.0],
                score: 0.5,
            }];
            if present {
                candidates.push(Candidate {
                    point: [30.0, 0.0, 0.0],
                    score: 0.9,
                });
                if small_found {
                    candidates.push(Candidate {
                        point: [0.5, 0.0, 0.0],
                        score: 0.8,
                    });
                }
            }
            let mut o = outcome(present, if present { 0.9 } else { 0.5 }, None);
            o.detections = ScanDetections {
                candidates,
                lesions: if present {
                    vec![
                        Lesion {
                            centre: [0.0; 3],
                            radius_mm: 1.0,
                        },
                        Lesion {
                            centre: [30.0, 0.0, 0.0],
                            radius_mm: 4.0,
                        },
                    ]
                } else {
                    vec![]
                },
            };
            o
        };
        let a: Vec<ScanOutcome> = (0..40).map(|n| scan(n, false)).collect();
        let b: Vec<ScanOutcome> = (0..40).map(|n| scan(n, true)).collect();
        let (froc_opts, boot) = (FrocOptions::default(), BootstrapOptions::default());
        let fa = BenchmarkFigures::compute(&a, &froc_opts, &boot).unwrap();
        let bins: Vec<(SizeBin, usize)> = fa.by_size.iter().map(|s| (s.bin, s.aneurysms)).collect();
        assert_eq!(bins, vec![(SIZE_BINS[0], 20), (SIZE_BINS[3], 20)]);
        for fp in [0.125, 1.0, 8.0] {
            assert_eq!(fa.by_size[0].sensitivity(fp).unwrap().estimate, 0.0);
            assert_eq!(fa.by_size[1].sensitivity(fp).unwrap().estimate, 1.0);
            assert_eq!(fa.sensitivity(fp).unwrap().estimate, 0.5);
        }
        let fb = BenchmarkFigures::compute(&b, &froc_opts, &boot).unwrap();
        assert_eq!(fb.by_size[0].sensitivity(0.125).unwrap().estimate, 1.0);
        let d = PairedDifference::compute(&a, &b, &froc_opts, &boot).unwrap();
        let small = d.by_size[0].sensitivity(1.0).unwrap();
        assert_eq!((small.estimate, small.low, small.high), (1.0, 1.0, 1.0));
        assert_eq!(d.by_size[1].sensitivity(1.0).unwrap().estimate, 0.0);
        // aneurysms of unknown size (radius 0) are in no bin
        let unknown = Lesion {
            centre: [0.0; 3],
            radius_mm: 0.0,
        };
        assert!(SIZE_BINS.iter().all(|bin| !bin.holds(&unknown)));
    }
}

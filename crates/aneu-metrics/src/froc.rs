//! Detection metrics: hits by the ADAM rule, the FROC curve, sensitivity
//! at fixed false positives per scan, and localisation error.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A detection: a point (mm, any fixed world frame) and its score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Position in mm.
    pub point: [f64; 3],
    /// Higher means more confident.
    pub score: f64,
}

/// A ground-truth aneurysm: centre (mm) and radius (mm; 0 if unknown).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lesion {
    /// Centre in mm.
    pub centre: [f64; 3],
    /// Radius in mm; 0 when the size is unknown.
    pub radius_mm: f64,
}

impl Lesion {
    /// Whether a candidate at `point` hits this aneurysm: it lies within
    /// `max(radius_mm, min_hit_distance_mm)` of the centre
    /// ([`FrocOptions::min_hit_distance_mm`]).
    pub fn is_hit_by(&self, point: [f64; 3], min_hit_distance_mm: f64) -> bool {
        dist(point, self.centre) <= self.radius_mm.max(min_hit_distance_mm)
    }
}

/// One scan: its candidates and its aneurysms (none for a negative scan).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanDetections {
    /// The detector's output.
    pub candidates: Vec<Candidate>,
    /// The truth.
    pub lesions: Vec<Lesion>,
}

/// How hits are decided and where the FROC curve is read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FrocOptions {
    /// A candidate hits a lesion when it lies within
    /// `max(radius_mm, min_hit_distance_mm)` of its centre (the ADAM rule,
    /// with a floor for aneurysms of unknown or tiny size).
    pub min_hit_distance_mm: f64,
    /// False positives per scan at which sensitivity is reported.
    pub fp_rates: Vec<f64>,
}

impl Default for FrocOptions {
    fn default() -> Self {
        Self {
            min_hit_distance_mm: 2.0,
            fp_rates: vec![0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0],
        }
    }
}

impl FrocOptions {
    /// Sets the minimum hit distance.
    pub fn with_min_hit_distance_mm(mut self, d: f64) -> Self {
        self.min_hit_distance_mm = d;
        self
    }
    /// Sets the FP rates.
    pub fn with_fp_rates(mut self, r: Vec<f64>) -> Self {
        self.fp_rates = r;
        self
    }
}

/// One point of the FROC curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrocPoint {
    /// Candidates with `score >= threshold` are kept.
    pub threshold: f64,
    /// Mean false positives per scan.
    pub fp_per_scan: f64,
    /// Share of lesions detected.
    pub sensitivity: f64,
}

/// The FROC analysis of a set of scans.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Froc {
    /// The curve at each distinct candidate score, highest first.
    pub curve: Vec<FrocPoint>,
    /// Sensitivity at each of [`FrocOptions::fp_rates`]: the highest
    /// sensitivity reached with at most that many FP per scan.
    pub sensitivity_at: Vec<(f64, f64)>,
    /// The mean of [`Froc::sensitivity_at`] (the competition performance
    /// metric of LUNA16 and ADAM).
    pub mean_sensitivity: f64,
    /// Lesions in all scans.
    pub lesions: usize,
    /// Scans.
    pub scans: usize,
    /// For each detected lesion, the distance (mm) from its centre to the
    /// highest-scoring candidate that hits it, over all candidates.
    pub localisation_errors_mm: Vec<f64>,
}

impl Froc {
    /// Mean localisation error (mm), `None` if nothing was detected.
    pub fn mean_localisation_error_mm(&self) -> Option<f64> {
        let e = &self.localisation_errors_mm;
        (!e.is_empty()).then(|| e.iter().sum::<f64>() / e.len() as f64)
    }
}

impl ScanDetections {
    /// This scan with only the aneurysms that `keep` accepts: the others
    /// leave, and so do the candidates that hit only them, which are then
    /// neither hits nor false positives. [`froc`] of such scans gives the
    /// sensitivity for a kind of aneurysm (a size, say) at the whole
    /// detector's false-positive rates, as the FROC of every aneurysm counts
    /// them.
    ///
    /// ```
    /// use aneu_metrics::{Candidate, Lesion, ScanDetections};
    /// let scan = ScanDetections {
    ///     candidates: vec![
    ///         Candidate { point: [0.5, 0.0, 0.0], score: 0.9 },  // hits the small one
    ///         Candidate { point: [20.0, 0.0, 0.0], score: 0.8 }, // hits the large one
    ///         Candidate { point: [60.0, 0.0, 0.0], score: 0.7 }, // hits nothing
    ///     ],
    ///     lesions: vec![
    ///         Lesion { centre: [0.0; 3], radius_mm: 1.0 },
    ///         Lesion { centre: [20.0, 0.0, 0.0], radius_mm: 4.0 },
    ///     ],
    /// };
    /// let small = scan.restricted_to(|l| l.radius_mm < 2.0, 2.0);
    /// assert_eq!(small.lesions.len(), 1);
    /// let kept: Vec<f64> = small.candidates.iter().map(|c| c.score).collect();
    /// assert_eq!(kept, vec![0.9, 0.7]); // the large one's hit is no false positive
    /// ```
    pub fn restricted_to(&self, keep: impl Fn(&Lesion) -> bool, min_hit_distance_mm: f64) -> ScanDetections {
        let (kept, left): (Vec<Lesion>, Vec<Lesion>) = self.lesions.iter().partition(|l| keep(l));
        let hits = |c: &Candidate, ls: &[Lesion]| ls.iter().any(|l| l.is_hit_by(c.point, min_hit_distance_mm));
        ScanDetections {
            candidates: self
                .candidates
                .iter()
                .filter(|c| hits(c, &kept) || !hits(c, &left))
                .copied()
                .collect(),
            lesions: kept,
        }
    }
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// Hit events of one scan, for the curve: each lesion's best hit score, the
/// scores of the candidates that hit nothing, and the localisation errors.
struct ScanMatch {
    lesion_best: Vec<Option<f64>>,
    fp_scores: Vec<f64>,
    errors: Vec<f64>,
}

/// Matches one scan. A candidate detects **every** lesion whose hit sphere
/// holds it; a lesion counts once, at the score of its best candidate;
/// candidates that hit some lesion are never false positives, even when
/// another candidate hit it first; candidates that hit none are false
/// positives.
fn match_scan(s: &ScanDetections, min_d: f64) -> ScanMatch {
    let mut lesion_best: Vec<Option<(f64, f64)>> = vec![None; s.lesions.len()];
    let mut fp_scores = Vec::new();
    for c in &s.candidates {
        let mut hit = false;
        for (l, best) in s.lesions.iter().zip(lesion_best.iter_mut()) {
            if l.is_hit_by(c.point, min_d) {
                hit = true;
                if best.is_none_or(|(sc, _)| c.score > sc) {
                    *best = Some((c.score, dist(c.point, l.centre)));
                }
            }
        }
        if !hit {
            fp_scores.push(c.score);
        }
    }
    ScanMatch {
        errors: lesion_best.iter().flatten().map(|(_, d)| *d).collect(),
        lesion_best: lesion_best.into_iter().map(|b| b.map(|(s, _)| s)).collect(),
        fp_scores,
    }
}

fn check(scans: &[ScanDetections], o: &FrocOptions) -> Result<()> {
    if scans.is_empty() {
        return Err(Error::Empty { what: "scans" });
    }
    if !(o.min_hit_distance_mm >= 0.0 && o.min_hit_distance_mm.is_finite()) {
        return Err(Error::InvalidArgument {
            reason: format!("min_hit_distance_mm = {}", o.min_hit_distance_mm),
        });
    }
    if let Some(r) = o.fp_rates.iter().find(|r| !(r.is_finite() && **r >= 0.0)) {
        return Err(Error::InvalidArgument {
            reason: format!("FP rate {r} must be finite and non-negative"),
        });
    }
    for s in scans {
        for c in &s.candidates {
            if !c.score.is_finite() || c.point.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite {
                    what: "candidate",
                    index: 0,
                    value: if c.score.is_finite() { f64::NAN } else { c.score },
                });
            }
        }
        for l in &s.lesions {
            if !(l.radius_mm >= 0.0 && l.radius_mm.is_finite()) || l.centre.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite {
                    what: "lesion",
                    index: 0,
                    value: l.radius_mm,
                });
            }
        }
    }
    Ok(())
}

/// The FROC analysis.
///
/// ```
/// use aneu_metrics::{Candidate, FrocOptions, Lesion, ScanDetections, froc};
/// let scan = ScanDetections {
///     candidates: vec![
///         Candidate { point: [0.5, 0.0, 0.0], score: 0.9 },   // hits the aneurysm
///         Candidate { point: [40.0, 0.0, 0.0], score: 0.8 },  // a false positive
///     ],
///     lesions: vec![Lesion { centre: [0.0, 0.0, 0.0], radius_mm: 3.0 }],
/// };
/// let f = froc(&[scan], &FrocOptions::default()).unwrap();
/// assert_eq!(f.sensitivity_at[3], (1.0, 1.0)); // at 1 FP/scan
/// assert_eq!(f.sensitivity_at[0], (0.125, 1.0)); // the hit scores higher than the FP
/// assert_eq!(f.localisation_errors_mm, vec![0.5]);
/// ```
///
/// # Errors
/// [`Error::Empty`] without scans; [`Error::NonFinite`];
/// [`Error::InvalidArgument`] for bad options; [`Error::SingleClass`] when
/// no scan holds a lesion.
pub fn froc(scans: &[ScanDetections], opts: &FrocOptions) -> Result<Froc> {
    check(scans, opts)?;
    let matches: Vec<ScanMatch> = scans.iter().map(|s| match_scan(s, opts.min_hit_distance_mm)).collect();
    let n_lesions: usize = scans.iter().map(|s| s.lesions.len()).sum();
    if n_lesions == 0 {
        return Err(Error::SingleClass {
            what: "FROC (no lesion in any scan)",
            class: 0,
        });
    }
    // events: (score, is_detection)
    let mut events: Vec<(f64, bool)> = Vec::new();
    for m in &matches {
        events.extend(m.lesion_best.iter().flatten().map(|&s| (s, true)));
        events.extend(m.fp_scores.iter().map(|&s| (s, false)));
    }
    events.sort_by(|a, b| b.0.total_cmp(&a.0));
    let n_scans = scans.len() as f64;
    let mut curve = Vec::new();
    let (mut tp, mut fp) = (0usize, 0usize);
    for (n, &(score, det)) in events.iter().enumerate() {
        if det {
            tp += 1;
        } else {
            fp += 1;
        }
        if n + 1 == events.len() || events[n + 1].0 != score {
            curve.push(FrocPoint {
                threshold: score,
                fp_per_scan: fp as f64 / n_scans,
                sensitivity: tp as f64 / n_lesions as f64,
            });
        }
    }
    let sensitivity_at: Vec<(f64, f64)> = opts
        .fp_rates
        .iter()
        .map(|&r| {
            let s = curve
                .iter()
                .filter(|p| p.fp_per_scan <= r)
                .map(|p| p.sensitivity)
                .fold(0.0, f64::max);
            (r, s)
        })
        .collect();
    let mean_sensitivity = if sensitivity_at.is_empty() {
        0.0
    } else {
        sensitivity_at.iter().map(|(_, s)| s).sum::<f64>() / sensitivity_at.len() as f64
    };
    Ok(Froc {
        curve,
        sensitivity_at,
        mean_sensitivity,
        lesions: n_lesions,
        scans: scans.len(),
        localisation_errors_mm: matches.into_iter().flat_map(|m| m.errors).collect(),
    })
}

//! Candidates on vessels: what the vessel head says about a candidate's
//! neighbourhood (how sure it is that the centre is an artery, how far the
//! centre lies from the artery wall, how wide the artery nearby is), and
//! the candidate rescorer: a logistic regression on those features and the
//! detector's own scores, fitted on labelled candidates.
//!
//! An aneurysm is a dome **on** an artery: its centre sits beside the
//! parent vessel's wall, or on a bifurcation; a thick straight segment (the
//! carotid siphon, the basilar artery) is wide but its peak lies on the
//! centreline. These features let the rescorer weigh that.

use aneu_bundle::Rescorer;
use serde::{Deserialize, Serialize};

use crate::predict::{Detection, TERRITORY_RADIUS};
use crate::{Error, Result};

/// What the vessel head says about a candidate's neighbourhood, averaged
/// over the members with a vessel head and the TTA passes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct VesselFeatures {
    /// The mean probability that a voxel is one of the 13 arteries (any
    /// vessel label but background), over the voxels within
    /// [`TERRITORY_RADIUS`] voxels of the centre.
    pub artery_probability: f64,
    /// The signed distance (mm) from the centre to the artery wall: to the
    /// nearest artery voxel when the centre is outside the arteries
    /// (positive), minus the distance to the nearest non-artery voxel when
    /// it is inside (negative). Voxel centres, `P(background) < 0.5`
    /// deciding which are artery; ± [`VesselFeatures::reach_mm`] when the
    /// patch holds no voxel of the other kind.
    pub wall_mm: f64,
    /// The radius (mm) of the widest artery near the centre: the largest
    /// distance from an artery voxel within [`LOCAL_RADIUS_MM`] of the
    /// centre to its nearest non-artery voxel; 0 when none is that near.
    pub vessel_radius_mm: f64,
}

/// Artery voxels within this distance (mm) of a candidate's centre decide
/// its [`VesselFeatures::vessel_radius_mm`].
pub const LOCAL_RADIUS_MM: f64 = 3.0;

/// The features a [`Rescorer`] fitted by aneu reads, in order:
///
/// - `score_logit`: the candidate's score before rescoring (the second
///   stage's probability when the bundle has one, else the first stage's
///   score), as a logit;
/// - `peak_logit`: the probability map's value at the peak, as a logit;
/// - `patch_logit`: the first stage's `Aneurysm Present` head on a patch
///   centred on the candidate, as a logit;
/// - `artery_probability`, `wall_mm`, `vessel_radius_mm`:
///   [`VesselFeatures`].
pub const FEATURE_NAMES: [&str; 6] = [
    "score_logit",
    "peak_logit",
    "patch_logit",
    "artery_probability",
    "wall_mm",
    "vessel_radius_mm",
];

impl VesselFeatures {
    /// The value [`VesselFeatures::wall_mm`] takes when the patch holds no
    /// voxel of the other kind: half the patch edge along its finest axis.
    pub fn reach_mm(p: usize, spacing_kji: [f64; 3]) -> f64 {
        (p / 2) as f64 * spacing_kji.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The features of one patch from the vessel head's probabilities
    /// `probs` (`[classes, p, p, p]`; only class 0, background, is read), on a grid of
    /// `spacing_kji` mm (along k, j, i). The centre is voxel `p / 2` on
    /// every axis, where the patch's candidate lies.
    pub fn of_patch(probs: &[f32], p: usize, spacing_kji: [f64; 3]) -> Self {
        let voxels = p * p * p;
        let c = p / 2;
        let at = |k: usize, j: usize, i: usize| (k * p + j) * p + i;
        let artery: Vec<bool> = (0..voxels).map(|v| probs[v] < 0.5).collect();
        let reach = Self::reach_mm(p, spacing_kji);
        let distance = |sq: f64| if sq < FAR { sq.sqrt() } else { reach };
        // every voxel's distance to the nearest artery / non-artery voxel
        let to_artery = squared_distance_transform(&artery, p, spacing_kji);
        let background: Vec<bool> = artery.iter().map(|a| !a).collect();
        let to_background = squared_distance_transform(&background, p, spacing_kji);
        let centre = at(c, c, c);
        let wall_mm = if artery[centre] {
            -distance(to_background[centre])
        } else {
            distance(to_artery[centre])
        };
        // the squared distance from the centre, in mm (`s` the spacing) or voxels
        let from_centre = |v: usize, s: [f64; 3]| -> f64 {
            [v / (p * p), (v / p) % p, v % p]
                .iter()
                .zip(s)
                .map(|(x, s)| ((*x as f64 - c as f64) * s).powi(2))
                .sum()
        };
        let vessel_radius_mm = (0..voxels)
            .filter(|&v| artery[v] && from_centre(v, spacing_kji) <= LOCAL_RADIUS_MM * LOCAL_RADIUS_MM)
            .map(|v| distance(to_background[v]))
            .fold(0.0, f64::max);
        let near: Vec<usize> = (0..voxels)
            .filter(|&v| from_centre(v, [1.0; 3]) <= TERRITORY_RADIUS * TERRITORY_RADIUS)
            .collect();
        let sum: f64 = near.iter().map(|&v| 1.0 - f64::from(probs[v])).sum();
        VesselFeatures {
            artery_probability: sum / near.len().max(1) as f64,
            wall_mm,
            vessel_radius_mm,
        }
    }

    /// The mean of several patches' features (members and TTA passes).
    pub fn mean(all: &[VesselFeatures]) -> Option<VesselFeatures> {
        let n = all.len() as f64;
        (!all.is_empty()).then(|| VesselFeatures {
            artery_probability: all.iter().map(|f| f.artery_probability).sum::<f64>() / n,
            wall_mm: all.iter().map(|f| f.wall_mm).sum::<f64>() / n,
            vessel_radius_mm: all.iter().map(|f| f.vessel_radius_mm).sum::<f64>() / n,
        })
    }
}

/// A squared distance at least this large means "no such voxel".
const FAR: f64 = 1e20;

/// The squared distance (mm²) from every voxel of a `p³` patch
/// (`[k, j, i]`, spacing `spacing_kji` mm) to the nearest voxel where
/// `feature` holds, between voxel centres: the exact Euclidean distance
/// transform by lower envelopes of parabolas along each axis in turn
/// (Felzenszwalb and Huttenlocher 2012). [`FAR`] or more where the patch
/// holds no feature voxel.
pub(crate) fn squared_distance_transform(feature: &[bool], p: usize, spacing_kji: [f64; 3]) -> Vec<f64> {
    let mut d: Vec<f64> = feature.iter().map(|f| if *f { 0.0 } else { FAR }).collect();
    let strides = [p * p, p, 1];
    let mut line = vec![0.0; p];
    let mut out = vec![0.0; p];
    for axis in 0..3 {
        let stride = strides[axis];
        let others: Vec<usize> = (0..3).filter(|a| *a != axis).map(|a| strides[a]).collect();
        for a in 0..p {
            for b in 0..p {
                let base = a * others[0] + b * others[1];
                for (x, l) in line.iter_mut().enumerate() {
                    *l = d[base + x * stride];
                }
                lower_envelope(&line, spacing_kji[axis], &mut out);
                for (x, o) in out.iter().enumerate() {
                    d[base + x * stride] = *o;
                }
            }
        }
    }
    d
}

/// One axis of [`squared_distance_transform`]: `out[q] = min_x (s·(q − x))²
/// + f[x]`.
fn lower_envelope(f: &[f64], s: f64, out: &mut [f64]) {
    let n = f.len();
    let pos = |x: usize| x as f64 * s;
    // the parabolas of the envelope (their roots) and where each begins
    let mut v = vec![0usize; n];
    let mut z = vec![0f64; n + 1];
    let mut k = 0usize;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    let cross =
        |q: usize, r: usize| ((f[q] + pos(q) * pos(q)) - (f[r] + pos(r) * pos(r))) / (2.0 * pos(q) - 2.0 * pos(r));
    for q in 1..n {
        let mut sx = cross(q, v[k]);
        while sx <= z[k] {
            k -= 1;
            sx = cross(q, v[k]);
        }
        k += 1;
        v[k] = q;
        z[k] = sx;
        z[k + 1] = f64::INFINITY;
    }
    k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < pos(q) {
            k += 1;
        }
        *o = (pos(q) - pos(v[k])).powi(2) + f[v[k]];
    }
}

/// A probability as a logit, clamped to `[1e-6, 1 − 1e-6]` first so that
/// a saturated score stays finite.
pub fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// A candidate's [`FEATURE_NAMES`] vector, from its scores before
/// rescoring (`score`, the second stage's or the first stage's) and its
/// [`Detection::vessel`] features; `None` without them (no vessel head).
pub fn candidate_features(d: &Detection, score: f64) -> Option<[f64; 6]> {
    let v = d.vessel?;
    Some([
        logit(score),
        logit(d.peak),
        logit(d.patch_score),
        v.artery_probability,
        v.wall_mm,
        v.vessel_radius_mm,
    ])
}

/// Checks that a rescorer reads exactly the features inference computes
/// ([`FEATURE_NAMES`]).
///
/// # Errors
/// [`Error::InvalidConfig`] naming the mismatch.
pub fn check_rescorer(r: &Rescorer) -> Result<()> {
    r.validate().map_err(Error::InvalidConfig)?;
    if r.features.iter().map(String::as_str).ne(FEATURE_NAMES) {
        return Err(Error::InvalidConfig(format!(
            "the rescorer reads features {:?}; this aneu computes {FEATURE_NAMES:?}",
            r.features
        )));
    }
    Ok(())
}

/// How [`fit_logistic`] fits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RescorerOptions {
    /// The L2 penalty on the standardised weights (not on the intercept):
    /// the loss is the summed log loss plus `l2 / 2 · Σ w²`.
    pub l2: f64,
    /// A candidate within this distance (mm) of an aneurysm's centre hits
    /// it (the FROC rule with aneurysms of unknown size).
    pub hit_radius_mm: f64,
}

impl Default for RescorerOptions {
    fn default() -> Self {
        Self {
            l2: 1.0,
            hit_radius_mm: 3.0,
        }
    }
}

/// Fits a [`Rescorer`] (features standardised, L2-penalised logistic
/// regression, Newton's method) to feature rows `x` and labels `y`.
///
/// ```
/// use aneu_infer::fit_logistic;
/// // the label follows the first feature; the second is noise
/// let x: Vec<Vec<f64>> = (0..40).map(|n| vec![n as f64, ((n * 7) % 5) as f64]).collect();
/// let y: Vec<bool> = (0..40).map(|n| n >= 20).collect();
/// let r = fit_logistic(&["a", "b"], &x, &y, 0.1)?;
/// assert!(r.weights[0] > 1.0 && r.weights[1].abs() < r.weights[0] / 4.0);
/// assert!(r.probability(&[35.0, 1.0]) > 0.9 && r.probability(&[5.0, 1.0]) < 0.1);
/// # Ok::<(), aneu_infer::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidConfig`] when the rows are empty, of the wrong width or
/// not finite, hold one class only, or `l2` is not positive.
pub fn fit_logistic(names: &[&str], x: &[Vec<f64>], y: &[bool], l2: f64) -> Result<Rescorer> {
    let d = names.len();
    let bad = |m: String| Err(Error::InvalidConfig(m));
    check_rows(x, y.len(), d)?;
    let positives = y.iter().filter(|b| **b).count();
    if positives == 0 || positives == y.len() {
        return bad(format!(
            "{positives} of {} candidates hit an aneurysm: one class only",
            y.len()
        ));
    }
    if !(l2 > 0.0 && l2.is_finite()) {
        return bad(format!("the L2 penalty must be positive, got {l2}"));
    }
    let (mean, scale, z) = standardise(x, d);
    // θ = [bias, w…]; Newton steps on the penalised log loss (strictly
    // convex, so it converges from 0)
    let m = d + 1;
    let mut theta = vec![0.0; m];
    for _ in 0..100 {
        let mut grad = vec![0.0; m];
        let mut hess = vec![vec![0.0; m]; m];
        for (zi, &yi) in z.iter().zip(y) {
            let t: f64 = zi.iter().zip(&theta).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-t).exp());
            let r = p - f64::from(u8::from(yi));
            let w = (p * (1.0 - p)).max(1e-12);
            for ((g, h), za) in grad.iter_mut().zip(hess.iter_mut()).zip(zi) {
                *g += r * za;
                h.iter_mut().zip(zi).for_each(|(h, zb)| *h += w * za * zb);
            }
        }
        // the penalty leaves the intercept (index 0) alone
        for a in 1..m {
            grad[a] += l2 * theta[a];
            hess[a][a] += l2;
        }
        let step = solve(hess, grad).ok_or_else(|| Error::InvalidConfig("a singular Hessian".into()))?;
        theta.iter_mut().zip(&step).for_each(|(t, s)| *t -= s);
        if step.iter().map(|s| s.abs()).fold(0.0, f64::max) < 1e-10 {
            break;
        }
    }
    let r = Rescorer {
        features: names.iter().map(|s| s.to_string()).collect(),
        mean,
        scale,
        weights: theta[1..].to_vec(),
        bias: theta[0],
        fitted_on: x.len(),
        positives,
    };
    r.validate().map_err(Error::InvalidConfig)?;
    Ok(r)
}

/// Checks a fit's feature rows: at least one, one per label (`labels`),
/// each of `d` finite values.
///
/// # Errors
/// [`Error::InvalidConfig`] saying which.
pub(crate) fn check_rows(x: &[Vec<f64>], labels: usize, d: usize) -> Result<()> {
    if x.is_empty() || x.len() != labels || x.iter().any(|r| r.len() != d) {
        return Err(Error::InvalidConfig(format!(
            "{} rows of {d} features and {labels} labels",
            x.len()
        )));
    }
    if x.iter().flatten().any(|v| !v.is_finite()) {
        return Err(Error::InvalidConfig("a feature is not finite".into()));
    }
    Ok(())
}

/// Each of the `d` features' mean and standard deviation over the rows
/// (1 where it is 0), and the rows standardised, each with a leading 1 for
/// the intercept.
pub(crate) fn standardise(x: &[Vec<f64>], d: usize) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
    let n = x.len() as f64;
    let mean: Vec<f64> = (0..d).map(|f| x.iter().map(|r| r[f]).sum::<f64>() / n).collect();
    let scale: Vec<f64> = (0..d)
        .map(|f| {
            let s = (x.iter().map(|r| (r[f] - mean[f]).powi(2)).sum::<f64>() / n).sqrt();
            if s > 1e-12 { s } else { 1.0 }
        })
        .collect();
    let z: Vec<Vec<f64>> = x
        .iter()
        .map(|r| {
            let mut v = vec![1.0];
            v.extend((0..d).map(|f| (r[f] - mean[f]) / scale[f]));
            v
        })
        .collect();
    (mean, scale, z)
}

/// Solves `a · s = b` by Gaussian elimination with partial pivoting;
/// `None` when `a` is singular.
pub(crate) fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let piv = (col..n).max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))?;
        if a[piv][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        let (top, bottom) = a.split_at_mut(col + 1);
        let pivot = &top[col];
        for (r, row) in bottom.iter_mut().enumerate() {
            let f = row[col] / pivot[col];
            row[col..].iter_mut().zip(&pivot[col..]).for_each(|(x, p)| *x -= f * p);
            b[col + 1 + r] -= f * b[col];
        }
    }
    let mut s = vec![0.0; n];
    for row in (0..n).rev() {
        let t: f64 = (row + 1..n).map(|c| a[row][c] * s[c]).sum();
        s[row] = (b[row] - t) / a[row][row];
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probabilities of a patch where `artery(k, j, i)` voxels are artery
    /// (P(background) 0) and the rest background (1).
    fn patch(p: usize, artery: impl Fn(f64, f64, f64) -> bool) -> Vec<f32> {
        let classes = 2;
        let mut probs = vec![0f32; classes * p * p * p];
        for k in 0..p {
            for j in 0..p {
                for i in 0..p {
                    let v = (k * p + j) * p + i;
                    let a = artery(k as f64, j as f64, i as f64);
                    probs[v] = if a { 0.0 } else { 1.0 };
                    probs[p * p * p + v] = if a { 1.0 } else { 0.0 };
                }
            }
        }
        probs
    }

    /// A straight tube along i through the centre: the wall distance and
    /// the radius are the distance from the axis to the nearest lattice
    /// point outside the tube; off the tube, the distance to its nearest
    /// voxel, and the radius of the edge voxels within 3 mm.
    #[test]
    fn a_tube_gives_its_radius_and_wall_distance() {
        let p = 16;
        let c = 8.0;
        // radius 3 voxels: the nearest lattice point outside is (3, 1), at √10
        let tube = patch(p, |k, j, _| (k - c).powi(2) + (j - c).powi(2) <= 9.0);
        let f = VesselFeatures::of_patch(&tube, p, [1.0; 3]);
        assert!((f.wall_mm + 10f64.sqrt()).abs() < 1e-12, "{f:?}");
        assert!((f.vessel_radius_mm - 10f64.sqrt()).abs() < 1e-12, "{f:?}");
        assert!((f.artery_probability - 1.0).abs() < 1e-12);
        // the same tube 6 voxels away along j: its nearest voxel at 3 voxels
        // (k = c, j = c − 3); within 3 mm only that edge voxel, 1 voxel from
        // the background
        let away = patch(p, |k, j, _| (k - c).powi(2) + (j - c + 6.0).powi(2) <= 9.0);
        let f = VesselFeatures::of_patch(&away, p, [1.0; 3]);
        assert!((f.wall_mm - 3.0).abs() < 1e-12, "{f:?}");
        assert!((f.vessel_radius_mm - 1.0).abs() < 1e-12, "{f:?}");
        assert_eq!(f.artery_probability, 0.0);
        // 2 mm slices along k: distances along k double
        let f = VesselFeatures::of_patch(&away, p, [2.0, 1.0, 1.0]);
        assert!((f.wall_mm - 3.0).abs() < 1e-12, "{f:?}");
        let above = patch(p, |k, j, _| (k - c + 5.0).powi(2) + (j - c).powi(2) <= 4.0);
        let f = VesselFeatures::of_patch(&above, p, [2.0, 1.0, 1.0]);
        // nearest tube voxel: k = c − 3, at 3 slices of 2 mm
        assert!((f.wall_mm - 6.0).abs() < 1e-12, "{f:?}");
        // no artery at all: the reach, and no radius
        let none = patch(p, |_, _, _| false);
        let f = VesselFeatures::of_patch(&none, p, [1.0; 3]);
        assert_eq!((f.wall_mm, f.vessel_radius_mm), (8.0, 0.0));
    }

    /// The distance transform equals the brute-force nearest voxel, on
    /// random masks and anisotropic spacings, and is FAR without features.
    #[test]
    fn the_distance_transform_is_exact() {
        let p = 9;
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f64 / (1u64 << 31) as f64
        };
        for (density, spacing) in [(0.05, [1.0, 1.0, 1.0]), (0.3, [2.5, 0.7, 1.1]), (0.01, [0.5, 3.0, 1.0])] {
            let feature: Vec<bool> = (0..p * p * p).map(|_| next() < density).collect();
            let d = squared_distance_transform(&feature, p, spacing);
            let kji = |v: usize| [v / (p * p), (v / p) % p, v % p];
            for (v, dv) in d.iter().enumerate() {
                let a = kji(v);
                let brute = (0..p * p * p)
                    .filter(|&u| feature[u])
                    .map(|u| {
                        let b = kji(u);
                        (0..3)
                            .map(|x| ((a[x] as f64 - b[x] as f64) * spacing[x]).powi(2))
                            .sum::<f64>()
                    })
                    .fold(f64::INFINITY, f64::min);
                if brute.is_finite() {
                    assert!((dv - brute).abs() < 1e-9, "voxel {a:?}: {dv} vs {brute}");
                } else {
                    assert!(*dv >= FAR);
                }
            }
        }
        assert!(
            squared_distance_transform(&[false; 27], 3, [1.0; 3])
                .iter()
                .all(|v| *v >= FAR)
        );
    }

    /// At the fit the penalised log loss is stationary: its gradient is 0.
    #[test]
    fn the_fit_is_the_penalised_optimum() {
        let x: Vec<Vec<f64>> = (0..60)
            .map(|n| {
                let a = ((n * 37) % 17) as f64 / 4.0;
                vec![a, ((n * 11) % 7) as f64 - 3.0, 5.0]
            })
            .collect();
        let y: Vec<bool> = (0..60).map(|n| (n * 37) % 17 + (n % 3) * 4 > 10).collect();
        let l2 = 0.5;
        let r = fit_logistic(&["a", "b", "c"], &x, &y, l2).unwrap();
        // a constant feature keeps scale 1 and a zero weight
        assert_eq!(r.scale[2], 1.0);
        assert!(r.weights[2].abs() < 1e-9);
        let mut grad = [0.0; 4];
        for (row, &label) in x.iter().zip(&y) {
            let res = r.probability(row) - f64::from(u8::from(label));
            grad[0] += res;
            for f in 0..3 {
                grad[f + 1] += res * (row[f] - r.mean[f]) / r.scale[f];
            }
        }
        for f in 0..3 {
            grad[f + 1] += l2 * r.weights[f];
        }
        assert!(grad.iter().all(|g| g.abs() < 1e-8), "{grad:?}");
        // one class only, ragged rows and NaN are errors
        assert!(fit_logistic(&["a", "b", "c"], &x, &[true; 60], l2).is_err());
        assert!(fit_logistic(&["a"], &x, &y, l2).is_err());
        let mut nan = x.clone();
        nan[3][1] = f64::NAN;
        assert!(fit_logistic(&["a", "b", "c"], &nan, &y, l2).is_err());
    }

    #[test]
    fn rescorers_must_read_the_computed_features() {
        let mut r = Rescorer {
            features: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
            mean: vec![0.0; 6],
            scale: vec![1.0; 6],
            weights: vec![0.0; 6],
            bias: 0.0,
            fitted_on: 1,
            positives: 1,
        };
        assert!(check_rescorer(&r).is_ok());
        r.features.swap(0, 1);
        assert!(check_rescorer(&r).is_err());
    }
}

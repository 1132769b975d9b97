//! Naming a candidate's location: the candidate locator.
//!
//! The vessel head says which arteries lie around a candidate (its
//! [`territory`](crate::territory)), but it calls most domes the
//! supraclinoid ICA, the widest bright artery near them, whatever artery
//! they sit on (docs/benchmarks.md, "Left and right from the midline"). Where a
//! candidate lies in the head says more: an AComm aneurysm sits on the
//! midline in front, a basilar tip one on the midline behind, an MCA one far
//! to the side. A [`Locator`] (a multinomial logistic regression fitted at
//! calibration, [`fit_locator`](crate::fit_locator)) reads both, the
//! territory's eight arteries and the candidate's offset from the centre of
//! the brain mask, and names one of eight arteries ([`LOCATOR_CLASSES`]);
//! the side of a lateral one is that of the candidate, from the midline
//! through the same centre ([`Midline`]).

use aneu_bundle::Locator;
use aneu_io::{Location, WorldPoint};

use crate::rescore::{check_rows, solve, standardise};
use crate::sides::Midline;
use crate::{Error, Result};

/// The arteries a [`Locator`] fitted by aneu names, in order: each
/// lateral artery by its right-side location, standing for both sides
/// (the candidate's side decides which, [`locate`]).
pub const LOCATOR_CLASSES: [Location; 8] = [
    Location::RightInfraclinoidIca,
    Location::RightSupraclinoidIca,
    Location::RightMca,
    Location::AcomA,
    Location::RightAca,
    Location::RightPcomA,
    Location::BasilarTip,
    Location::OtherPosterior,
];

/// The features a [`Locator`] fitted by aneu reads, in order:
///
/// - `territory_*`: the candidate's territory (the vessel head's
///   probabilities around it, [`crate::territory`]) summed over each of
///   the [`LOCATOR_CLASSES`]' arteries, both sides together;
/// - `lateral_mm`: the distance (mm) from the midsagittal plane through the
///   brain mask's centroid ([`mask_centre`](crate::mask_centre));
/// - `anterior_mm`, `superior_mm`: the offset (mm, RAS) from that centroid
///   towards the face and the vertex.
pub const LOCATOR_FEATURES: [&str; 11] = [
    "territory_infraclinoid_ica",
    "territory_supraclinoid_ica",
    "territory_mca",
    "territory_acom",
    "territory_aca",
    "territory_pcom",
    "territory_basilar_tip",
    "territory_other_posterior",
    "lateral_mm",
    "anterior_mm",
    "superior_mm",
];

/// The index in [`LOCATOR_CLASSES`] of a location's artery, either side.
///
/// ```
/// use aneu_infer::{LOCATOR_CLASSES, locator_class};
/// use aneu_io::Location;
/// assert_eq!(LOCATOR_CLASSES[locator_class(Location::LeftMca)], Location::RightMca);
/// assert_eq!(locator_class(Location::LeftMca), locator_class(Location::RightMca));
/// ```
pub fn locator_class(l: Location) -> usize {
    use Location::*;
    match l {
        LeftInfraclinoidIca | RightInfraclinoidIca => 0,
        LeftSupraclinoidIca | RightSupraclinoidIca => 1,
        LeftMca | RightMca => 2,
        AcomA => 3,
        LeftAca | RightAca => 4,
        LeftPcomA | RightPcomA => 5,
        BasilarTip => 6,
        OtherPosterior => 7,
    }
}

/// A candidate's [`LOCATOR_FEATURES`] vector, from its territory (the 13
/// shares in [`Location::ALL`] order; the side they were folded onto does
/// not matter), its centre `world` and the brain mask's centre `centre`.
///
/// ```
/// use aneu_infer::locator_features;
/// use aneu_io::{Location, WorldPoint};
/// let mut t = [0.0; 13];
/// t[Location::LeftMca.index()] = 0.25;
/// t[Location::RightMca.index()] = 0.5;
/// let x = locator_features(&t, WorldPoint::new(-30.0, 5.0, -2.0), WorldPoint::new(1.0, 0.0, 0.0));
/// assert_eq!(x[2], 0.75); // territory_mca, both sides
/// assert_eq!(&x[8..], &[31.0, 5.0, -2.0]);
/// ```
pub fn locator_features(territory: &[f64; 13], world: WorldPoint, centre: WorldPoint) -> [f64; 11] {
    let mut x = [0.0; 11];
    for l in Location::ALL {
        x[locator_class(l)] += territory[l.index()];
    }
    x[8..].copy_from_slice(&offsets_mm(world, centre));
    x
}

/// A point's place in the head: its distance (mm) from the midsagittal
/// plane through `centre` (the brain mask's centroid), and its offsets
/// (mm, RAS) from `centre` towards the face and the vertex.
pub(crate) fn offsets_mm(world: WorldPoint, centre: WorldPoint) -> [f64; 3] {
    [(world.x - centre.x).abs(), world.y - centre.y, world.z - centre.z]
}

/// The 13 location probabilities (in [`Location::ALL`] order) of a
/// candidate at `world` with this territory: the locator's probability of
/// each of the [`LOCATOR_CLASSES`], a lateral one given to its artery on
/// the candidate's side of the midline through `centre`, the other side's
/// 0. They sum to 1. Check the locator first ([`check_locator`]).
pub fn locate(locator: &Locator, territory: &[f64; 13], world: WorldPoint, centre: WorldPoint) -> [f64; 13] {
    let p = locator.probabilities(&locator_features(territory, world, centre));
    let right = Midline { x_mm: centre.x }.is_right(world);
    let mut out = [0.0; 13];
    for (c, p) in LOCATOR_CLASSES.iter().zip(p) {
        out[c.on_side(right).index()] = p;
    }
    out
}

/// Checks that a locator reads exactly the features inference computes
/// ([`LOCATOR_FEATURES`]) and names exactly the [`LOCATOR_CLASSES`].
///
/// # Errors
/// [`Error::InvalidConfig`] naming the mismatch.
pub fn check_locator(l: &Locator) -> Result<()> {
    check_names(l, "locator", &LOCATOR_FEATURES, &LOCATOR_CLASSES.map(Location::name))
}

/// Checks that `l` (the `what`) is valid, reads exactly `features` and
/// names exactly `classes`.
pub(crate) fn check_names(l: &Locator, what: &str, features: &[&str], classes: &[&str]) -> Result<()> {
    l.validate().map_err(Error::InvalidConfig)?;
    if l.features.iter().map(String::as_str).ne(features.iter().copied()) {
        return Err(Error::InvalidConfig(format!(
            "the {what} reads features {:?}; this aneu computes {features:?}",
            l.features
        )));
    }
    if l.classes.iter().map(String::as_str).ne(classes.iter().copied()) {
        return Err(Error::InvalidConfig(format!(
            "the {what} names classes {:?}; this aneu names {classes:?}",
            l.classes
        )));
    }
    Ok(())
}

/// The penalty on the intercepts of [`fit_softmax`], relative to the one
/// on the weights: small, so that a class no row holds keeps a finite
/// intercept (a low probability, not −∞).
const INTERCEPT_L2_SHARE: f64 = 1e-3;

/// Fits a [`Locator`] (features standardised, L2-penalised multinomial
/// logistic regression, Newton's method with a backtracking line search)
/// to feature rows `x` and class indices `y` (into `classes`). The loss is
/// the summed log loss plus `l2 / 2 · Σ w²` over the weights and
/// `l2 · 10⁻³ / 2 · Σ b²` over the intercepts, strictly convex, so a class
/// that no row holds keeps a finite intercept and a low probability.
///
/// ```
/// use aneu_infer::fit_softmax;
/// // three classes along the first feature; the second is noise
/// let x: Vec<Vec<f64>> = (0..60).map(|n| vec![(n / 20) as f64 * 3.0 + (n % 5) as f64 * 0.2, ((n * 7) % 5) as f64]).collect();
/// let y: Vec<usize> = (0..60).map(|n| n / 20).collect();
/// let l = fit_softmax(&["a", "b"], &["x", "y", "z"], &x, &y, 0.1)?;
/// assert!(l.probabilities(&[0.4, 2.0])[0] > 0.9 && l.probabilities(&[6.4, 2.0])[2] > 0.9);
/// # Ok::<(), aneu_infer::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidConfig`] when the rows are empty, of the wrong width or
/// not finite, a class index is out of range, the rows hold fewer than two
/// classes, or `l2` is not positive.
pub fn fit_softmax(names: &[&str], classes: &[&str], x: &[Vec<f64>], y: &[usize], l2: f64) -> Result<Locator> {
    let (d, k) = (names.len(), classes.len());
    let bad = |m: String| Err(Error::InvalidConfig(m));
    check_rows(x, y.len(), d)?;
    if let Some(c) = y.iter().find(|c| **c >= k) {
        return bad(format!("class {c} of {k}"));
    }
    let mut seen = vec![false; k];
    y.iter().for_each(|c| seen[*c] = true);
    if seen.iter().filter(|s| **s).count() < 2 {
        return bad(format!("the {} rows hold fewer than two classes", y.len()));
    }
    if !(l2 > 0.0 && l2.is_finite()) {
        return bad(format!("the L2 penalty must be positive, got {l2}"));
    }
    let (mean, scale, z) = standardise(x, d);
    // θ[c · m + j]: class c's intercept (j = 0) and weights (j ≥ 1)
    let m = d + 1;
    let penalty: Vec<f64> = (0..m)
        .map(|j| if j == 0 { l2 * INTERCEPT_L2_SHARE } else { l2 })
        .collect();
    let probs = |theta: &[f64], zi: &[f64]| -> Vec<f64> {
        let logits: Vec<f64> = (0..k)
            .map(|c| zi.iter().zip(&theta[c * m..(c + 1) * m]).map(|(a, b)| a * b).sum())
            .collect();
        let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - top).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect()
    };
    let loss = |theta: &[f64]| -> f64 {
        let data: f64 = z
            .iter()
            .zip(y)
            .map(|(zi, &yi)| -probs(theta, zi)[yi].max(1e-300).ln())
            .sum();
        data + 0.5
            * theta
                .iter()
                .enumerate()
                .map(|(a, t)| penalty[a % m] * t * t)
                .sum::<f64>()
    };
    let mut theta = vec![0.0; k * m];
    for _ in 0..100 {
        let mut grad = vec![0.0; k * m];
        let mut hess = vec![vec![0.0; k * m]; k * m];
        for (zi, &yi) in z.iter().zip(y) {
            let p = probs(&theta, zi);
            for c in 0..k {
                let r = p[c] - f64::from(u8::from(c == yi));
                for a in 0..m {
                    grad[c * m + a] += r * zi[a];
                }
                for c2 in 0..k {
                    let w = p[c] * (f64::from(u8::from(c == c2)) - p[c2]);
                    for a in 0..m {
                        let row = &mut hess[c * m + a];
                        for b in 0..m {
                            row[c2 * m + b] += w * zi[a] * zi[b];
                        }
                    }
                }
            }
        }
        for a in 0..k * m {
            grad[a] += penalty[a % m] * theta[a];
            hess[a][a] += penalty[a % m];
        }
        let step = solve(hess, grad.clone()).ok_or_else(|| Error::InvalidConfig("a singular Hessian".into()))?;
        // backtracking (Armijo): a full Newton step can overshoot far from
        // the optimum
        let (before, slope) = (loss(&theta), grad.iter().zip(&step).map(|(g, s)| g * s).sum::<f64>());
        let mut t = 1.0;
        let mut next: Vec<f64> = theta.iter().zip(&step).map(|(a, s)| a - s).collect();
        while loss(&next) > before - 1e-4 * t * slope && t > 1e-8 {
            t /= 2.0;
            next = theta.iter().zip(&step).map(|(a, s)| a - t * s).collect();
        }
        theta = next;
        if step.iter().map(|s| (t * s).abs()).fold(0.0, f64::max) < 1e-10 {
            break;
        }
    }
    let l = Locator {
        features: names.iter().map(|s| s.to_string()).collect(),
        classes: classes.iter().map(|s| s.to_string()).collect(),
        mean,
        scale,
        weights: (0..k).map(|c| theta[c * m + 1..(c + 1) * m].to_vec()).collect(),
        bias: (0..k).map(|c| theta[c * m]).collect(),
        fitted_on: x.len(),
    };
    l.validate().map_err(Error::InvalidConfig)?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every location's class holds it: on either side, the class's
    /// location is the location itself.
    #[test]
    fn every_location_has_its_class() {
        for l in Location::ALL {
            let c = LOCATOR_CLASSES[locator_class(l)];
            let right = c.on_side(false) != l;
            assert_eq!(c.on_side(right), l, "{l:?}");
        }
    }

    /// At the fit, the penalised log loss is stationary: its gradient is 0;
    /// a class that no row holds gets a finite, low probability.
    #[test]
    fn the_fit_is_the_penalised_optimum() {
        let x: Vec<Vec<f64>> = (0..90)
            .map(|n| vec![((n * 37) % 17) as f64 / 4.0, ((n * 11) % 7) as f64 - 3.0, 5.0])
            .collect();
        let y: Vec<usize> = (0..90).map(|n| ((n * 37) % 17 / 6 + n % 2) % 3).collect();
        let l2 = 0.5;
        let l = fit_softmax(&["a", "b", "c"], &["p", "q", "r", "never"], &x, &y, l2).unwrap();
        // a constant feature keeps scale 1 and zero weights
        assert_eq!(l.scale[2], 1.0);
        assert!(l.weights.iter().all(|w| w[2].abs() < 1e-9));
        let mut grad = vec![[0.0; 4]; 4];
        for (row, &c) in x.iter().zip(&y) {
            let p = l.probabilities(row);
            for (k, g) in grad.iter_mut().enumerate() {
                let r = p[k] - f64::from(u8::from(k == c));
                g[0] += r;
                for f in 0..3 {
                    g[f + 1] += r * (row[f] - l.mean[f]) / l.scale[f];
                }
            }
        }
        for (k, g) in grad.iter_mut().enumerate() {
            g[0] += l2 * INTERCEPT_L2_SHARE * l.bias[k];
            for f in 0..3 {
                g[f + 1] += l2 * l.weights[k][f];
            }
        }
        assert!(grad.iter().flatten().all(|g| g.abs() < 1e-7), "{grad:?}");
        let never = l.probabilities(&x[0])[3];
        assert!(never > 0.0 && never < 0.02, "{never}");
        // one class only, out-of-range classes, ragged rows and NaN are errors
        assert!(fit_softmax(&["a", "b", "c"], &["p", "q"], &x, &[0; 90], l2).is_err());
        assert!(fit_softmax(&["a", "b", "c"], &["p", "q"], &x, &y, l2).is_err());
        assert!(fit_softmax(&["a"], &["p", "q", "r"], &x, &y, l2).is_err());
        let mut nan = x.clone();
        nan[3][1] = f64::NAN;
        assert!(fit_softmax(&["a", "b", "c"], &["p", "q", "r"], &nan, &y, l2).is_err());
    }

    /// The locator's class goes to the candidate's side: a lateral class to
    /// the artery on the side of the midline through the centre, a midline
    /// class to itself; the 13 sum to 1.
    #[test]
    fn locations_take_the_candidates_side() {
        let mut weights = vec![vec![0.0; 11]; 8];
        // the MCA class grows with lateral_mm, the AComm class shrinks
        weights[locator_class(Location::LeftMca)][8] = 3.0;
        weights[locator_class(Location::AcomA)][8] = -3.0;
        let mut l = Locator {
            features: LOCATOR_FEATURES.map(String::from).to_vec(),
            classes: LOCATOR_CLASSES.map(|c| c.name().to_string()).to_vec(),
            mean: vec![0.0; 11],
            scale: vec![1.0; 11],
            weights,
            bias: vec![0.0; 8],
            fitted_on: 1,
        };
        l.bias[locator_class(Location::AcomA)] = 2.0;
        check_locator(&l).unwrap();
        let centre = WorldPoint::new(10.0, 0.0, 0.0);
        let t = [1.0 / 13.0; 13];
        let left = locate(&l, &t, WorldPoint::new(-20.0, 0.0, 0.0), centre);
        assert!((left.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(left[Location::LeftMca.index()] > 0.99 && left[Location::RightMca.index()] == 0.0);
        let right = locate(&l, &t, WorldPoint::new(40.0, 0.0, 0.0), centre);
        assert!(right[Location::RightMca.index()] > 0.99 && right[Location::LeftMca.index()] == 0.0);
        let mid = locate(&l, &t, WorldPoint::new(10.0, 0.0, 0.0), centre);
        assert!(mid[Location::AcomA.index()] > 0.5, "{mid:?}");
        // a locator of other features or classes is refused
        let mut other = l.clone();
        other.features.swap(0, 1);
        assert!(check_locator(&other).is_err());
        let mut other = l.clone();
        other.classes.swap(0, 1);
        assert!(check_locator(&other).is_err());
    }
}

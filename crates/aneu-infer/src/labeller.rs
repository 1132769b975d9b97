//! Naming the vessels: the artery labeller.
//!
//! The vessel head finds the vessels far better than it names them: on the
//! detection benchmark its map scores a vessel Dice of 0.73 and an artery
//! Dice of 0.43, and it never names a communicating artery
//! (docs/benchmarks.md). Where a vessel voxel lies in the head says much
//! of which artery it is: the basilar artery runs on the midline behind,
//! the MCAs far to the sides, the ACAs near the midline in front. An
//! artery labeller (a [`Locator`], the multinomial logistic regression of
//! the candidate locator, fitted at calibration by
//! [`fit_artery_labeller`](crate::fit_artery_labeller) on series with
//! vessel segmentations) reads both for each voxel the vessel head calls a
//! vessel, inside the brain mask or out: its class probabilities with both
//! sides of each artery added,
//! and its offset from the centre of the brain mask with their squares and
//! products. It names background or one of the eight arteries of
//! [`LOCATOR_CLASSES`]; a lateral artery takes the voxel's side of the
//! midline through the same centre ([`Midline`]).

use aneu_bundle::Locator;
use aneu_io::{Affine, Location, Voxel, WorldPoint};
use ndarray::{Array3, Array4};

use crate::Result;
use crate::locate::{LOCATOR_CLASSES, check_names, locator_class, offsets_mm};
use crate::sides::Midline;

/// The name of an artery labeller's class 0, no artery.
pub const BACKGROUND: &str = "Background";

/// The classes an artery labeller fitted by aneu names, in order:
/// [`BACKGROUND`], then the arteries of [`LOCATOR_CLASSES`] (each lateral
/// one standing for both sides).
///
/// ```
/// use aneu_infer::{BACKGROUND, LOCATOR_CLASSES, labeller_classes};
/// let c = labeller_classes();
/// assert_eq!((c[0], c[1]), (BACKGROUND, LOCATOR_CLASSES[0].name()));
/// ```
pub fn labeller_classes() -> [&'static str; 9] {
    let mut c = [BACKGROUND; 9];
    for (n, l) in LOCATOR_CLASSES.iter().enumerate() {
        c[n + 1] = l.name();
    }
    c
}

/// The features an artery labeller fitted by aneu reads, in order:
///
/// - `p_*`: the vessel head's probability (softmax of its blended logits)
///   of background and of each of the [`LOCATOR_CLASSES`]' arteries, both
///   sides added;
/// - `lateral_mm`, `anterior_mm`, `superior_mm`: the voxel's distance from
///   the midsagittal plane through the brain mask's centroid, and its
///   offsets (mm, RAS) from that centroid towards the face and the vertex,
///   as for the candidate locator ([`crate::LOCATOR_FEATURES`]);
/// - their squares and pairwise products, so that a class's region can be
///   an ellipsoid rather than a half-space.
pub const LABELLER_FEATURES: [&str; 18] = [
    "p_background",
    "p_infraclinoid_ica",
    "p_supraclinoid_ica",
    "p_mca",
    "p_acom",
    "p_aca",
    "p_pcom",
    "p_basilar_tip",
    "p_other_posterior",
    "lateral_mm",
    "anterior_mm",
    "superior_mm",
    "lateral_mm_squared",
    "anterior_mm_squared",
    "superior_mm_squared",
    "lateral_by_anterior",
    "lateral_by_superior",
    "anterior_by_superior",
];

/// The index in [`labeller_classes`] of a vessel label
/// (`aneu_io::VESSEL_LABELS`): 0 for background and for any label that is
/// no artery, else 1 + the artery's [`locator_class`], either side.
///
/// ```
/// use aneu_infer::labeller_class;
/// use aneu_io::Location;
/// assert_eq!(labeller_class(0), 0);
/// assert_eq!(labeller_class(Location::LeftMca.vessel_label()), labeller_class(Location::RightMca.vessel_label()));
/// assert_ne!(labeller_class(Location::LeftMca.vessel_label()), 0);
/// ```
pub fn labeller_class(label: u8) -> usize {
    Location::from_vessel_label(label).map_or(0, |l| 1 + locator_class(l))
}

/// One voxel's [`LABELLER_FEATURES`] vector: `logits` are the vessel
/// head's class logits there (class `n` is vessel label `n`), `world` the
/// voxel's centre and `centre` the brain mask's.
///
/// ```
/// use aneu_infer::labeller_features;
/// use aneu_io::{Location, WorldPoint};
/// let mut logits = vec![0.0f32; 14];
/// logits[usize::from(Location::LeftMca.vessel_label())] = 10.0;
/// logits[usize::from(Location::RightMca.vessel_label())] = 10.0;
/// let x = labeller_features(&logits, WorldPoint::new(-30.0, 5.0, -2.0), WorldPoint::new(1.0, 0.0, 0.0));
/// assert!(x[3] > 0.99); // p_mca, both sides
/// assert!((x[..9].iter().sum::<f64>() - 1.0).abs() < 1e-12);
/// assert_eq!(&x[9..12], &[31.0, 5.0, -2.0]);
/// assert_eq!(&x[12..], &[961.0, 25.0, 4.0, 155.0, -62.0, -10.0]);
/// ```
pub fn labeller_features(logits: &[f32], world: WorldPoint, centre: WorldPoint) -> [f64; 18] {
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = logits.iter().map(|l| f64::from(l - top).exp()).collect();
    let sum: f64 = e.iter().sum();
    let mut x = [0.0; 18];
    for (n, p) in e.iter().enumerate() {
        x[labeller_class(u8::try_from(n).unwrap_or(0))] += p / sum;
    }
    let [a, b, c] = offsets_mm(world, centre);
    x[9..].copy_from_slice(&[a, b, c, a * a, b * b, c * c, a * b, a * c, b * c]);
    x
}

/// Each voxel's most probable class of `probs` (`[classes, k, j, i]`,
/// probabilities or logits); the lowest class wins a tie, so a voxel that
/// no window covered (all 0) is background.
pub(crate) fn most_probable(probs: &Array4<f32>) -> Array3<u8> {
    let (c, k, j, i) = probs.dim();
    let mut best = Array3::<u8>::zeros((k, j, i));
    let mut top = probs.index_axis(ndarray::Axis(0), 0).to_owned();
    for n in 1..c {
        let label = u8::try_from(n).unwrap_or(0);
        ndarray::Zip::from(&mut best)
            .and(&mut top)
            .and(probs.index_axis(ndarray::Axis(0), n))
            .for_each(|b, t, &p| {
                if p > *t {
                    *t = p;
                    *b = label;
                }
            });
    }
    best
}

/// The vessel voxels `[k, j, i]` of the vessel head's blended `logits`
/// (`[classes, k, j, i]`), in index order: those whose most probable class
/// is not background. The artery labeller names these and only these.
pub(crate) fn vessel_voxels(logits: &Array4<f32>) -> Vec<[usize; 3]> {
    most_probable(logits)
        .indexed_iter()
        .filter(|(_, l)| **l != 0)
        .map(|((k, j, i), _)| [k, j, i])
        .collect()
}

/// The [`LABELLER_FEATURES`] vector of the voxel `[k, j, i]` of `logits`
/// on the grid `affine`, measured from `centre`.
pub(crate) fn voxel_features(logits: &Array4<f32>, at: [usize; 3], affine: &Affine, centre: WorldPoint) -> [f64; 18] {
    let [k, j, i] = at;
    let v: Vec<f32> = (0..logits.dim().0).map(|c| logits[[c, k, j, i]]).collect();
    labeller_features(&v, voxel_world(affine, at), centre)
}

fn voxel_world(affine: &Affine, [k, j, i]: [usize; 3]) -> WorldPoint {
    affine.voxel_to_world(Voxel::new(i as f64, j as f64, k as f64))
}

/// The artery label map (`aneu_io::VESSEL_LABELS`) the labeller makes of
/// the vessel head's blended `logits` (`[classes, k, j, i]`, on the grid
/// `affine`), with `centre` the brain mask's centroid: every vessel voxel
/// (most probable class not background), inside the brain mask or outside
/// it (the arteries below the skull base lie outside), gets the
/// labeller's most probable class, a lateral artery on the voxel's side of
/// the midline through `centre`, or background; every other voxel stays
/// background. Check the labeller first ([`check_labeller`]).
pub fn label_arteries(labeller: &Locator, logits: &Array4<f32>, affine: &Affine, centre: WorldPoint) -> Array3<u8> {
    let (_, k, j, i) = logits.dim();
    let mut labels = Array3::<u8>::zeros((k, j, i));
    let midline = Midline { x_mm: centre.x };
    for at in vessel_voxels(logits) {
        let p = labeller.probabilities(&voxel_features(logits, at, affine, centre));
        let best = (0..p.len()).fold(0, |b, n| if p[n] > p[b] { n } else { b });
        labels[at] = match best.checked_sub(1).and_then(|c| LOCATOR_CLASSES.get(c)) {
            Some(artery) => artery.on_side(midline.is_right(voxel_world(affine, at))).vessel_label(),
            None => 0,
        };
    }
    labels
}

/// Checks that an artery labeller reads exactly the features inference
/// computes ([`LABELLER_FEATURES`]) and names exactly the
/// [`labeller_classes`].
///
/// # Errors
/// [`crate::Error::InvalidConfig`] naming the mismatch.
pub fn check_labeller(l: &Locator) -> Result<()> {
    check_names(l, "artery labeller", &LABELLER_FEATURES, &labeller_classes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A labeller that reads only the place in the head: the MCA far to
    /// the side, background near the midline. A vessel voxel takes the
    /// MCA of its side; a voxel the head calls background stays so, and
    /// so does a vessel voxel the labeller calls background.
    #[test]
    fn labels_follow_the_labeller_and_the_side() {
        let mut weights = vec![vec![0.0; 18]; 9];
        let mca = labeller_class(Location::RightMca.vessel_label());
        weights[mca][9] = 1.0; // lateral_mm
        weights[0][9] = -1.0;
        let mut bias = vec![0.0; 9];
        bias[0] = 20.0; // background within 10 mm of the midline
        let l = Locator {
            features: LABELLER_FEATURES.map(String::from).to_vec(),
            classes: labeller_classes().map(String::from).to_vec(),
            mean: vec![0.0; 18],
            scale: vec![1.0; 18],
            weights,
            bias,
            fitted_on: 1,
        };
        check_labeller(&l).unwrap();
        // a 1 × 1 × 8 grid along x, 10 mm apart, centred at x = 35
        let affine = Affine::from_parts([[10.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [0.0; 3]).unwrap();
        let mut logits = Array4::<f32>::zeros((14, 1, 1, 8));
        // voxels 0, 3, 4, 7 are vessel (the basilar tip, say); 1 is background
        for i in [0, 3, 4, 7] {
            logits[[usize::from(Location::BasilarTip.vessel_label()), 0, 0, i]] = 5.0;
        }
        logits[[0, 0, 0, 1]] = 5.0;
        let labels = label_arteries(&l, &logits, &affine, WorldPoint::new(35.0, 0.0, 0.0));
        let got: Vec<u8> = labels.iter().copied().collect();
        let (left, right) = (Location::LeftMca.vessel_label(), Location::RightMca.vessel_label());
        // RAS: x below the centre is the patient's left
        assert_eq!(got, vec![left, 0, 0, 0, 0, 0, 0, right]);
        // a labeller of other features or classes is refused
        let mut other = l.clone();
        other.features.swap(0, 1);
        assert!(check_labeller(&other).is_err());
        let mut other = l;
        other.classes.swap(0, 1);
        assert!(check_labeller(&other).is_err());
    }

    /// The most probable class per voxel, the lowest on a tie (so all-0
    /// voxels are background); the vessel voxels are the others.
    #[test]
    fn most_probable_takes_the_highest_class() {
        let mut p = Array4::<f32>::zeros((3, 1, 1, 3));
        p[[2, 0, 0, 0]] = 0.7;
        p[[1, 0, 0, 0]] = 0.2;
        p[[1, 0, 0, 1]] = 0.5;
        p[[2, 0, 0, 1]] = 0.5;
        assert_eq!(most_probable(&p).into_raw_vec_and_offset().0, vec![2, 1, 0]);
        assert_eq!(vessel_voxels(&p), vec![[0, 0, 0], [0, 0, 1]]);
    }
}

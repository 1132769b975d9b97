//! Augmentation: `Rand*` transforms on a [`Patch`] that keep the image,
//! the dense target and the labels consistent, composed with [`Compose`]
//! and driven by an explicit RNG.
//!
//! Geometric transforms act on the image and the dense target alike. A
//! left-right flip ([`RandFlip`] on axis 2, `i`, which runs left → right
//! on the canonical RAS grid) makes the patch of a mirrored head: it
//! mirrors the location and vessel labels (the left MCA's voxels become a
//! right MCA) and mirrors the position prior's `i` range about the head's
//! midline (`[lo, hi]` becomes `[1 − hi, 1 − lo]`), so that a right label
//! lies where a right artery lies. So does a half turn of [`RandRot90`]
//! for its `i` flip. Flips of `k` and `j` reverse their position ranges
//! with the voxels and keep the labels. (Reversing the `i` range with the
//! voxels while mirroring the labels, as aneu did before 2026-12-06, puts
//! right labels in the left half of the head half of the time, and a
//! network then cannot tell left from right.) Quarter turns keep the labels: the
//! side of an aneurysm is not defined once the head is turned sideways, so
//! disable quarter turns (`quarter_turns: false`) when training a location
//! or vessel head. Intensity transforms touch the image only.

use ndarray::{Array3, Axis};
use rand::{Rng, RngCore};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::Patch;
use aneu_io::Location;

/// One augmentation.
pub trait RandTransform {
    /// Applies the transform (or not, by its probability) in place.
    fn apply(&self, patch: &mut Patch, rng: &mut dyn RngCore);
}

/// Flips along one array axis (0 = k, 1 = j, 2 = i) with probability `p`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandFlip {
    /// The array axis.
    pub axis: usize,
    /// Probability.
    pub p: f64,
}

/// Rotates by a multiple of 90° in the axial plane (axes j, i), with
/// probability `p`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandRot90 {
    /// Probability.
    pub p: f64,
    /// Whether 90° and 270° turns are drawn (needs a cubic patch); if
    /// false, only half turns.
    pub quarter_turns: bool,
}

/// A small rotation about each axis and an isotropic scaling around the
/// patch centre, resampled trilinearly with zero outside.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandAffine {
    /// Probability.
    pub p: f64,
    /// Each axis' angle is uniform in ±this, degrees.
    pub max_rotation_deg: f64,
    /// The scale factor is uniform in this range.
    pub scale: [f64; 2],
}

/// `x · s + b` with `s` and `b` uniform in their ranges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandScaleShift {
    /// Probability.
    pub p: f64,
    /// Range of the factor.
    pub scale: [f64; 2],
    /// Range of the offset.
    pub shift: [f64; 2],
}

/// Gamma on the patch rescaled to [0, 1] and back (MONAI's
/// `RandAdjustContrast`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandGamma {
    /// Probability.
    pub p: f64,
    /// Range of γ.
    pub gamma: [f64; 2],
}

/// Additive Gaussian noise, σ uniform in `[0, max_std]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandGaussianNoise {
    /// Probability.
    pub p: f64,
    /// Largest σ.
    pub max_std: f64,
}

/// A smooth multiplicative bias `exp(Σ c·x^a y^b z^c)` of degree 2 over the
/// patch (coordinates in [−1, 1]), coefficients uniform in
/// `±max_coefficient` (MONAI's `RandBiasField`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandBiasField {
    /// Probability.
    pub p: f64,
    /// Coefficient range.
    pub max_coefficient: f64,
}

/// Gaussian blur of the image, σ drawn for each array axis on its own,
/// uniform in `sigma` (voxels): a wider point-spread function, as from a
/// coarser acquisition or a smoother reconstruction kernel (MONAI's
/// `RandGaussianSmooth`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandGaussianBlur {
    /// Probability.
    pub p: f64,
    /// Range of each axis' σ, voxels.
    pub sigma: [f64; 2],
}

/// Coarser voxels or thicker slices: along each of `axes` (array axes,
/// 0 = k, the slice axis of an axial series), the image is averaged over
/// cells of `factor` voxels (a box slice profile) and linearly
/// interpolated back onto the patch grid. One factor, uniform in
/// `factor`, serves all the listed axes (MONAI's
/// `RandSimulateLowResolution`, with a box rather than a nearest-neighbour
/// down-sampling).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandLowResolution {
    /// Probability.
    pub p: f64,
    /// Range of the cell size, voxels (≥ 1).
    pub factor: [f64; 2],
    /// The array axes that get the coarse cells.
    pub axes: Vec<usize>,
}

/// Any transform, for configs (`{"type": "flip", "axis": 2, "p": 0.5}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Transform {
    Flip(RandFlip),
    Rot90(RandRot90),
    Affine(RandAffine),
    ScaleShift(RandScaleShift),
    Gamma(RandGamma),
    GaussianNoise(RandGaussianNoise),
    BiasField(RandBiasField),
    GaussianBlur(RandGaussianBlur),
    LowResolution(RandLowResolution),
}

/// Transforms applied in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Compose(pub Vec<Transform>);

impl Compose {
    /// A sensible default for angiography patches: flips on all axes,
    /// half turns, ±10° and 0.9–1.1 scaling, intensity scale/shift, gamma,
    /// noise and bias.
    pub fn standard() -> Self {
        Compose(vec![
            Transform::Flip(RandFlip { axis: 0, p: 0.5 }),
            Transform::Flip(RandFlip { axis: 1, p: 0.5 }),
            Transform::Flip(RandFlip { axis: 2, p: 0.5 }),
            Transform::Rot90(RandRot90 {
                p: 0.5,
                quarter_turns: false,
            }),
            Transform::Affine(RandAffine {
                p: 0.3,
                max_rotation_deg: 10.0,
                scale: [0.9, 1.1],
            }),
            Transform::ScaleShift(RandScaleShift {
                p: 0.5,
                scale: [0.9, 1.1],
                shift: [-0.1, 0.1],
            }),
            Transform::Gamma(RandGamma {
                p: 0.3,
                gamma: [0.7, 1.5],
            }),
            Transform::GaussianNoise(RandGaussianNoise { p: 0.3, max_std: 0.05 }),
            Transform::BiasField(RandBiasField {
                p: 0.3,
                max_coefficient: 0.3,
            }),
        ])
    }
}

impl Compose {
    /// Checks every transform's parameters: probabilities in [0, 1],
    /// ranges finite and ordered, scales, γ and cell sizes positive (cells
    /// at least one voxel), σ and coefficients not negative, axes 0–2.
    ///
    /// # Errors
    /// [`crate::Error::InvalidConfig`] naming the transform and field.
    ///
    /// ```
    /// use aneu_patch::augment::{Compose, RandLowResolution, Transform};
    /// assert!(Compose::standard().validate().is_ok());
    /// let bad = Compose(vec![Transform::LowResolution(RandLowResolution { p: 0.5, factor: [0.5, 2.0], axes: vec![0] })]);
    /// assert!(bad.validate().is_err());
    /// ```
    pub fn validate(&self) -> crate::Result<()> {
        for (n, t) in self.0.iter().enumerate() {
            t.check()
                .map_err(|e| crate::Error::InvalidConfig(format!("augment[{n}]: {e}")))?;
        }
        Ok(())
    }
}

impl Transform {
    /// The probability and the checks of [`Compose::validate`].
    fn check(&self) -> Result<(), String> {
        let range = |name: &str, r: [f64; 2], min: f64| {
            if r.iter().all(|x| x.is_finite() && *x >= min) && r[0] <= r[1] {
                Ok(())
            } else {
                Err(format!("{name} {r:?} must be ordered, finite and ≥ {min}"))
            }
        };
        let at_least = |name: &str, x: f64, min: f64| {
            if x.is_finite() && x >= min {
                Ok(())
            } else {
                Err(format!("{name} {x} must be finite and ≥ {min}"))
            }
        };
        let axis = |a: usize| {
            if a < 3 {
                Ok(())
            } else {
                Err(format!("axis {a} is not an array axis (0, 1, 2)"))
            }
        };
        let p = match self {
            Transform::Flip(t) => {
                axis(t.axis)?;
                t.p
            }
            Transform::Rot90(t) => t.p,
            Transform::Affine(t) => {
                at_least("max_rotation_deg", t.max_rotation_deg, 0.0)?;
                range("scale", t.scale, f64::MIN_POSITIVE)?;
                t.p
            }
            Transform::ScaleShift(t) => {
                range("scale", t.scale, f64::MIN)?;
                range("shift", t.shift, f64::MIN)?;
                t.p
            }
            Transform::Gamma(t) => {
                range("gamma", t.gamma, f64::MIN_POSITIVE)?;
                t.p
            }
            Transform::GaussianNoise(t) => {
                at_least("max_std", t.max_std, 0.0)?;
                t.p
            }
            Transform::BiasField(t) => {
                at_least("max_coefficient", t.max_coefficient, 0.0)?;
                t.p
            }
            Transform::GaussianBlur(t) => {
                range("sigma", t.sigma, 0.0)?;
                t.p
            }
            Transform::LowResolution(t) => {
                range("factor", t.factor, 1.0)?;
                if t.axes.is_empty() {
                    return Err("axes is empty".into());
                }
                t.axes.iter().try_for_each(|a| axis(*a))?;
                t.p
            }
        };
        if (0.0..=1.0).contains(&p) {
            Ok(())
        } else {
            Err(format!("p {p} must lie in [0, 1]"))
        }
    }
}

impl RandTransform for Compose {
    fn apply(&self, patch: &mut Patch, rng: &mut dyn RngCore) {
        for t in &self.0 {
            t.apply(patch, rng);
        }
    }
}

impl RandTransform for Transform {
    fn apply(&self, patch: &mut Patch, rng: &mut dyn RngCore) {
        match self {
            Transform::Flip(t) => t.apply(patch, rng),
            Transform::Rot90(t) => t.apply(patch, rng),
            Transform::Affine(t) => t.apply(patch, rng),
            Transform::ScaleShift(t) => t.apply(patch, rng),
            Transform::Gamma(t) => t.apply(patch, rng),
            Transform::GaussianNoise(t) => t.apply(patch, rng),
            Transform::BiasField(t) => t.apply(patch, rng),
            Transform::GaussianBlur(t) => t.apply(patch, rng),
            Transform::LowResolution(t) => t.apply(patch, rng),
        }
    }
}

fn hit(p: f64, rng: &mut dyn RngCore) -> bool {
    p > 0.0 && rng.random::<f64>() < p
}

fn uniform(r: [f64; 2], rng: &mut dyn RngCore) -> f64 {
    if r[1] > r[0] {
        rng.random_range(r[0]..r[1])
    } else {
        r[0]
    }
}

/// The labels and `i` position range of a patch whose voxels were just
/// flipped along `i`, so that it is the patch of the mirrored head: the
/// location labels swap sides and the range mirrors about the midline
/// (the vessel labels are mirrored where their voxels are flipped).
fn mirror_head(patch: &mut Patch) {
    let [lo, hi] = patch.position[2];
    patch.position[2] = [1.0 - hi, 1.0 - lo];
    mirror_locations(&mut patch.locations);
}

fn mirror_locations(l: &mut [f32; 13]) {
    let old = *l;
    for loc in Location::ALL {
        l[loc.mirrored().index()] = old[loc.index()];
    }
}

/// Left ↔ right in a vessel label map: each side's artery label becomes
/// the other side's (what a left-right flip does to them).
fn mirror_vessel_labels(v: &mut Array3<u8>) {
    let table: [u8; 256] = std::array::from_fn(|l| {
        let l = l as u8;
        Location::from_vessel_label(l).map_or(l, |loc| loc.mirrored().vessel_label())
    });
    v.mapv_inplace(|l| table[usize::from(l)]);
}

impl RandTransform for RandFlip {
    fn apply(&self, patch: &mut Patch, rng: &mut dyn RngCore) {
        if self.axis > 2 || !hit(self.p, rng) {
            return;
        }
        patch.image.invert_axis(Axis(self.axis));
        patch.dense.invert_axis(Axis(self.axis));
        patch.image = patch.image.as_standard_layout().into_owned();
        patch.dense = patch.dense.as_standard_layout().into_owned();
        if let Some(v) = &mut patch.vessels {
            v.invert_axis(Axis(self.axis));
            *v = v.as_standard_layout().into_owned();
            if self.axis == 2 {
                mirror_vessel_labels(v);
            }
        }
        if self.axis == 2 {
            mirror_head(patch);
        } else {
            patch.position[self.axis].swap(0, 1);
        }
    }
}

/// Rotates the axial plane by `turns` quarter turns; one turn gives
/// `new[k, j, i] = old[k, i, n−1−j]`.
fn rot90<T: Clone>(a: &Array3<T>, turns: usize) -> Array3<T> {
    match turns % 4 {
        0 => a.clone(),
        2 => {
            let mut b = a.clone();
            b.invert_axis(Axis(1));
            b.invert_axis(Axis(2));
            b.as_standard_layout().into_owned()
        }
        t => {
            // one quarter turn: transpose j/i then flip the new j axis
            let mut b = a.view().permuted_axes([0, 2, 1]).to_owned();
            b.invert_axis(Axis(if t == 1 { 1 } else { 2 }));
            b.as_standard_layout().into_owned()
        }
    }
}

impl RandTransform for RandRot90 {
    fn apply(&self, patch: &mut Patch, rng: &mut dyn RngCore) {
        if !hit(self.p, rng) {
            return;
        }
        let (_, h, w) = patch.image.dim();
        let turns = if self.quarter_turns && h == w {
            rng.random_range(1..4usize)
        } else {
            2
        };
        patch.image = rot90(&patch.image, turns);
        patch.dense = rot90(&patch.dense, turns);
        if let Some(v) = &mut patch.vessels {
            *v = rot90(v, turns);
            if turns == 2 {
                mirror_vessel_labels(v);
            }
        }
        let [_, pj, pi] = patch.position;
        match turns {
            2 => {
                // a flip of j (the range reverses) and a left-right flip
                patch.position[1] = [pj[1], pj[0]];
                mirror_head(patch);
            }
            1 => {
                // new j runs along old i reversed, new i along old j
                patch.position[1] = [pi[1], pi[0]];
                patch.position[2] = pj;
            }
            _ => {
                patch.position[1] = pi;
                patch.position[2] = [pj[1], pj[0]];
            }
        }
    }
}

/// The value of `a` nearest to continuous `[k, j, i]`, 0 outside (for
/// labels).
fn nearest(a: &Array3<u8>, p: [f64; 3]) -> u8 {
    let (d, h, w) = a.dim();
    let r = p.map(f64::round);
    let inside = r.iter().zip([d, h, w]).all(|(x, n)| *x >= 0.0 && *x < n as f64);
    if inside {
        a[[r[0] as usize, r[1] as usize, r[2] as usize]]
    } else {
        0
    }
}

/// Trilinear sample of `a` at continuous `[k, j, i]`, zero outside.
fn trilinear(a: &Array3<f32>, p: [f64; 3]) -> f32 {
    let (d, h, w) = a.dim();
    let n = [d, h, w];
    let f = p.map(f64::floor);
    let mut acc = 0.0f64;
    for corner in 0..8 {
        let mut idx = [0usize; 3];
        let mut wt = 1.0;
        let mut ok = true;
        for ax in 0..3 {
            let up = (corner >> ax) & 1 == 1;
            let x = f[ax] as i64 + i64::from(up);
            let t = p[ax] - f[ax];
            wt *= if up { t } else { 1.0 - t };
            if x < 0 || x >= n[ax] as i64 {
                ok = false;
            } else {
                idx[ax] = x as usize;
            }
        }
        if ok && wt > 0.0 {
            acc += wt * a[idx] as f64;
        }
    }
    acc as f32
}

impl RandTransform for RandAffine {
    fn apply(&self, patch: &mut Patch, rng: &mut dyn RngCore) {
        if !hit(self.p, rng) {
            return;
        }
        let m = self.max_rotation_deg.abs().to_radians();
        let ang: [f64; 3] = std::array::from_fn(|_| if m > 0.0 { rng.random_range(-m..m) } else { 0.0 });
        let s = uniform(self.scale, rng).max(1e-3);
        // inverse map: output → input = R^T / s (rotation matrices about k, j, i)
        let rot = |a: f64, ax: usize| {
            let (c, sn) = (a.cos(), a.sin());
            let (u, v) = ((ax + 1) % 3, (ax + 2) % 3);
            let mut r = [[0.0; 3]; 3];
            r[ax][ax] = 1.0;
            r[u][u] = c;
            r[u][v] = -sn;
            r[v][u] = sn;
            r[v][v] = c;
            r
        };
        let mul = |a: [[f64; 3]; 3], b: [[f64; 3]; 3]| -> [[f64; 3]; 3] {
            std::array::from_fn(|r| std::array::from_fn(|c| (0..3).map(|t| a[r][t] * b[t][c]).sum()))
        };
        let r = mul(mul(rot(ang[0], 0), rot(ang[1], 1)), rot(ang[2], 2));
        let (d, h, w) = patch.image.dim();
        let c = [(d as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0];
        let map = |k: usize, j: usize, i: usize| -> [f64; 3] {
            let q = [k as f64 - c[0], j as f64 - c[1], i as f64 - c[2]];
            // R^T q / s
            std::array::from_fn(|a| (0..3).map(|t| r[t][a] * q[t]).sum::<f64>() / s + c[a])
        };
        let img = &patch.image;
        let den = &patch.dense;
        let new_img = Array3::from_shape_fn((d, h, w), |(k, j, i)| trilinear(img, map(k, j, i)));
        let new_den = Array3::from_shape_fn((d, h, w), |(k, j, i)| trilinear(den, map(k, j, i)));
        if let Some(v) = &patch.vessels {
            patch.vessels = Some(Array3::from_shape_fn((d, h, w), |(k, j, i)| nearest(v, map(k, j, i))));
        }
        patch.image = new_img;
        patch.dense = new_den;
    }
}

impl RandTransform for RandScaleShift {
    fn apply(&self, patch: &mut Patch, rng: &mut dyn RngCore) {
        if !hit(self.p, rng) {
            return;
        }
        let (s, b) = (uniform(self.scale, rng) as f32, uniform(self.shift, rng) as f32);
        patch.image.mapv_inplace(|x| x * s + b);
    }
}

impl RandTransform for RandGamma {
    fn apply(&self, patch: &mut Patch, rng: &mut dyn RngCore) {
        if !hit(self.p, rng) {
            return;
        }
        let g = uniform(self.gamma, rng) as f32;
        let (lo, hi) = patch
            .image
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
        let range = hi - lo;
        if range.is_finite() && range > 1e-12 {
            patch.image.mapv_inplace(|x| ((x - lo) / range).powf(g) * range + lo);
        }
    }
}

impl RandTransform for RandGaussianNoise {
    fn apply(&self, patch: &mut Patch, rng: &mut dyn RngCore) {
        if !hit(self.p, rng) || self.max_std <= 0.0 {
            return;
        }
        let sd = rng.random_range(0.0..self.max_std);
        if let Ok(n) = Normal::new(0.0f32, sd as f32) {
            patch.image.iter_mut().for_each(|x| *x += n.sample(rng));
        }
    }
}

impl RandTransform for RandBiasField {
    fn apply(&self, patch: &mut Patch, rng: &mut dyn RngCore) {
        if !hit(self.p, rng) {
            return;
        }
        let m = self.max_coefficient.abs();
        // the 10 monomials of degree ≤ 2 in (z, y, x): 1, z, y, x, z², y², x², zy, zx, yx
        let c: [f64; 10] = std::array::from_fn(|_| if m > 0.0 { rng.random_range(-m..m) } else { 0.0 });
        let (d, h, w) = patch.image.dim();
        let norm = |x: usize, n: usize| {
            if n <= 1 {
                0.0
            } else {
                2.0 * x as f64 / (n - 1) as f64 - 1.0
            }
        };
        let xs: Vec<f64> = (0..w).map(|i| norm(i, w)).collect();
        for ((k, j, i), v) in patch.image.indexed_iter_mut() {
            let (z, y, x) = (norm(k, d), norm(j, h), xs[i]);
            let e = c[0]
                + c[1] * z
                + c[2] * y
                + c[3] * x
                + c[4] * z * z
                + c[5] * y * y
                + c[6] * x * x
                + c[7] * z * y
                + c[8] * z * x
                + c[9] * y * x;
            *v *= e.exp() as f32;
        }
    }
}

impl RandTransform for RandGaussianBlur {
    fn apply(&self, patch: &mut Patch, rng: &mut dyn RngCore) {
        if !hit(self.p, rng) {
            return;
        }
        let sigma: [f64; 3] = std::array::from_fn(|_| uniform(self.sigma, rng).max(0.0));
        let image = std::mem::take(&mut patch.image);
        patch.image = aneu_io::gaussian_smooth(image, sigma);
    }
}

impl RandTransform for RandLowResolution {
    fn apply(&self, patch: &mut Patch, rng: &mut dyn RngCore) {
        if !hit(self.p, rng) {
            return;
        }
        let f = uniform(self.factor, rng);
        if f.is_nan() || f <= 1.0 {
            return;
        }
        // axes beyond 2 are refused by `Compose::validate`; skipped here
        for &axis in self.axes.iter().filter(|a| **a < 3) {
            let n = patch.image.len_of(Axis(axis));
            let (cells, back) = coarse_cells(n, f);
            let mut out = patch.image.clone();
            ndarray::Zip::from(out.lanes_mut(Axis(axis)))
                .and(patch.image.lanes(Axis(axis)))
                .for_each(|mut o, l| {
                    let means: Vec<f32> = cells
                        .iter()
                        .map(|cell| cell.iter().map(|&(x, w)| w * l[x]).sum())
                        .collect();
                    for (x, &(c, t)) in back.iter().enumerate() {
                        let c1 = (c + 1).min(means.len() - 1);
                        o[x] = means[c] * (1.0 - t) + means[c1] * t;
                    }
                });
            patch.image = out;
        }
    }
}

/// The coarse cells of a lane of `n` voxels with cells of `f` voxels:
/// for each cell its voxels and their normalised overlap weights (voxel
/// `x` spans `[x, x + 1)`, cell `c` spans `[c·f, (c + 1)·f)`), and for
/// each voxel the cell below its centre and the linear weight of the next
/// one.
#[allow(clippy::type_complexity)]
fn coarse_cells(n: usize, f: f64) -> (Vec<Vec<(usize, f32)>>, Vec<(usize, f32)>) {
    let nc = ((n as f64 / f).ceil() as usize).max(1);
    let cells = (0..nc)
        .map(|c| {
            let (lo, hi) = (c as f64 * f, ((c + 1) as f64 * f).min(n as f64));
            let span: Vec<(usize, f64)> = (lo.floor() as usize..(hi.ceil() as usize).min(n))
                .map(|x| (x, (hi.min(x as f64 + 1.0) - lo.max(x as f64)).max(0.0)))
                .filter(|(_, w)| *w > 0.0)
                .collect();
            let total: f64 = span.iter().map(|(_, w)| w).sum();
            span.into_iter().map(|(x, w)| (x, (w / total) as f32)).collect()
        })
        .collect();
    let back = (0..n)
        .map(|x| {
            let u = ((x as f64 + 0.5) / f - 0.5).clamp(0.0, (nc - 1) as f64);
            let c = (u.floor() as usize).min(nc - 1);
            (c, (u - c as f64) as f32)
        })
        .collect();
    (cells, back)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PatchSource, PatchSpec};
    use aneu_io::VoxelIndex;

    fn patch(n: usize) -> Patch {
        let image = Array3::from_shape_fn((n, n, n), |(k, j, i)| (k * n * n + j * n + i) as f32);
        Patch {
            dense: image.clone(),
            image,
            label: 1.0,
            locations: [0.0; 13],
            position: [[0.0, 1.0]; 3],
            vessels: None,
            spec: PatchSpec {
                case: 0,
                centre: VoxelIndex::new(0, 0, 0),
                source: PatchSource::Positive,
            },
        }
    }

    #[test]
    fn quarter_turn_maps_axes_as_documented() {
        let p = patch(4);
        let r = rot90(&p.image, 1);
        for ((k, j, i), v) in r.indexed_iter() {
            assert_eq!(*v, p.image[[k, i, 3 - j]]);
        }
        assert_eq!(rot90(&rot90(&p.image, 1), 3), p.image);
        assert_eq!(rot90(&rot90(&p.image, 1), 1), rot90(&p.image, 2));
    }

    fn rng(seed: u64) -> rand::rngs::StdRng {
        rand::SeedableRng::seed_from_u64(seed)
    }

    /// Box averaging and linear interpolation reproduce a ramp exactly
    /// away from the borders when the cells are whole voxels, leave the
    /// dense target alone, average a checkerboard away along the coarse
    /// axis, and a factor of 1 changes nothing.
    #[test]
    fn low_resolution_keeps_a_ramp_and_the_targets() {
        let mut p = patch(24);
        let before = p.clone();
        RandLowResolution {
            p: 1.0,
            factor: [2.0, 2.0],
            axes: vec![0],
        }
        .apply(&mut p, &mut rng(1));
        for ((k, j, i), v) in p.image.indexed_iter() {
            if (1..23).contains(&k) {
                assert!((v - before.image[[k, j, i]]).abs() < 1e-3, "{k} {j} {i}: {v}");
            }
        }
        assert_eq!(p.dense, before.dense);
        // a checkerboard in k and i: pairs of slices along k average to 0.5
        let mut c = patch(12);
        c.image = Array3::from_shape_fn((12, 12, 12), |(k, _, i)| ((k + i) % 2) as f32);
        let orig = c.image.clone();
        RandLowResolution {
            p: 1.0,
            factor: [2.0, 2.0],
            axes: vec![0],
        }
        .apply(&mut c, &mut rng(2));
        assert!(c.image.iter().all(|v| (v - 0.5).abs() < 1e-6));
        let mut c = patch(12);
        c.image = orig.clone();
        RandLowResolution {
            p: 1.0,
            factor: [1.0, 1.0],
            axes: vec![0, 1, 2],
        }
        .apply(&mut c, &mut rng(3));
        assert_eq!(c.image, orig, "a factor of 1 is the identity");
    }

    proptest::proptest! {
        /// Every output is a convex combination of inputs, whatever the
        /// (fractional) factor: nothing leaves the input's range.
        #[test]
        fn low_resolution_stays_in_range(f in 1.0f64..4.0, n in 3usize..14, seed in 0u64..1000) {
            let mut p = patch(n);
            let (lo, hi) = (0.0f32, (n * n * n - 1) as f32);
            RandLowResolution { p: 1.0, factor: [f, f], axes: vec![0, 1, 2] }.apply(&mut p, &mut rng(seed));
            proptest::prop_assert!(p.image.iter().all(|v| *v >= lo - 1e-2 && *v <= hi + 1e-2));
            let (cells, back) = coarse_cells(n, f);
            for cell in &cells {
                let w: f32 = cell.iter().map(|(_, w)| w).sum();
                proptest::prop_assert!((w - 1.0).abs() < 1e-5);
            }
            proptest::prop_assert_eq!(back.len(), n);
        }
    }

    /// σ = 0 is the identity; a blur takes variance out of a noisy image
    /// and leaves the dense target alone.
    #[test]
    fn blur_smooths_the_image_only() {
        let mut p = patch(10);
        let before = p.clone();
        RandGaussianBlur {
            p: 1.0,
            sigma: [0.0, 0.0],
        }
        .apply(&mut p, &mut rng(4));
        assert_eq!(p, before);
        p.image = Array3::from_shape_fn((10, 10, 10), |(k, j, i)| ((k * 7 + j * 3 + i) % 5) as f32);
        let orig = p.image.clone();
        RandGaussianBlur {
            p: 1.0,
            sigma: [0.5, 1.5],
        }
        .apply(&mut p, &mut rng(5));
        let var = |a: &Array3<f32>| {
            let m = a.mean().unwrap_or(0.0);
            a.iter().map(|v| (v - m).powi(2)).sum::<f32>()
        };
        assert!(var(&p.image) < 0.5 * var(&orig), "blurred noise loses variance");
        assert_eq!(p.dense, before.dense);
    }

    #[test]
    fn trilinear_reproduces_a_linear_function() {
        let p = patch(5);
        let v = trilinear(&p.image, [1.25, 2.5, 3.75]);
        assert!((v - (1.25 * 25.0 + 2.5 * 5.0 + 3.75) as f32).abs() < 1e-4);
    }
}

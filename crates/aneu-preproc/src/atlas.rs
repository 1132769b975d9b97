//! Atlas-based brain extraction: an affine registration of a skull-stripped
//! template (an "atlas": an image and its brain mask) onto a head image,
//! which carries the atlas's brain mask onto the head.
//!
//! This is the stripper for whole-head MRI whose skull is not dark enough for
//! the intensity rules of [`intracranial_mask`](crate::intracranial_mask) (a
//! smooth group-mean T1, say). The atlas must have the subject's contrast: a T1
//! template for T1, a T2 template for T2. None ships with aneu; the MNI ICBM
//! 2009a templates (nilearn, or the MNI's site) work for T1.
//!
//! * **Initialisation.** The head is upright in the scanner's patient frame
//!   (+z superior): the atlas brain is placed 10 mm under the top of the head,
//!   centred left–right and front–back on an axial slab of the head 30–50 mm
//!   below its top (cranium only, no face), then shifted over a coarse grid of
//!   translations for the best correlation.
//! * **Registration.** A 12-parameter affine (translation, rotation, log
//!   scale, shear) maximises the normalised cross-correlation between the
//!   atlas image at its brain voxels and the subject, trilinearly sampled
//!   there (zero outside the subject's grid). Only brain voxels enter, so
//!   the atlas cannot trade brain for scalp. A Nelder–Mead simplex runs at
//!   each sampling level, coarse to fine (9 parameters at the first level,
//!   shear added after).
//! * **The mask.** The atlas mask is resampled linearly through the transform
//!   onto the subject's grid and thresholded at ½; a ≈ 3 mm closing and hole
//!   filling seal the ventricles and sulci, and the largest component is kept.
//!
//! ```
//! use aneu_io::{Affine, Volume};
//! use aneu_preproc::atlas::{Atlas, RegistrationOptions, atlas_brain_mask};
//! use ndarray::Array3;
//! // a 2 mm "head": a bright 30 mm ball of brain, inside a dark band and a
//! // bright shell of scalp
//! let head = Array3::from_shape_fn((48, 48, 48), |(k, j, i)| {
//!     let r = ((k as f64 - 22.0).powi(2) + (j as f64 - 24.0).powi(2) + (i as f64 - 24.0).powi(2)).sqrt() * 2.0;
//!     let brain = 100.0 + 40.0 * (r / 6.0).cos();
//!     if r < 30.0 { brain } else if r < 38.0 { 10.0 } else if r < 44.0 { 150.0 } else { 0.0 }
//! });
//! let a = Affine::from_parts([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]], [-48.0, -48.0, -44.0])?;
//! let subject = Volume::new(head.mapv(|v| v as f32), a)?;
//! // the atlas: the same brain, skull-stripped, on its own grid and 4 mm off centre
//! let t = Affine::from_parts([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]], [-36.0, -32.0, -36.0])?;
//! let img = Array3::from_shape_fn((36, 36, 36), |(k, j, i)| {
//!     let r = ((k as f64 - 17.0).powi(2) + (j as f64 - 17.0).powi(2) + (i as f64 - 17.0).powi(2)).sqrt() * 2.0;
//!     if r < 30.0 { (100.0 + 40.0 * (r / 6.0).cos()) as f32 } else { 0.0 }
//! });
//! let atlas = Atlas::new(Volume::new(img.clone(), t)?, Volume::new(img.mapv(|v| u8::from(v > 0.0)), t)?)?;
//! let (mask, reg) = atlas_brain_mask(&subject, &atlas, &RegistrationOptions::default())?;
//! let ml = mask.as_slice().iter().filter(|v| **v != 0).count() as f64 * 8.0 / 1000.0;
//! let truth = 4.0 / 3.0 * std::f64::consts::PI * 30f64.powi(3) / 1000.0;
//! assert!((ml - truth).abs() < 0.1 * truth, "{ml} mL against {truth}");
//! assert!(reg.ncc > 0.9);
//! # Ok::<(), aneu_preproc::Error>(())
//! ```

use std::path::Path;

use aneu_io::{Affine, Volume, Voxel, read_nifti};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::mask::{dilate, erode, fill_holes, head_mask, largest_component};
use crate::resample::linear;
use crate::{Error, Interpolator, Result, resample_to_grid};

/// Samples per parallel chunk of the registration metric.
const NCC_CHUNK: usize = 4096;

/// A skull-stripped template image and its brain mask, on one grid.
#[derive(Clone, Debug)]
pub struct Atlas {
    image: Volume<f32>,
    mask: Volume<u8>,
}

impl Atlas {
    /// An atlas from its image and brain mask.
    ///
    /// # Errors
    /// [`Error::InvalidMask`] when the two grids differ or the mask is
    /// empty; [`Error::Degenerate`] when the image has non-finite values or is
    /// constant inside the mask.
    pub fn new(image: Volume<f32>, mask: Volume<u8>) -> Result<Self> {
        if image.size() != mask.size() || image.affine().max_abs_diff(mask.affine()) > 1e-4 {
            return Err(Error::InvalidMask(format!(
                "the atlas mask's grid ({:?}) is not its image's ({:?})",
                mask.size().to_ijk(),
                image.size().to_ijk()
            )));
        }
        if image.as_slice().iter().any(|v| !v.is_finite()) {
            return Err(Error::Degenerate("the atlas image has non-finite values".into()));
        }
        let inside: Vec<f32> = image
            .as_slice()
            .iter()
            .zip(mask.as_slice())
            .filter(|(_, m)| **m != 0)
            .map(|(v, _)| *v)
            .collect();
        let Some(first) = inside.first() else {
            return Err(Error::InvalidMask("the atlas mask is empty".into()));
        };
        if inside.iter().all(|v| v == first) {
            return Err(Error::Degenerate("the atlas image is constant inside its mask".into()));
        }
        Ok(Self { image, mask })
    }

    /// Reads an atlas from two NIfTI files; any non-zero mask voxel is brain.
    ///
    /// # Errors
    /// An [`Error::Io`] naming the file that could not be read, or those of
    /// [`Atlas::new`].
    pub fn read(image: impl AsRef<Path>, mask: impl AsRef<Path>) -> Result<Self> {
        let img = read_nifti(image.as_ref())?;
        let m = read_nifti(mask.as_ref())?;
        Self::new(img, m.map(|v| u8::from(*v != 0.0)))
    }

    /// The template image.
    pub fn image(&self) -> &Volume<f32> {
        &self.image
    }

    /// The brain mask (1 inside).
    pub fn mask(&self) -> &Volume<u8> {
        &self.mask
    }
}

/// An affine map of world points (mm, RAS): `p ↦ linear · p + translation`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AffineTransform {
    /// The 3 × 3 matrix, row-major.
    pub linear: [[f64; 3]; 3],
    /// The translation (mm).
    pub translation: [f64; 3],
}

impl AffineTransform {
    /// The identity.
    pub fn identity() -> Self {
        Self {
            linear: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            translation: [0.0; 3],
        }
    }

    /// Maps a point.
    pub fn apply(&self, p: [f64; 3]) -> [f64; 3] {
        let m = &self.linear;
        std::array::from_fn(|r| m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + self.translation[r])
    }

    /// The determinant of the linear part: the volume ratio.
    pub fn determinant(&self) -> f64 {
        det3(&self.linear)
    }

    /// The inverse map, or `None` for a singular one.
    pub fn inverse(&self) -> Option<Self> {
        let m = &self.linear;
        let d = det3(m);
        if d.abs() < 1e-12 || !d.is_finite() {
            return None;
        }
        let c = |r: usize, s: usize| {
            let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
            let (s1, s2) = ((s + 1) % 3, (s + 2) % 3);
            m[r1][s1] * m[r2][s2] - m[r1][s2] * m[r2][s1]
        };
        // inverse = adjugate / det; adjugate[s][r] = cofactor[r][s]
        let linear: [[f64; 3]; 3] = std::array::from_fn(|s| std::array::from_fn(|r| c(r, s) / d));
        let t = self.translation;
        let translation = std::array::from_fn(|r| -(linear[r][0] * t[0] + linear[r][1] * t[1] + linear[r][2] * t[2]));
        Some(Self { linear, translation })
    }
}

fn det3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// How [`register_affine`] searches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistrationOptions {
    /// The spacing (mm) at which atlas brain voxels are sampled, one level
    /// each, coarse to fine. The first level fits 9 parameters (no shear),
    /// the later ones all 12.
    pub levels_mm: Vec<f64>,
    /// The half-width (mm) of the coarse translation search around the
    /// initial placement, front–back and up–down.
    pub search_mm: f64,
    /// The step (mm) of that search.
    pub search_step_mm: f64,
    /// The most cost evaluations of the simplex per level.
    pub max_evaluations: usize,
}

impl Default for RegistrationOptions {
    fn default() -> Self {
        Self {
            levels_mm: vec![4.0, 2.5],
            search_mm: 24.0,
            search_step_mm: 6.0,
            max_evaluations: 4000,
        }
    }
}

/// The result of [`register_affine`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Atlas world → subject world.
    pub transform: AffineTransform,
    /// The normalised cross-correlation reached at the finest level.
    pub ncc: f64,
    /// The cost evaluations spent, all levels together.
    pub evaluations: usize,
}

/// The atlas's brain voxels sampled at one level: world points and
/// centred, unit-norm atlas values.
struct Samples {
    points: Vec<[f64; 3]>,
    values: Vec<f64>,
}

impl Samples {
    fn new(atlas: &Atlas, spacing_mm: f64) -> Self {
        let sp = atlas.image.spacing();
        let stride: [usize; 3] = std::array::from_fn(|a| ((spacing_mm / sp[a]).round() as usize).max(1));
        let [nk, nj, ni] = atlas.image.size().to_kji();
        let (img, mask) = (atlas.image.data(), atlas.mask.data());
        let mut points = Vec::new();
        let mut values = Vec::new();
        for k in (0..nk).step_by(stride[2]) {
            for j in (0..nj).step_by(stride[1]) {
                for i in (0..ni).step_by(stride[0]) {
                    if mask[[k, j, i]] != 0 {
                        let w = atlas.image.voxel_to_world(Voxel::new(i as f64, j as f64, k as f64));
                        points.push(w.to_array());
                        values.push(f64::from(img[[k, j, i]]));
                    }
                }
            }
        }
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        values.iter_mut().for_each(|v| *v -= mean);
        let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
        values.iter_mut().for_each(|v| *v /= norm);
        Self { points, values }
    }

    /// The normalised cross-correlation of the atlas samples with the
    /// subject under `t`, over chunks of [`NCC_CHUNK`] samples in parallel.
    fn ncc(&self, subject: &Volume<f32>, inv: &[[f64; 4]; 4], t: &AffineTransform) -> f64 {
        let n = subject.size().to_ijk();
        let src = subject.as_slice();
        // fixed chunks summed in order: parallel, and the same bits on any
        // number of threads
        let sums: Vec<[f64; 3]> = self
            .points
            .par_chunks(NCC_CHUNK)
            .zip(self.values.par_chunks(NCC_CHUNK))
            .map(|(ps, vs)| {
                let (mut s1, mut s2, mut sv) = (0.0, 0.0, 0.0);
                for (p, v) in ps.iter().zip(vs) {
                    let q = t.apply(*p);
                    let c: [f64; 3] =
                        std::array::from_fn(|r| inv[r][0] * q[0] + inv[r][1] * q[1] + inv[r][2] * q[2] + inv[r][3]);
                    let s = if (0..3).all(|a| c[a] >= -0.5 && c[a] < n[a] as f64 - 0.5) {
                        f64::from(linear(src, n, c))
                    } else {
                        0.0
                    };
                    s1 += s;
                    s2 += s * s;
                    sv += s * v;
                }
                [s1, s2, sv]
            })
            .collect();
        let [s1, s2, sv] = sums
            .iter()
            .fold([0.0; 3], |a, b| [a[0] + b[0], a[1] + b[1], a[2] + b[2]]);
        // the atlas values are centred, so Σ (s − s̄) v = Σ s v
        let m = self.points.len() as f64;
        let var = s2 - s1 * s1 / m;
        if var <= 0.0 { 0.0 } else { sv / var.sqrt() }
    }
}

/// The 12 parameters around the atlas brain's centre `c`, after the initial
/// shift `b0`: `q = A (p − c) + c + b0 + t`, `A = R · Shear · diag(exp s)`.
fn transform_of(x: &[f64; 12], c: [f64; 3], b0: [f64; 3]) -> AffineTransform {
    let (r, s, sh) = (&x[3..6], &x[6..9], &x[9..12]);
    let (cx, sx) = (r[0].cos(), r[0].sin());
    let (cy, sy) = (r[1].cos(), r[1].sin());
    let (cz, sz) = (r[2].cos(), r[2].sin());
    let rx = [[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]];
    let ry = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
    let rz = [[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]];
    let shear = [[1.0, sh[0], sh[1]], [0.0, 1.0, sh[2]], [0.0, 0.0, 1.0]];
    let scale = [[s[0].exp(), 0.0, 0.0], [0.0, s[1].exp(), 0.0], [0.0, 0.0, s[2].exp()]];
    let a = mul(&mul(&mul(&rx, &ry), &mul(&rz, &shear)), &scale);
    let ac: [f64; 3] = std::array::from_fn(|r| a[r][0] * c[0] + a[r][1] * c[1] + a[r][2] * c[2]);
    AffineTransform {
        linear: a,
        translation: std::array::from_fn(|r| c[r] + b0[r] + x[r] - ac[r]),
    }
}

fn mul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    std::array::from_fn(|r| std::array::from_fn(|s| (0..3).map(|k| a[r][k] * b[k][s]).sum()))
}

/// Minimises `f` from `x0` with the Nelder–Mead simplex (standard
/// coefficients: reflection 1, expansion 2, contraction ½, shrink ½), the
/// initial simplex stepping `step[i]` along each axis. Stops when the
/// simplex's values span less than `ftol` or after `max_eval` evaluations.
/// Returns the best point, its value and the evaluations spent.
fn nelder_mead(
    f: &dyn Fn(&[f64]) -> f64,
    x0: &[f64],
    step: &[f64],
    ftol: f64,
    max_eval: usize,
) -> (Vec<f64>, f64, usize) {
    let n = x0.len();
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    simplex.push((x0.to_vec(), f(x0)));
    for i in 0..n {
        let mut x = x0.to_vec();
        x[i] += step[i];
        let v = f(&x);
        simplex.push((x, v));
    }
    let mut evals = n + 1;
    let along = |a: &[f64], b: &[f64], t: f64| -> Vec<f64> { a.iter().zip(b).map(|(a, b)| a + t * (b - a)).collect() };
    while evals < max_eval {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        if (simplex[n].1 - simplex[0].1).abs() < ftol {
            break;
        }
        let centroid: Vec<f64> = (0..n)
            .map(|d| simplex[..n].iter().map(|p| p.0[d]).sum::<f64>() / n as f64)
            .collect();
        let worst = simplex[n].clone();
        let xr = along(&centroid, &worst.0, -1.0);
        let fr = f(&xr);
        evals += 1;
        if fr < simplex[0].1 {
            let xe = along(&centroid, &worst.0, -2.0);
            let fe = f(&xe);
            evals += 1;
            simplex[n] = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (xr, fr);
        } else {
            let (xc, fc) = if fr < worst.1 {
                let xc = along(&centroid, &xr, 0.5);
                let fc = f(&xc);
                (xc, fc)
            } else {
                let xc = along(&centroid, &worst.0, 0.5);
                let fc = f(&xc);
                (xc, fc)
            };
            evals += 1;
            if fc < worst.1.min(fr) {
                simplex[n] = (xc, fc);
            } else {
                let best = simplex[0].0.clone();
                for p in simplex.iter_mut().skip(1) {
                    p.0 = along(&best, &p.0, 0.5);
                    p.1 = f(&p.0);
                }
                evals += n;
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (x, v) = simplex.swap_remove(0);
    (x, v, evals)
}

/// Registers the atlas onto a head image: the affine map from atlas world
/// to subject world that maximises the correlation at the atlas's brain
/// voxels (see the [module](self) docs).
///
/// # Errors
/// [`Error::Degenerate`] for a constant subject, an empty head mask, or a
/// registration that ends on a singular or non-finite map;
/// [`Error::InvalidArgument`] for empty or non-positive levels.
pub fn register_affine(subject: &Volume<f32>, atlas: &Atlas, opts: &RegistrationOptions) -> Result<Registration> {
    if opts.levels_mm.is_empty() || opts.levels_mm.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
        return Err(Error::InvalidArgument(format!(
            "registration levels {:?} mm",
            opts.levels_mm
        )));
    }
    if !(opts.search_mm >= 0.0 && opts.search_step_mm > 0.0) {
        return Err(Error::InvalidArgument(format!(
            "registration search ±{} mm by {} mm",
            opts.search_mm, opts.search_step_mm
        )));
    }
    if subject.as_slice().iter().any(|v| !v.is_finite()) {
        return Err(Error::Degenerate("the image has non-finite values".into()));
    }
    // the atlas brain: centre and top
    let (mut c, mut count, mut atlas_top) = ([0.0; 3], 0usize, f64::MIN);
    for ((k, j, i), m) in atlas.mask.data().indexed_iter() {
        if *m != 0 {
            let w = atlas
                .mask
                .voxel_to_world(Voxel::new(i as f64, j as f64, k as f64))
                .to_array();
            (0..3).for_each(|a| c[a] += w[a]);
            count += 1;
            atlas_top = atlas_top.max(w[2]);
        }
    }
    let c = c.map(|v| v / count as f64);
    // the head: its top, and the centre of the cranial slab under it
    let head = head_mask(subject)?;
    let head_data = head.data();
    let head_points = || {
        head_data
            .indexed_iter()
            .filter(|(_, m)| **m != 0)
            .map(|((k, j, i), _)| head.voxel_to_world(Voxel::new(i as f64, j as f64, k as f64)).to_array())
    };
    let top = head_points().fold(f64::MIN, |a, w| a.max(w[2]));
    // x, y sums and counts over the slab, and over the whole head as a fallback
    let (mut slab, mut all) = ([0.0f64; 3], [0.0f64; 3]);
    let add = |sums: &mut [f64; 3], w: &[f64; 3]| {
        sums[0] += w[0];
        sums[1] += w[1];
        sums[2] += 1.0;
    };
    for w in head_points() {
        add(&mut all, &w);
        if w[2] <= top - 30.0 && w[2] >= top - 50.0 {
            add(&mut slab, &w);
        }
    }
    let slab = if slab[2] == 0.0 { all } else { slab };
    let centre = |a: usize| slab[a] / slab[2];
    let b0 = [centre(0) - c[0], centre(1) - c[1], (top - 10.0) - atlas_top];
    let inv = subject.affine().inverse_matrix();

    let mut x = [0.0f64; 12];
    let mut evaluations = 0;
    let mut ncc = 0.0;
    for (level, spacing) in opts.levels_mm.iter().enumerate() {
        let samples = Samples::new(atlas, *spacing);
        if level == 0 {
            // coarse translations, front–back and up–down
            let n = (opts.search_mm / opts.search_step_mm).floor() as i64;
            let mut best = (f64::MIN, [0.0; 2]);
            for dy in -n..=n {
                for dz in -n..=n {
                    let mut y = x;
                    y[1] = dy as f64 * opts.search_step_mm;
                    y[2] = dz as f64 * opts.search_step_mm;
                    let v = samples.ncc(subject, &inv, &transform_of(&y, c, b0));
                    evaluations += 1;
                    if v > best.0 {
                        best = (v, [y[1], y[2]]);
                    }
                }
            }
            x[1] = best.1[0];
            x[2] = best.1[1];
        }
        let free = if level == 0 { 9 } else { 12 };
        let base = x;
        let cost = |y: &[f64]| {
            let mut full = base;
            full[..free].copy_from_slice(y);
            -samples.ncc(subject, &inv, &transform_of(&full, c, b0))
        };
        let shrink = if level == 0 { 1.0 } else { 0.5 };
        let steps: Vec<f64> = [4.0, 4.0, 4.0, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.03, 0.03, 0.03][..free]
            .iter()
            .map(|s| s * shrink)
            .collect();
        // restart the simplex once from its own optimum (Nelder–Mead stalls
        // on a collapsed simplex)
        for _ in 0..2 {
            let (best, value, e) = nelder_mead(&cost, &x[..free], &steps, 1e-6, opts.max_evaluations);
            evaluations += e;
            x[..free].copy_from_slice(&best);
            ncc = -value;
        }
    }
    let transform = transform_of(&x, c, b0);
    let det = transform.determinant();
    if !(det.is_finite() && det > 1e-3) || transform.translation.iter().any(|t| !t.is_finite()) {
        return Err(Error::Degenerate(format!(
            "the registration ended on a singular map (det {det})"
        )));
    }
    Ok(Registration {
        transform,
        ncc,
        evaluations,
    })
}

/// Skull stripping by atlas registration: [`register_affine`], then the
/// atlas mask carried onto the subject's grid (linear, > ½), closed by
/// ≈ 3 mm, hole-filled and reduced to its largest component.
///
/// # Errors
/// Those of [`register_affine`]; [`Error::Degenerate`] when the carried
/// mask is empty (the atlas landed outside the image).
pub fn atlas_brain_mask(
    subject: &Volume<f32>,
    atlas: &Atlas,
    opts: &RegistrationOptions,
) -> Result<(Volume<u8>, Registration)> {
    let reg = register_affine(subject, atlas, opts)?;
    let Some(inv) = reg.transform.inverse() else {
        return Err(Error::Degenerate("the registration is not invertible".into()));
    };
    // the subject's grid seen from the atlas's world: voxel ↦ inv(T)(A_subject · voxel)
    let lin = subject.affine().linear();
    let o = subject.origin().to_array();
    let linear = mul(&inv.linear, &lin);
    let grid = Affine::from_parts(linear, inv.apply(o))?;
    let mask = atlas.mask.map(|v| f32::from(*v));
    let carried = resample_to_grid(&mask, &grid, subject.size(), Interpolator::Linear, 0.0)?;
    let m = carried.data().mapv(|v| v > 0.5);
    let sp = subject.spacing().iter().fold(f64::MAX, |a, b| a.min(*b));
    let r = ((3.0 / sp).round() as usize).max(1);
    let m = largest_component(&fill_holes(&erode(&dilate(&m, r), r)));
    if !m.iter().any(|v| *v) {
        return Err(Error::Degenerate("the atlas mask landed outside the image".into()));
    }
    Ok((subject.with_data(m.mapv(u8::from))?, reg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_inverse_round_trips() {
        let x = [3.0, -2.0, 5.0, 0.1, -0.05, 0.2, 0.1, -0.1, 0.05, 0.02, -0.03, 0.01];
        let t = transform_of(&x, [1.0, 2.0, 3.0], [0.5, 0.0, -1.0]);
        let inv = t.inverse().unwrap();
        for p in [[0.0, 0.0, 0.0], [10.0, -20.0, 30.0], [-5.0, 7.5, 1.0]] {
            let q = inv.apply(t.apply(p));
            assert!((0..3).all(|a| (q[a] - p[a]).abs() < 1e-9), "{q:?} {p:?}");
        }
        let scale: f64 = x[6..9].iter().map(|s| s.exp()).product();
        assert!((t.determinant() - scale).abs() < 1e-9);
        assert!(
            AffineTransform {
                linear: [[0.0; 3]; 3],
                translation: [0.0; 3]
            }
            .inverse()
            .is_none()
        );
    }

    #[test]
    fn nelder_mead_finds_a_quadratic_minimum() {
        let f = |x: &[f64]| (x[0] - 1.0).powi(2) + 10.0 * (x[1] + 2.0).powi(2) + (x[2] - 0.5).powi(2);
        let (x, v, _) = nelder_mead(&f, &[0.0, 0.0, 0.0], &[1.0, 1.0, 1.0], 1e-14, 10_000);
        assert!(v < 1e-8, "{v}");
        assert!(
            (x[0] - 1.0).abs() < 1e-3 && (x[1] + 2.0).abs() < 1e-3 && (x[2] - 0.5).abs() < 1e-3,
            "{x:?}"
        );
    }
}

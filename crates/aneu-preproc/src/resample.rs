//! Resampling to a target spacing, as SimpleITK's `ResampleImageFilter`
//! with an identity transform.

use aneu_io::{Affine, GridSize, Volume};
use ndarray::Array3;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How values between voxel centres are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Interpolator {
    /// Trilinear (`sitkLinear`), with ITK's clamping at the borders.
    Linear,
    /// Nearest neighbour (`sitkNearestNeighbor`), for masks and labels.
    Nearest,
    /// Cubic B-spline with prefiltering (`sitkBSpline`), mirror boundaries.
    BSpline,
}

/// Options of [`resample_with_options`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResampleOptions {
    /// Target spacing (mm) along i, j, k.
    pub spacing: [f64; 3],
    /// Interpolator.
    pub interpolator: Interpolator,
    /// Value of output voxels whose centre falls outside the input.
    pub default_value: f32,
}

impl Default for ResampleOptions {
    fn default() -> Self {
        Self {
            spacing: [1.0; 3],
            interpolator: Interpolator::Linear,
            default_value: 0.0,
        }
    }
}

impl ResampleOptions {
    /// Sets an isotropic target spacing.
    pub fn with_isotropic(mut self, mm: f64) -> Self {
        self.spacing = [mm; 3];
        self
    }
    /// Sets the target spacing along i, j, k.
    pub fn with_spacing(mut self, s: [f64; 3]) -> Self {
        self.spacing = s;
        self
    }
    /// Sets the interpolator.
    pub fn with_interpolator(mut self, i: Interpolator) -> Self {
        self.interpolator = i;
        self
    }
    /// Sets the outside value.
    pub fn with_default_value(mut self, v: f32) -> Self {
        self.default_value = v;
        self
    }
}

/// Resamples to 1 mm isotropic with linear interpolation.
///
/// # Errors
/// As [`resample_with_options`].
pub fn resample(vol: &Volume<f32>) -> Result<Volume<f32>> {
    resample_with_options(vol, &ResampleOptions::default())
}

/// The output grid: same origin and direction, the new spacing, and
/// `size = round(n · s / s_new)` with Python's round-half-to-even (as the
/// reference script computes it).
fn output_grid(vol: &Volume<f32>, spacing: [f64; 3]) -> Result<(Affine, GridSize)> {
    let s = vol.spacing();
    let n = vol.size().to_ijk();
    let mut size = [0usize; 3];
    for a in 0..3 {
        size[a] = ((n[a] as f64 * s[a] / spacing[a]).round_ties_even() as usize).max(1);
    }
    let d = vol.direction();
    let mut lin = [[0.0; 3]; 3];
    for (r, row) in lin.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = d[r][c] * spacing[c];
        }
    }
    let affine = Affine::from_parts(lin, vol.origin().to_array())?;
    Ok((affine, GridSize::new(size[0], size[1], size[2])))
}

/// Resamples a volume to a new spacing on SimpleITK's output grid.
///
/// Output voxels whose centre lies within half a voxel of the input's
/// outermost centres are interpolated (ITK's `IsInsideBuffer`); the others
/// take `default_value`.
///
/// # Errors
/// [`Error::InvalidArgument`] for a spacing that is not positive and
/// finite, or an output over 2³¹ voxels.
pub fn resample_with_options(vol: &Volume<f32>, opts: &ResampleOptions) -> Result<Volume<f32>> {
    if opts.spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(Error::InvalidArgument(format!("spacing {:?}", opts.spacing)));
    }
    let (affine, size) = output_grid(vol, opts.spacing)?;
    resample_to_grid(vol, &affine, size, opts.interpolator, opts.default_value)
}

/// Puts a label map (vessel labels, say) onto a grid in world space: each
/// output voxel takes the label of the input voxel nearest to its centre
/// ([`Interpolator::Nearest`], as `sitkNearestNeighbor`), 0 outside the
/// input. The two grids may differ in spacing, orientation and axis order.
///
/// # Errors
/// [`Error::InvalidMask`] when `labels` holds no labelled voxel, or none
/// of its labels lands on the grid (the label map is of another region or
/// another series); the errors of [`resample_to_grid`].
pub fn labels_on_grid(labels: &Volume<u8>, affine: &Affine, size: GridSize) -> Result<Volume<u8>> {
    if labels.as_slice().iter().all(|v| *v == 0) {
        return Err(Error::InvalidMask("the label map holds no labelled voxel".into()));
    }
    let out = resample_to_grid(&labels.map(|&v| f32::from(v)), affine, size, Interpolator::Nearest, 0.0)?;
    let out = out.map(|&v| v as u8);
    if out.as_slice().iter().all(|v| *v == 0) {
        return Err(Error::InvalidMask(
            "no labelled voxel of the label map lies on the image's grid (another region or another series?)".into(),
        ));
    }
    Ok(out)
}

/// Resamples a volume onto any grid (an external mask onto an image, say),
/// with the same interpolators and inside rule as [`resample_with_options`].
///
/// # Errors
/// [`Error::InvalidArgument`] for an output over 2³¹ voxels.
pub fn resample_to_grid(
    vol: &Volume<f32>,
    affine: &Affine,
    size: GridSize,
    interpolator: Interpolator,
    default_value: f32,
) -> Result<Volume<f32>> {
    let affine = *affine;
    let opts = ResampleOptions {
        spacing: affine.spacing(),
        interpolator,
        default_value,
    };
    if size.len() > 1 << 31 || size.is_empty() {
        return Err(Error::InvalidArgument(format!("output grid {size:?}")));
    }
    // ITK's arithmetic, so that exact half-voxel ties break as it does:
    // point = origin + M_out · index; cindex = M_in⁻¹ · (point − origin_in)
    let m_out = affine.linear();
    let o_out = affine.origin().to_array();
    let o_in = vol.origin().to_array();
    let inv = vol.affine().inverse_matrix();
    let n = vol.size().to_ijk();
    let samples = vol.as_slice();
    let coef: Vec<f64> = match opts.interpolator {
        Interpolator::BSpline => bspline_coefficients(vol),
        _ => Vec::new(),
    };
    let mut out = Array3::<f32>::zeros(size.to_kji());
    let plane = size.ni * size.nj;
    let Some(dst) = out.as_slice_mut() else {
        return Err(Error::InvalidArgument("output not contiguous".into()));
    };
    let index_of = |o: [f64; 3]| -> [f64; 3] {
        let mut d = [0.0; 3];
        for (r, dr) in d.iter_mut().enumerate() {
            *dr = o_out[r] + (m_out[r][0] * o[0] + m_out[r][1] * o[1] + m_out[r][2] * o[2]) - o_in[r];
        }
        [
            inv[0][0] * d[0] + inv[0][1] * d[1] + inv[0][2] * d[2],
            inv[1][0] * d[0] + inv[1][1] * d[1] + inv[1][2] * d[2],
            inv[2][0] * d[0] + inv[2][1] * d[1] + inv[2][2] * d[2],
        ]
    };
    // the step of the continuous index along an output row
    let step = {
        let (a, b) = (index_of([1.0, 0.0, 0.0]), index_of([0.0, 0.0, 0.0]));
        [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
    };
    if opts.interpolator != Interpolator::BSpline
        && let Some(t) = separable_tables(&index_of, &m_out, &inv, n, size, opts.interpolator)
    {
        let fill = opts.default_value;
        let (sj, sk) = (n[0], n[0] * n[1]);
        dst.par_chunks_mut(plane).enumerate().for_each(|(k, p)| {
            for (j, row) in p.chunks_mut(size.ni).enumerate() {
                if !(t[2].inside[k] && t[1].inside[j]) {
                    row.fill(fill);
                    continue;
                }
                let (kb, kn, dk) = (t[2].base[k] * sk, t[2].next[k] * sk, t[2].d[k]);
                let (jb, jn, dj) = (t[1].base[j] * sj, t[1].next[j] * sj, t[1].d[j]);
                let ti = &t[0];
                match opts.interpolator {
                    Interpolator::Nearest => {
                        // `base` holds the rounded index for nearest
                        let r = &samples[kb + jb..];
                        for (i, o) in row.iter_mut().enumerate() {
                            *o = if ti.inside[i] { r[ti.base[i]] } else { fill };
                        }
                    }
                    _ => {
                        let (r00, r01) = (&samples[kb + jb..], &samples[kb + jn..]);
                        let (r10, r11) = (&samples[kn + jb..], &samples[kn + jn..]);
                        for (i, o) in row.iter_mut().enumerate() {
                            if !ti.inside[i] {
                                *o = fill;
                                continue;
                            }
                            let (a, b, x) = (ti.base[i], ti.next[i], ti.d[i]);
                            let lerp = |r: &[f32]| {
                                let v0 = f64::from(r[a]);
                                v0 + x * (f64::from(r[b]) - v0)
                            };
                            let (c00, c01, c10, c11) = (lerp(r00), lerp(r01), lerp(r10), lerp(r11));
                            let c0 = c00 + dj * (c01 - c00);
                            let c1 = c10 + dj * (c11 - c10);
                            *o = (c0 + dk * (c1 - c0)) as f32;
                        }
                    }
                }
            }
        });
        return Ok(Volume::new(out, affine)?);
    }
    dst.par_chunks_mut(plane).enumerate().for_each(|(k, p)| {
        for j in 0..size.nj {
            let row0 = index_of([0.0, j as f64, k as f64]);
            for i in 0..size.ni {
                // nearest keeps ITK's exact per-voxel arithmetic (ties);
                // the smooth interpolators step along the row
                let c = if opts.interpolator == Interpolator::Nearest {
                    index_of([i as f64, j as f64, k as f64])
                } else {
                    let t = i as f64;
                    [row0[0] + t * step[0], row0[1] + t * step[1], row0[2] + t * step[2]]
                };
                let inside = (0..3).all(|a| c[a] >= -0.5 && c[a] < n[a] as f64 - 0.5);
                p[j * size.ni + i] = if !inside {
                    opts.default_value
                } else {
                    match opts.interpolator {
                        Interpolator::Linear => linear(samples, n, c),
                        Interpolator::Nearest => nearest(samples, n, c),
                        Interpolator::BSpline => bspline(&coef, n, c),
                    }
                };
            }
        }
    });
    Ok(Volume::new(out, affine)?)
}

/// Per-axis lookup for an axis-aligned mapping: for output index `t` along
/// the axis, the input neighbours, the fraction between them, and whether
/// the continuous index lies inside the buffer.
struct AxisTable {
    base: Vec<usize>,
    next: Vec<usize>,
    d: Vec<f64>,
    inside: Vec<bool>,
}

/// When every output axis maps onto one input axis (the SimpleITK grid rule
/// keeps the direction, so this is the usual case), the continuous index is
/// separable and the interpolation weights can be tabulated once per axis.
///
/// Round-off off-diagonals (an oblique direction cancelled by its inverse)
/// are accepted below 1e-9 voxel across the grid. With exactly diagonal
/// matrices every off-diagonal product is an exact zero, so the tables
/// reproduce ITK's per-voxel arithmetic bit for bit, half-voxel ties of
/// nearest included; with round-off off-diagonals an exact tie is decided
/// by that round-off, in ITK as here.
fn separable_tables(
    index_of: &impl Fn([f64; 3]) -> [f64; 3],
    m_out: &[[f64; 3]; 3],
    inv: &[[f64; 4]; 4],
    n: [usize; 3],
    size: GridSize,
    interp: Interpolator,
) -> Option<[AxisTable; 3]> {
    let out_n = size.to_ijk();
    let exact = (0..3).all(|r| (0..3).all(|c| r == c || (m_out[r][c] == 0.0 && inv[r][c] == 0.0)));
    if !exact {
        let o = index_of([0.0; 3]);
        for a in 0..3 {
            let mut u = [0.0; 3];
            u[a] = 1.0;
            let e = index_of(u);
            for b in (0..3).filter(|&b| b != a) {
                if ((e[b] - o[b]) * out_n[a] as f64).abs() > 1e-9 {
                    return None;
                }
            }
        }
    }
    let table = |a: usize| {
        let len = out_n[a];
        let mut t = AxisTable {
            base: Vec::with_capacity(len),
            next: Vec::with_capacity(len),
            d: Vec::with_capacity(len),
            inside: Vec::with_capacity(len),
        };
        for s in 0..len {
            let mut o = [0.0; 3];
            o[a] = s as f64;
            let c = index_of(o)[a];
            t.inside.push(c >= -0.5 && c < n[a] as f64 - 0.5);
            if interp == Interpolator::Nearest {
                // round half up; c ≥ −0.5 inside, so truncation is floor
                t.base.push(((c + 0.5).max(0.0) as usize).min(n[a] - 1));
                t.next.push(0);
                t.d.push(0.0);
            } else {
                // ITK: the base is clamped into the image and a neighbour
                // past the end reuses the base
                let b = (c.floor().max(0.0) as usize).min(n[a] - 1);
                t.base.push(b);
                t.next.push(if b + 1 < n[a] { b + 1 } else { b });
                t.d.push((c - b as f64).clamp(0.0, 1.0));
            }
        }
        t
    };
    Some([table(0), table(1), table(2)])
}

#[inline]
fn at(src: &[f32], n: [usize; 3], i: usize, j: usize, k: usize) -> f64 {
    f64::from(src[(k * n[1] + j) * n[0] + i])
}

/// ITK's `LinearInterpolateImageFunction`: the base index is clamped to the
/// image and neighbours past the end reuse the base.
pub(crate) fn linear(src: &[f32], n: [usize; 3], c: [f64; 3]) -> f32 {
    // interior: all eight neighbours exist
    if (0..3).all(|a| c[a] >= 0.0 && c[a] < (n[a] - 1) as f64) {
        let (i, j, k) = (c[0] as usize, c[1] as usize, c[2] as usize);
        let (x, y, z) = (c[0] - i as f64, c[1] - j as f64, c[2] - k as f64);
        let (sj, sk) = (n[0], n[0] * n[1]);
        let b = k * sk + j * sj + i;
        let v = |o: usize| f64::from(src[b + o]);
        let c00 = v(0) + x * (v(1) - v(0));
        let c10 = v(sj) + x * (v(sj + 1) - v(sj));
        let c01 = v(sk) + x * (v(sk + 1) - v(sk));
        let c11 = v(sk + sj) + x * (v(sk + sj + 1) - v(sk + sj));
        let c0 = c00 + y * (c10 - c00);
        let c1 = c01 + y * (c11 - c01);
        return (c0 + z * (c1 - c0)) as f32;
    }
    let mut base = [0usize; 3];
    let mut d = [0.0; 3];
    let mut next = [0usize; 3];
    for a in 0..3 {
        let b = c[a].floor().max(0.0);
        base[a] = (b as usize).min(n[a] - 1);
        d[a] = (c[a] - base[a] as f64).max(0.0);
        next[a] = if base[a] + 1 < n[a] { base[a] + 1 } else { base[a] };
    }
    let mut v = 0.0;
    for (dk, kk) in [(1.0 - d[2], base[2]), (d[2], next[2])] {
        for (dj, jj) in [(1.0 - d[1], base[1]), (d[1], next[1])] {
            for (di, ii) in [(1.0 - d[0], base[0]), (d[0], next[0])] {
                let w = dk * dj * di;
                if w != 0.0 {
                    v += w * at(src, n, ii, jj, kk);
                }
            }
        }
    }
    v as f32
}

/// ITK's nearest neighbour: round half up.
fn nearest(src: &[f32], n: [usize; 3], c: [f64; 3]) -> f32 {
    // the caller's inside test guarantees c ≥ −0.5, so truncation is floor
    let idx = |a: usize| ((c[a] + 0.5) as usize).min(n[a] - 1);
    src[(idx(2) * n[1] + idx(1)) * n[0] + idx(0)]
}

const POLE: f64 = -0.267_949_192_431_122_7; // √3 − 2

/// ITK's `BSplineDecompositionImageFilter` (order 3, tolerance 1e-10) on
/// one line, in place.
fn decompose_line(c: &mut [f64]) {
    let len = c.len();
    if len < 2 {
        return;
    }
    let z = POLE;
    let gain = (1.0 - z) * (1.0 - 1.0 / z);
    for v in c.iter_mut() {
        *v *= gain;
    }
    // initial causal coefficient, mirror boundaries
    let horizon = ((1e-10f64).ln() / z.abs().ln()).ceil() as usize;
    if horizon < len {
        let mut zn = z;
        let mut sum = c[0];
        for v in c.iter().take(horizon).skip(1) {
            sum += zn * v;
            zn *= z;
        }
        c[0] = sum;
    } else {
        let iz = 1.0 / z;
        let mut zn = z;
        let mut z2n = z.powi(len as i32 - 1);
        let mut sum = c[0] + z2n * c[len - 1];
        z2n = z2n * z2n * iz;
        for v in c.iter().take(len - 1).skip(1) {
            sum += (zn + z2n) * v;
            zn *= z;
            z2n *= iz;
        }
        c[0] = sum / (1.0 - zn * zn);
    }
    for n in 1..len {
        c[n] += z * c[n - 1];
    }
    c[len - 1] = (z / (z * z - 1.0)) * (z * c[len - 2] + c[len - 1]);
    for n in (0..len - 1).rev() {
        c[n] = z * (c[n + 1] - c[n]);
    }
}

/// Cubic B-spline coefficients (f64, as ITK keeps them), separable along
/// i, j and k, in `[k, j, i]` order.
fn bspline_coefficients(vol: &Volume<f32>) -> Vec<f64> {
    let mut c = vol.data().mapv(f64::from);
    for axis in 0..3 {
        let lanes: Vec<_> = c.lanes_mut(ndarray::Axis(axis)).into_iter().collect();
        lanes.into_par_iter().for_each(|mut lane| {
            let mut v: Vec<f64> = lane.to_vec();
            decompose_line(&mut v);
            for (d, s) in lane.iter_mut().zip(v) {
                *d = s;
            }
        });
    }
    c.into_raw_vec_and_offset().0
}

/// ITK's `BSplineInterpolateImageFunction` (order 3) on coefficients.
fn bspline(coef: &[f64], n: [usize; 3], c: [f64; 3]) -> f32 {
    let mut idx = [[0usize; 4]; 3];
    let mut w = [[0.0; 4]; 3];
    for a in 0..3 {
        let f = c[a].floor();
        let start = f as i64 - 1;
        let t = c[a] - f;
        let w3 = t * t * t / 6.0;
        let w0 = 1.0 / 6.0 + 0.5 * t * (t - 1.0) - w3;
        let w2 = t + w0 - 2.0 * w3;
        let w1 = 1.0 - w0 - w2 - w3;
        w[a] = [w0, w1, w2, w3];
        let last = n[a] as i64 - 1;
        for (k, slot) in idx[a].iter_mut().enumerate() {
            let mut p = start + k as i64;
            if last == 0 {
                p = 0;
            } else {
                if p < 0 {
                    p = -p;
                }
                if p > last {
                    p = 2 * last - p;
                }
                p = p.clamp(0, last);
            }
            *slot = p as usize;
        }
    }
    let mut v = 0.0;
    for (wk, &kk) in w[2].iter().zip(&idx[2]) {
        for (wj, &jj) in w[1].iter().zip(&idx[1]) {
            let row = (kk * n[1] + jj) * n[0];
            let mut s = 0.0;
            for (wi, &ii) in w[0].iter().zip(&idx[0]) {
                s += wi * coef[row + ii];
            }
            v += wk * wj * s;
        }
    }
    v as f32
}

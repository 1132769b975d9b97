//! N4 bias-field correction (Tustison et al. 2010), following ITK's
//! `N4BiasFieldCorrectionImageFilter` and SimpleITK's defaults.
//!
//! The log image inside the mask is sharpened by Wiener deconvolution of its
//! histogram with a Gaussian; the residual between the log image and its
//! sharpened version is fitted with a cubic B-spline (one level of Lee,
//! Wolberg & Shin's scattered-data approximation) whose control lattice is
//! added to the accumulated lattice. Iterations stop when the coefficient of
//! variation of the change in the field falls under the threshold; the
//! lattice then doubles its spans (exact subdivision) for the next level.

use aneu_io::Volume;
use ndarray::{Array3, ArrayView3, Axis};
use rayon::prelude::*;
use rustfft::FftPlanner;
use rustfft::num_complex::Complex64;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// N4 parameters, with SimpleITK's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct N4Options {
    /// Iterations per fitting level (the number of levels is its length).
    pub iterations: Vec<usize>,
    /// Convergence threshold on the coefficient of variation.
    pub convergence: f64,
    /// Control points per dimension at the first level.
    pub control_points: usize,
    /// Histogram bins for sharpening.
    pub bins: usize,
    /// Full width at half maximum of the Gaussian bias model (log domain).
    pub fwhm: f64,
    /// Wiener filter noise.
    pub wiener_noise: f64,
    /// The fit runs on the image shrunk by this factor.
    pub shrink: usize,
}

impl Default for N4Options {
    fn default() -> Self {
        Self {
            iterations: vec![50, 50, 50, 50],
            convergence: 0.001,
            control_points: 4,
            bins: 200,
            fwhm: 0.15,
            wiener_noise: 0.01,
            shrink: 4,
        }
    }
}

impl N4Options {
    /// Sets the shrink factor.
    pub fn with_shrink(mut self, s: usize) -> Self {
        self.shrink = s;
        self
    }
    /// Sets the iterations per level.
    pub fn with_iterations(mut self, it: Vec<usize>) -> Self {
        self.iterations = it;
        self
    }
}

/// The result of [`n4`].
pub struct N4Result {
    /// `input / exp(log_bias)`.
    pub corrected: Volume<f32>,
    /// The log bias field at full resolution.
    pub log_bias: Volume<f32>,
    /// Iterations run per level, and the last convergence value.
    pub iterations: Vec<(usize, f64)>,
}

/// Uniform cubic B-spline basis at `t` in [0, 1).
#[inline]
fn basis(t: f64) -> [f64; 4] {
    let t2 = t * t;
    let t3 = t2 * t;
    [
        (1.0 - t).powi(3) / 6.0,
        (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0,
        (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0,
        t3 / 6.0,
    ]
}

/// Parametric position of voxel index `x` on an axis of `n` voxels, for a
/// lattice with `spans` spans over the axis' extent: span and fraction.
#[inline]
fn param(x: usize, n: usize, spans: usize) -> (usize, f64) {
    if n < 2 {
        return (0, 0.0);
    }
    let u = x as f64 / (n - 1) as f64 * spans as f64;
    let s = (u.floor() as usize).min(spans - 1);
    (s, u - s as f64)
}

/// Per-axis B-spline weights: for each voxel index along an axis of `n`
/// voxels, its first control point and its four basis weights.
fn axis_weights(n: usize, spans: usize) -> Vec<(usize, [f64; 4])> {
    (0..n)
        .map(|x| {
            let (s, t) = param(x, n, spans);
            (s, basis(t))
        })
        .collect()
}

/// `dst += w · src`, element by element.
#[inline]
fn axpy(dst: &mut [f64], w: f64, src: &[f64]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += w * s);
}

/// Contracts the last axis of `a` (`[p, q, n]`) with the per-voxel weights
/// `w` (each raised to `power`) onto `c` control points: `[p, q, c]`,
/// `out[.., s + t] += w[t]^power · a[.., x]` for each voxel `x` with first
/// control point `s`.
fn contract_last(a: &Array3<f64>, w: &[(usize, [f64; 4])], power: i32, c: usize) -> Array3<f64> {
    let (p, q, n) = a.dim();
    let a = a.as_standard_layout();
    let src = a.as_slice().unwrap_or_default();
    let wp: Vec<(usize, [f64; 4])> = w.iter().map(|(s, b)| (*s, b.map(|v| v.powi(power)))).collect();
    let mut out = vec![0.0f64; p * q * c];
    out.par_chunks_mut(c).zip(src.par_chunks(n)).for_each(|(o, l)| {
        for (v, (s, b)) in l.iter().zip(&wp) {
            if *v != 0.0 {
                for t in 0..4 {
                    o[s + t] += b[t] * v;
                }
            }
        }
    });
    Array3::from_shape_vec((p, q, c), out).unwrap_or_else(|_| Array3::zeros((p, q, c)))
}

/// `Σ_x w(x)^power · a[x]` onto the control lattice of shape `c`
/// (`[ck, cj, ci]`), one axis at a time: `i`, then `j`, then `k`.
fn contract3(a: &Array3<f64>, w: &[Vec<(usize, [f64; 4])>; 3], power: i32, c: (usize, usize, usize)) -> Array3<f64> {
    let a1 = contract_last(a, &w[2], power, c.2);
    let (nk, nj) = (a1.shape()[0], a1.shape()[1]);
    let src = a1.as_slice().unwrap_or_default();
    let ci = c.2;
    // j: [nk, nj, ci] → [nk, cj, ci]
    let mut a2 = vec![0.0f64; nk * c.1 * ci];
    for k in 0..nk {
        for (j, (s, b)) in w[1].iter().enumerate() {
            let row = &src[(k * nj + j) * ci..][..ci];
            for (t, wt) in b.iter().enumerate() {
                axpy(&mut a2[(k * c.1 + s + t) * ci..][..ci], wt.powi(power), row);
            }
        }
    }
    // k: [nk, cj, ci] → [ck, cj, ci]
    let plane = c.1 * ci;
    let mut a3 = vec![0.0f64; c.0 * plane];
    for (k, (s, b)) in w[0].iter().enumerate() {
        let src = &a2[k * plane..][..plane];
        for (t, wt) in b.iter().enumerate() {
            axpy(&mut a3[(s + t) * plane..][..plane], wt.powi(power), src);
        }
    }
    Array3::from_shape_vec(c, a3).unwrap_or_else(|_| Array3::zeros(c))
}

/// A control-point lattice `[ck, cj, ci]` with `spans + 3` points per axis.
#[derive(Clone)]
struct Lattice {
    spans: [usize; 3],
    phi: Array3<f64>,
}

impl Lattice {
    fn zeros(spans: [usize; 3]) -> Self {
        Self {
            spans,
            phi: Array3::zeros((spans[2] + 3, spans[1] + 3, spans[0] + 3)),
        }
    }

    /// Evaluates on a grid of `shape = [nk, nj, ni]`. The tensor-product
    /// spline is separable, so it is expanded one axis at a time (`i`,
    /// then `j`, then `k`): four products per voxel and axis instead of
    /// 64 per voxel.
    fn evaluate(&self, shape: [usize; 3]) -> Array3<f64> {
        self.evaluate_with(shape, |v| v)
    }

    /// [`Lattice::evaluate`], each value passed through `f` (the last
    /// axis is accumulated in `f64` a plane at a time).
    fn evaluate_with<T: Copy + Default + Send>(&self, shape: [usize; 3], f: impl Fn(f64) -> T + Sync) -> Array3<T> {
        let [nk, nj, ni] = shape;
        let (wk, wj, wi) = (
            axis_weights(nk, self.spans[2]),
            axis_weights(nj, self.spans[1]),
            axis_weights(ni, self.spans[0]),
        );
        // i: [ck, cj, ci] → [ck, cj, ni]
        let phi = self.phi.as_standard_layout();
        let (ck, cj, ci) = phi.dim();
        let phi = phi.as_slice().unwrap_or_default();
        let mut a = vec![0.0f64; ck * cj * ni];
        for (o, l) in a.chunks_mut(ni).zip(phi.chunks(ci)) {
            for (x, (s, b)) in wi.iter().enumerate() {
                o[x] = b[0] * l[*s] + b[1] * l[s + 1] + b[2] * l[s + 2] + b[3] * l[s + 3];
            }
        }
        // j: [ck, cj, ni] → [ck, nj, ni]
        let mut p = vec![0.0f64; ck * nj * ni];
        for c in 0..ck {
            for (j, (s, b)) in wj.iter().enumerate() {
                let dst = &mut p[(c * nj + j) * ni..][..ni];
                for (t, w) in b.iter().enumerate() {
                    axpy(dst, *w, &a[(c * cj + s + t) * ni..][..ni]);
                }
            }
        }
        // k: [ck, nj, ni] → [nk, nj, ni], a plane at a time in parallel
        let plane = nj * ni;
        let mut out = vec![T::default(); nk * plane];
        out.par_chunks_mut(plane.max(1))
            .zip(wk.par_iter())
            .for_each(|(dst, (s, b))| {
                let mut acc = vec![0.0f64; plane];
                for (t, w) in b.iter().enumerate() {
                    axpy(&mut acc, *w, &p[(s + t) * plane..][..plane]);
                }
                dst.iter_mut().zip(&acc).for_each(|(d, a)| *d = f(*a));
            });
        Array3::from_shape_vec((nk, nj, ni), out).unwrap_or_else(|_| Array3::from_elem((nk, nj, ni), T::default()))
    }

    /// One level of the scattered-data approximation of `values` at the
    /// masked voxels (Lee, Wolberg & Shin, eq. 5–6): each control point
    /// takes `Σ w²·φ / Σ w²` over the voxels it supports, with
    /// `φ = w·v / Σ w²`. With `w = wk·wj·wi` both sums are separable:
    /// the numerator contracts `v / (Sk·Sj·Si)` with the cubed axis
    /// weights, the denominator the mask with the squared ones
    /// (`S` being each axis' sum of squared weights).
    fn fit(spans: [usize; 3], values: &Array3<f64>, mask: &Array3<bool>) -> Self {
        let mut l = Lattice::zeros(spans);
        let [nk, nj, ni] = [values.shape()[0], values.shape()[1], values.shape()[2]];
        let w = [
            axis_weights(nk, spans[2]),
            axis_weights(nj, spans[1]),
            axis_weights(ni, spans[0]),
        ];
        let sq =
            |w: &[(usize, [f64; 4])]| -> Vec<f64> { w.iter().map(|(_, b)| b.iter().map(|x| x * x).sum()).collect() };
        let (sk, sj, si) = (sq(&w[0]), sq(&w[1]), sq(&w[2]));
        let u = ndarray::Zip::indexed(values)
            .and(mask)
            .map_collect(|(k, j, i), v, m| if *m { v / (sk[k] * sj[j] * si[i]) } else { 0.0 });
        let inside = mask.mapv(|m| if m { 1.0 } else { 0.0 });
        let c = l.phi.dim();
        let num = contract3(&u, &w, 3, c);
        let den = contract3(&inside, &w, 2, c);
        l.phi = ndarray::Zip::from(&num)
            .and(&den)
            .map_collect(|n, d| if *d > 0.0 { n / d } else { 0.0 });
        l
    }

    /// Doubles the spans along every axis by exact cubic subdivision.
    fn refine(&self) -> Self {
        let mut phi = self.phi.clone();
        for axis in 0..3 {
            let n_old = phi.shape()[axis];
            let spans = n_old - 3;
            let n_new = 2 * spans + 3;
            let mut shape = [phi.shape()[0], phi.shape()[1], phi.shape()[2]];
            shape[axis] = n_new;
            let mut next = Array3::<f64>::zeros(shape);
            for (mut dst, src) in next.lanes_mut(Axis(axis)).into_iter().zip(phi.lanes(Axis(axis))) {
                for jn in 0..n_new {
                    dst[jn] = if jn % 2 == 1 {
                        let l = (jn - 1) / 2;
                        (src[l] + 6.0 * src[l + 1] + src[l + 2]) / 8.0
                    } else {
                        let l = jn / 2;
                        (src[l] + src[l + 1]) / 2.0
                    };
                }
            }
            phi = next;
        }
        Lattice {
            spans: [2 * self.spans[0], 2 * self.spans[1], 2 * self.spans[2]],
            phi,
        }
    }

    fn add(&mut self, other: &Lattice) {
        self.phi += &other.phi;
    }
}

/// Voxels per parallel chunk of the sharpening and convergence passes; the
/// chunks' partial sums are added in chunk order, so the results do not
/// depend on the number of threads.
const CHUNK: usize = 1 << 14;

/// Sharpens the masked log intensities (ITK's `SharpenImage`).
fn sharpen(log: &Array3<f64>, mask: &Array3<bool>, o: &N4Options) -> Array3<f64> {
    let (Some(lv), Some(mv)) = (log.as_slice(), mask.as_slice()) else {
        return log.clone();
    };
    let (lo, hi) = lv
        .par_chunks(CHUNK)
        .zip(mv.par_chunks(CHUNK))
        .map(|(l, m)| {
            l.iter()
                .zip(m)
                .filter(|(_, m)| **m)
                .fold((f64::MAX, f64::MIN), |(lo, hi), (v, _)| (lo.min(*v), hi.max(*v)))
        })
        .reduce(|| (f64::MAX, f64::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    let bins = o.bins;
    let slope = (hi - lo) / (bins - 1) as f64;
    if slope.is_nan() || slope <= 0.0 {
        return log.clone();
    }
    let h = lv
        .par_chunks(CHUNK)
        .zip(mv.par_chunks(CHUNK))
        .map(|(l, m)| {
            let mut h = vec![0.0f64; bins];
            for (v, _) in l.iter().zip(m).filter(|(_, m)| **m) {
                let c = (v - lo) / slope;
                let idx = (c.floor() as usize).min(bins - 1);
                let off = c - idx as f64;
                h[idx] += 1.0 - off;
                if idx + 1 < bins {
                    h[idx + 1] += off;
                }
            }
            h
        })
        // in chunk order, not rayon's reduction tree (whose shape depends
        // on work stealing): the same sums, bit for bit, in every run and
        // on any number of threads
        .collect::<Vec<_>>()
        .into_iter()
        .fold(vec![0.0f64; bins], |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        });
    let exponent = ((bins as f64).ln() / 2f64.ln()).ceil() as u32 + 1;
    let padded = 1usize << exponent;
    let offset = ((padded - bins) as f64 * 0.5).floor() as usize;
    let mut planner = FftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(padded);
    let inv = planner.plan_fft_inverse(padded);
    let mut vf: Vec<Complex64> = vec![Complex64::new(0.0, 0.0); padded];
    for (n, &x) in h.iter().enumerate() {
        vf[n + offset] = Complex64::new(x, 0.0);
    }
    fwd.process(&mut vf);
    let scaled = o.fwhm / slope;
    let exp_factor = 4.0 * 2f64.ln() / (scaled * scaled);
    let scale_factor = 2.0 * (2f64.ln() / std::f64::consts::PI).sqrt() / scaled;
    let mut ff = vec![Complex64::new(0.0, 0.0); padded];
    ff[0] = Complex64::new(scale_factor, 0.0);
    let half = padded / 2;
    for n in 1..=half {
        let v = scale_factor * (-(n as f64).powi(2) * exp_factor).exp();
        ff[n] = Complex64::new(v, 0.0);
        ff[padded - n] = Complex64::new(v, 0.0);
    }
    if padded.is_multiple_of(2) {
        ff[half] = Complex64::new(scale_factor * (-0.25 * (padded as f64).powi(2) * exp_factor).exp(), 0.0);
    }
    fwd.process(&mut ff);
    let norm = 1.0 / padded as f64;
    let mut u: Vec<Complex64> = vf
        .iter()
        .zip(&ff)
        .map(|(v, f)| v * f.conj() / (f.norm_sqr() + o.wiener_noise))
        .collect();
    inv.process(&mut u);
    let u: Vec<f64> = u.iter().map(|c| (c.re * norm).max(0.0)).collect();
    let mut num: Vec<Complex64> = (0..padded)
        .map(|n| Complex64::new((lo + (n as f64 - offset as f64) * slope) * u[n], 0.0))
        .collect();
    let mut den: Vec<Complex64> = u.iter().map(|&x| Complex64::new(x, 0.0)).collect();
    fwd.process(&mut num);
    fwd.process(&mut den);
    for n in 0..padded {
        num[n] *= ff[n];
        den[n] *= ff[n];
    }
    inv.process(&mut num);
    inv.process(&mut den);
    let e: Vec<f64> = (0..bins)
        .map(|n| {
            let d = den[n + offset].re;
            if d != 0.0 { num[n + offset].re / d } else { 0.0 }
        })
        .collect();
    let mut out = log.clone();
    if let Some(ov) = out.as_slice_mut() {
        ov.par_chunks_mut(CHUNK).zip(mv.par_chunks(CHUNK)).for_each(|(o, m)| {
            for (v, _) in o.iter_mut().zip(m).filter(|(_, m)| **m) {
                let c = (*v - lo) / slope;
                let idx = c.floor() as usize;
                *v = if idx + 1 < bins {
                    e[idx] + (e[idx + 1] - e[idx]) * (c - idx as f64)
                } else {
                    e[bins - 1]
                };
            }
        });
    }
    out
}

/// Coefficient of variation of `exp(a − b)` over the mask.
fn convergence(a: &Array3<f64>, b: &Array3<f64>, mask: &Array3<bool>) -> f64 {
    let (Some(av), Some(bv), Some(mv)) = (a.as_slice(), b.as_slice(), mask.as_slice()) else {
        return 0.0;
    };
    // Welford per chunk, merged in order (Chan et al.)
    let (n, mean, m2) = av
        .par_chunks(CHUNK)
        .zip(bv.par_chunks(CHUNK))
        .zip(mv.par_chunks(CHUNK))
        .map(|((x, y), m)| {
            let (mut n, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
            for ((x, y), _) in x.iter().zip(y).zip(m).filter(|(_, m)| **m) {
                let v = (x - y).exp();
                n += 1.0;
                let d = v - mean;
                mean += d / n;
                m2 += d * (v - mean);
            }
            (n, mean, m2)
        })
        // merged in chunk order, deterministic (see `sharpen`)
        .collect::<Vec<_>>()
        .into_iter()
        .fold((0.0, 0.0, 0.0), |(na, ma, sa), (nb, mb, sb)| {
            let n = na + nb;
            if n == 0.0 {
                return (0.0, 0.0, 0.0);
            }
            let d = mb - ma;
            (n, ma + d * nb / n, sa + sb + d * d * na * nb / n)
        });
    if n < 2.0 {
        return 0.0;
    }
    (m2 / (n - 1.0)).sqrt() / mean
}

/// ITK's `ShrinkImageFilter`: every `s`-th voxel, with the output centred
/// on the input (output index o samples input index
/// `round((n − 1)/2 + (o − (m − 1)/2)·s)`, m = ⌊n / s⌋).
fn shrink<T: Copy>(a: ArrayView3<'_, T>, s: usize) -> Array3<T> {
    let sh = a.shape();
    let m = [(sh[0] / s).max(1), (sh[1] / s).max(1), (sh[2] / s).max(1)];
    let off = |ax: usize| -> usize {
        let c = (sh[ax] as f64 - 1.0) / 2.0 - (m[ax] as f64 - 1.0) / 2.0 * s as f64;
        (c + 0.5).floor().max(0.0) as usize
    };
    let o = [off(0), off(1), off(2)];
    Array3::from_shape_fn((m[0], m[1], m[2]), |(k, j, i)| {
        a[[
            (k * s + o[0]).min(sh[0] - 1),
            (j * s + o[1]).min(sh[1] - 1),
            (i * s + o[2]).min(sh[2] - 1),
        ]]
    })
}

/// N4 bias-field correction of a positive image inside `mask` (voxels with a
/// non-zero mask value and a positive intensity take part).
///
/// # Errors
/// [`Error::InvalidMask`] if the mask's shape differs or no voxel takes
/// part; [`Error::InvalidArgument`] for bad options.
pub fn n4(image: &Volume<f32>, mask: &Volume<u8>, o: &N4Options) -> Result<N4Result> {
    if mask.size() != image.size() {
        return Err(Error::InvalidMask(format!(
            "mask {:?} vs image {:?}",
            mask.size(),
            image.size()
        )));
    }
    if o.shrink == 0 || o.bins < 2 || o.control_points < 4 || o.iterations.is_empty() {
        return Err(Error::InvalidArgument(format!("N4 options {o:?}")));
    }
    // shrinking picks voxels, so it commutes with the per-voxel log and
    // test: only the shrunk grid is transformed
    let img_s = shrink(image.data(), o.shrink);
    let m = ndarray::Zip::from(&img_s)
        .and(&shrink(mask.data(), o.shrink))
        .map_collect(|v, m| *m != 0 && *v > 0.0 && v.is_finite());
    let log_in = img_s.mapv(|v| {
        if v > 0.0 && v.is_finite() {
            f64::from(v).ln()
        } else {
            0.0
        }
    });
    if !m.iter().any(|v| *v) {
        return Err(Error::InvalidMask(
            "no voxel of the mask has a positive intensity".into(),
        ));
    }
    let shape = [log_in.shape()[0], log_in.shape()[1], log_in.shape()[2]];
    let s0 = o.control_points - 3;
    let mut total = Lattice::zeros([s0, s0, s0]);
    let mut bias = Array3::<f64>::zeros(log_in.raw_dim());
    let mut log_u = log_in.clone();
    let mut report = Vec::new();
    for (level, &max_it) in o.iterations.iter().enumerate() {
        let mut cv = f64::MAX;
        let mut it = 0;
        while cv > o.convergence && it < max_it {
            let sharp = sharpen(&log_u, &m, o);
            let residual = &log_u - &sharp;
            let fit = Lattice::fit(total.spans, &residual, &m);
            total.add(&fit);
            let new_bias = total.evaluate(shape);
            cv = convergence(&bias, &new_bias, &m);
            bias = new_bias;
            log_u = &log_in - &bias;
            it += 1;
        }
        report.push((it, cv));
        if level + 1 < o.iterations.len() {
            total = total.refine();
        }
    }
    let s = image.size();
    let log_bias = total.evaluate_with(s.to_kji(), |v| v as f32);
    let corrected = ndarray::Zip::from(&image.data())
        .and(&log_bias)
        .par_map_collect(|v, b| v / b.exp());
    Ok(N4Result {
        corrected: image.with_data(corrected)?,
        log_bias: image.with_data(log_bias)?,
        iterations: report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Subdivision is exact: the refined lattice evaluates to the same field.
    #[test]
    fn refinement_is_exact() {
        let mut l = Lattice::zeros([1, 2, 1]);
        for (n, v) in l.phi.iter_mut().enumerate() {
            *v = ((n * 37) % 11) as f64 - 5.0;
        }
        let a = l.evaluate([9, 7, 8]);
        let b = l.refine().evaluate([9, 7, 8]);
        for (x, y) in a.iter().zip(b.iter()) {
            assert!((x - y).abs() < 1e-9, "{x} vs {y}");
        }
    }

    /// The per-voxel definition of the lattice's value (64 products per
    /// voxel), as the separable evaluation must reproduce it.
    fn evaluate_reference(l: &Lattice, [nk, nj, ni]: [usize; 3]) -> Array3<f64> {
        Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| {
            let (sk, tk) = param(k, nk, l.spans[2]);
            let (sj, tj) = param(j, nj, l.spans[1]);
            let (si, ti) = param(i, ni, l.spans[0]);
            let (wk, wj, wi) = (basis(tk), basis(tj), basis(ti));
            let mut v = 0.0;
            for (a, wa) in wk.iter().enumerate() {
                for (b, wb) in wj.iter().enumerate() {
                    for (c, wc) in wi.iter().enumerate() {
                        v += wa * wb * wc * l.phi[[sk + a, sj + b, si + c]];
                    }
                }
            }
            v
        })
    }

    /// Lee, Wolberg & Shin's approximation voxel by voxel, as the
    /// separable fit must reproduce it.
    fn fit_reference(spans: [usize; 3], values: &Array3<f64>, mask: &Array3<bool>) -> Array3<f64> {
        let l = Lattice::zeros(spans);
        let (nk, nj, ni) = values.dim();
        let mut num = Array3::<f64>::zeros(l.phi.raw_dim());
        let mut den = Array3::<f64>::zeros(l.phi.raw_dim());
        for ((k, j, i), &v) in values.indexed_iter() {
            if !mask[[k, j, i]] {
                continue;
            }
            let (sk, tk) = param(k, nk, spans[2]);
            let (sj, tj) = param(j, nj, spans[1]);
            let (si, ti) = param(i, ni, spans[0]);
            let (wk, wj, wi) = (basis(tk), basis(tj), basis(ti));
            let mut w2 = 0.0;
            for a in wk {
                for b in wj {
                    for c in wi {
                        w2 += (a * b * c) * (a * b * c);
                    }
                }
            }
            for (a, wa) in wk.iter().enumerate() {
                for (b, wb) in wj.iter().enumerate() {
                    for (c, wc) in wi.iter().enumerate() {
                        let w = wa * wb * wc;
                        num[[sk + a, sj + b, si + c]] += w * w * (w * v / w2);
                        den[[sk + a, sj + b, si + c]] += w * w;
                    }
                }
            }
        }
        ndarray::Zip::from(&num)
            .and(&den)
            .map_collect(|n, d| if *d > 0.0 { n / d } else { 0.0 })
    }

    /// Uniform numbers in [0, 1) from a 64-bit LCG (Knuth's MMIX constants).
    fn uniform(mut seed: u64) -> impl FnMut() -> f64 {
        move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Sharpening and the convergence measure give the same bits on any
    /// number of threads (their sums run in chunk order, not in the shape
    /// of rayon's work stealing), so preprocessing is reproducible.
    #[test]
    fn parallel_sums_do_not_depend_on_the_threads() {
        let mut next = uniform(11);
        // 13 chunks of 2^14 voxels
        let dims = (50, 60, 70);
        let a = Array3::from_shape_simple_fn(dims, || 3.0 + next());
        let b = Array3::from_shape_simple_fn(dims, || 0.1 * next());
        let mask = Array3::from_shape_simple_fn(dims, || next() < 0.8);
        let o = N4Options::default();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let s = sharpen(&a, &mask, &o);
                let c = convergence(&a, &b, &mask);
                (s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), c.to_bits())
            })
        };
        let one = run(1);
        for threads in [2, 3, 4, 7] {
            let other = run(threads);
            assert!(one.0 == other.0, "sharpening differs on {threads} threads");
            assert_eq!(one.1, other.1, "convergence differs on {threads} threads");
        }
    }

    /// The separable evaluation and fit equal their per-voxel definitions
    /// on odd grids, thin axes, several lattices and sparse masks.
    #[test]
    fn separable_fit_and_evaluation_match_the_definitions() {
        let mut next = uniform(7);
        for (shape, spans) in [
            ([9, 7, 8], [1, 2, 1]),
            ([13, 1, 11], [2, 1, 4]),
            ([2, 17, 5], [8, 3, 1]),
            ([21, 19, 23], [4, 4, 4]),
        ] {
            let mut l = Lattice::zeros(spans);
            l.phi.iter_mut().for_each(|v| *v = next() * 4.0 - 2.0);
            let (a, b) = (l.evaluate(shape), evaluate_reference(&l, shape));
            for (x, y) in a.iter().zip(b.iter()) {
                assert!((x - y).abs() < 1e-12, "evaluate {shape:?} {spans:?}: {x} vs {y}");
            }
            for density in [0.05, 0.5, 1.0] {
                let values = Array3::from_shape_fn((shape[0], shape[1], shape[2]), |_| next() * 2.0 - 1.0);
                let mask = values.mapv(|_| next() < density);
                let (f, r) = (
                    Lattice::fit(spans, &values, &mask).phi,
                    fit_reference(spans, &values, &mask),
                );
                for (x, y) in f.iter().zip(r.iter()) {
                    assert!(
                        (x - y).abs() < 1e-9 * (1.0 + y.abs()),
                        "fit {shape:?} {spans:?} {density}: {x} vs {y}"
                    );
                }
            }
        }
    }
}

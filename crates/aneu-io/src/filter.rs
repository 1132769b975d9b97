//! Separable filters on `[k, j, i]` arrays.

use ndarray::{Array3, Axis};
use rayon::prelude::*;

/// Gaussian smoothing with a standard deviation per array axis, in voxels
/// (`[σ_k, σ_j, σ_i]`; 0 leaves that axis alone). The kernel is sampled
/// out to 3σ and normalised to sum 1, and the borders are clamped
/// (replicated), so a constant image stays constant.
///
/// ```
/// use aneu_io::gaussian_smooth;
/// use ndarray::Array3;
/// let mut a = Array3::<f32>::zeros((1, 1, 21));
/// a[[0, 0, 10]] = 1.0;
/// let s = gaussian_smooth(a, [0.0, 0.0, 2.0]);
/// // the impulse response is the kernel: it sums to 1 and has variance σ²
/// let var: f32 = s.iter().enumerate().map(|(x, v)| v * (x as f32 - 10.0).powi(2)).sum();
/// assert!((s.sum() - 1.0).abs() < 1e-5 && (var - 4.0).abs() < 0.05);
/// ```
pub fn gaussian_smooth(mut a: Array3<f32>, sigma: [f64; 3]) -> Array3<f32> {
    for (axis, s) in sigma.into_iter().enumerate() {
        if s > 0.0 && a.len_of(Axis(axis)) > 1 {
            a = smooth_axis(&a, axis, &gaussian_kernel(s));
        }
    }
    a
}

/// The normalised Gaussian of `sigma` voxels, sampled on `−⌈3σ⌉ ..= ⌈3σ⌉`.
fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    let r = (3.0 * sigma).ceil() as isize;
    let mut w: Vec<f32> = (-r..=r)
        .map(|x| (-(x * x) as f64 / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let s: f32 = w.iter().sum();
    w.iter_mut().for_each(|x| *x /= s);
    w
}

/// Convolves every lane along `axis` with the odd-length kernel `w`,
/// borders clamped.
fn smooth_axis(a: &Array3<f32>, axis: usize, w: &[f32]) -> Array3<f32> {
    let n = a.len_of(Axis(axis)) as isize;
    let r = (w.len() / 2) as isize;
    let mut out = a.clone();
    ndarray::Zip::from(out.lanes_mut(Axis(axis)))
        .and(a.lanes(Axis(axis)))
        .into_par_iter()
        .for_each(|(mut o, l)| {
            for x in 0..n {
                let mut acc = 0.0f32;
                for (t, wt) in w.iter().enumerate() {
                    let y = (x + t as isize - r).clamp(0, n - 1) as usize;
                    acc += wt * l[y];
                }
                o[x as usize] = acc;
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A constant image is a fixed point (clamped borders).
    #[test]
    fn constant_stays_constant() {
        let a = Array3::from_elem((5, 6, 7), 3.5f32);
        let s = gaussian_smooth(a, [1.0, 0.7, 2.5]);
        assert!(s.iter().all(|v| (v - 3.5).abs() < 1e-5));
    }

    /// Each axis is smoothed with its own σ and no other: the impulse
    /// response's second moments are σ² on each axis.
    #[test]
    fn per_axis_variance() {
        let mut a = Array3::<f32>::zeros((31, 31, 31));
        a[[15, 15, 15]] = 1.0;
        let sigma = [1.0, 0.0, 2.5];
        let s = gaussian_smooth(a, sigma);
        assert!((s.sum() - 1.0).abs() < 1e-4);
        for (axis, want) in sigma.iter().enumerate() {
            let var: f64 = s
                .indexed_iter()
                .map(|(ix, v)| {
                    let d = [ix.0, ix.1, ix.2][axis] as f64 - 15.0;
                    f64::from(*v) * d * d
                })
                .sum();
            assert!(
                (var - want * want).abs() < 0.02 * (1.0 + want * want),
                "axis {axis}: {var}"
            );
        }
    }
}

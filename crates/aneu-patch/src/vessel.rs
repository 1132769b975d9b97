//! Vessel-biased negative centres from the image alone: bright voxels
//! whose Hessian says "tube" (two strongly negative eigenvalues, one near
//! zero), as in Frangi et al. 1998, at one scale.

use aneu_io::{Volume, VoxelIndex};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Parameters of [`vessel_candidates`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VesselOptions {
    /// Gaussian scale of the Hessian, in voxels (vessel radius ≈ σ·√2).
    pub sigma_vox: f64,
    /// Intensity quantile, inside the mask, above which a voxel is bright.
    pub quantile: f64,
    /// Tubularity: keep a voxel when `|λ1| ≤ max_ratio · |λ2|` with
    /// `λ2, λ3 < 0` (eigenvalues sorted by magnitude). Blobs (aneurysms)
    /// have `|λ1| ≈ |λ2|` and are rejected; plates have `|λ2| ≈ 0`.
    pub max_ratio: f64,
    /// Cross-section roundness (Frangi's R_A): keep a voxel when
    /// `|λ2| ≥ min_cross_ratio · |λ3|`. Plates and the edges of bright
    /// regions have `|λ2| ≪ |λ3|` and are rejected.
    pub min_cross_ratio: f64,
    /// Centreline: keep a voxel when `|∇I| ≤ max_gradient · σ · |λ2|`
    /// (σ in mm), i.e. within about `max_gradient · σ` of the intensity
    /// ridge. This rejects the rim of bright blobs, where the profile's
    /// inflection makes the normal eigenvalue vanish and the rim looks
    /// like a ring-shaped tube.
    pub max_gradient: f64,
    /// At most this many candidates are kept (evenly thinned in scan
    /// order).
    pub max_candidates: usize,
}

impl Default for VesselOptions {
    fn default() -> Self {
        VesselOptions {
            sigma_vox: 1.0,
            quantile: 0.97,
            max_ratio: 0.5,
            min_cross_ratio: 0.3,
            max_gradient: 1.0,
            max_candidates: 50_000,
        }
    }
}

/// Centres of bright, tubular voxels inside `mask`.
///
/// The image is smoothed with a Gaussian of `sigma_vox` over the mask's
/// bounding box; at every masked voxel whose smoothed intensity is above
/// the quantile (of smoothed intensities inside the mask) the Hessian is
/// taken by central differences and its eigenvalues tested for a bright
/// tube.
pub fn vessel_candidates(image: &Volume<f32>, mask: &Volume<u8>, opts: &VesselOptions) -> Vec<VoxelIndex> {
    let (img, m) = (image.data(), mask.data());
    let (nk, nj, ni) = img.dim();
    let n = [nk, nj, ni];
    // the bounding box of the mask, padded for the smoothing and the stencil
    let r = (3.0 * opts.sigma_vox).ceil().max(1.0) as usize;
    let mut lo = n;
    let mut hi = [0usize; 3];
    for ((k, j, i), v) in m.indexed_iter() {
        if *v != 0 {
            for (a, x) in [k, j, i].into_iter().enumerate() {
                lo[a] = lo[a].min(x);
                hi[a] = hi[a].max(x + 1);
            }
        }
    }
    if lo[0] >= hi[0] {
        return Vec::new();
    }
    let lo: [usize; 3] = std::array::from_fn(|a| lo[a].saturating_sub(r + 1));
    let hi: [usize; 3] = std::array::from_fn(|a| (hi[a] + r + 1).min(n[a]));
    let sub = img
        .slice(ndarray::s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]])
        .to_owned();
    let smooth = aneu_io::gaussian_smooth(sub, [opts.sigma_vox; 3]);
    // "bright" is judged at the Hessian's scale: the smoothed intensity
    // against its quantile inside the mask (noise averages away)
    let msub = m.slice(ndarray::s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]]);
    let mut inside: Vec<f32> = smooth
        .iter()
        .zip(msub.iter())
        .filter(|(_, m)| **m != 0)
        .map(|(v, _)| *v)
        .collect();
    let q = ((inside.len() - 1) as f64 * opts.quantile.clamp(0.0, 1.0)).round() as usize;
    let thr = *inside.select_nth_unstable_by(q, f32::total_cmp).1;
    drop(inside);
    let [sk, sj, si] = {
        let [a, b, c] = image.spacing();
        [c, b, a]
    };
    let sp = [sk, sj, si];
    let sigma_mm = opts.sigma_vox * (sk * sj * si).cbrt();
    let (dk, dj, di) = smooth.dim();
    let found: Vec<VoxelIndex> = (1..dk.saturating_sub(1))
        .into_par_iter()
        .flat_map_iter(|k| {
            let smooth = &smooth;
            let mut out = Vec::new();
            for j in 1..dj.saturating_sub(1) {
                for i in 1..di.saturating_sub(1) {
                    let g = [k + lo[0], j + lo[1], i + lo[2]];
                    if m[g] == 0 || smooth[[k, j, i]] < thr {
                        continue;
                    }
                    let f = |a: isize, b: isize, c: isize| {
                        smooth[[
                            (k as isize + a) as usize,
                            (j as isize + b) as usize,
                            (i as isize + c) as usize,
                        ]] as f64
                    };
                    let c0 = f(0, 0, 0);
                    let hkk = (f(1, 0, 0) - 2.0 * c0 + f(-1, 0, 0)) / (sp[0] * sp[0]);
                    let hjj = (f(0, 1, 0) - 2.0 * c0 + f(0, -1, 0)) / (sp[1] * sp[1]);
                    let hii = (f(0, 0, 1) - 2.0 * c0 + f(0, 0, -1)) / (sp[2] * sp[2]);
                    let hkj = (f(1, 1, 0) - f(1, -1, 0) - f(-1, 1, 0) + f(-1, -1, 0)) / (4.0 * sp[0] * sp[1]);
                    let hki = (f(1, 0, 1) - f(1, 0, -1) - f(-1, 0, 1) + f(-1, 0, -1)) / (4.0 * sp[0] * sp[2]);
                    let hji = (f(0, 1, 1) - f(0, 1, -1) - f(0, -1, 1) + f(0, -1, -1)) / (4.0 * sp[1] * sp[2]);
                    let grad2 = ((f(1, 0, 0) - f(-1, 0, 0)) / (2.0 * sp[0])).powi(2)
                        + ((f(0, 1, 0) - f(0, -1, 0)) / (2.0 * sp[1])).powi(2)
                        + ((f(0, 0, 1) - f(0, 0, -1)) / (2.0 * sp[2])).powi(2);
                    let mut ev = sym3_eigenvalues([[hkk, hkj, hki], [hkj, hjj, hji], [hki, hji, hii]]);
                    ev.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
                    if ev[1] < 0.0
                        && ev[2] < 0.0
                        && ev[0].abs() <= opts.max_ratio * ev[1].abs()
                        && ev[1].abs() >= opts.min_cross_ratio * ev[2].abs()
                        && grad2.sqrt() <= opts.max_gradient * sigma_mm * ev[1].abs()
                    {
                        out.push(VoxelIndex::from_kji(g));
                    }
                }
            }
            out
        })
        .collect();
    if found.len() <= opts.max_candidates || opts.max_candidates == 0 {
        return if opts.max_candidates == 0 { Vec::new() } else { found };
    }
    let step = found.len() as f64 / opts.max_candidates as f64;
    (0..opts.max_candidates)
        .map(|x| found[(x as f64 * step) as usize])
        .collect()
}

/// Eigenvalues of a symmetric 3×3 matrix (the trigonometric method of
/// Smith 1961).
pub(crate) fn sym3_eigenvalues(m: [[f64; 3]; 3]) -> [f64; 3] {
    let p1 = m[0][1] * m[0][1] + m[0][2] * m[0][2] + m[1][2] * m[1][2];
    let q = (m[0][0] + m[1][1] + m[2][2]) / 3.0;
    if p1 <= 1e-30 * (q * q).max(1e-300) {
        return [m[0][0], m[1][1], m[2][2]];
    }
    let p2 = (m[0][0] - q).powi(2) + (m[1][1] - q).powi(2) + (m[2][2] - q).powi(2) + 2.0 * p1;
    let p = (p2 / 6.0).sqrt();
    let b: [[f64; 3]; 3] =
        std::array::from_fn(|r| std::array::from_fn(|c| (m[r][c] - if r == c { q } else { 0.0 }) / p));
    let det = b[0][0] * (b[1][1] * b[2][2] - b[1][2] * b[2][1]) - b[0][1] * (b[1][0] * b[2][2] - b[1][2] * b[2][0])
        + b[0][2] * (b[1][0] * b[2][1] - b[1][1] * b[2][0]);
    let phi = (det / 2.0).clamp(-1.0, 1.0).acos() / 3.0;
    let e1 = q + 2.0 * p * phi.cos();
    let e3 = q + 2.0 * p * (phi + 2.0 * std::f64::consts::PI / 3.0).cos();
    [e1, 3.0 * q - e1 - e3, e3]
}

#[cfg(test)]
mod tests {
    use super::*;
    use aneu_io::Affine;
    use ndarray::Array3;

    #[test]
    fn eigenvalues_of_a_known_matrix() {
        // eigenvalues 1, 2, 4 rotated: R diag R^T with R a rotation about z by 30°
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let r = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]];
        let d = [1.0, 2.0, 4.0];
        let m: [[f64; 3]; 3] =
            std::array::from_fn(|a| std::array::from_fn(|b| (0..3).map(|t| r[a][t] * d[t] * r[b][t]).sum()));
        let mut e = sym3_eigenvalues(m);
        e.sort_by(f64::total_cmp);
        for (x, y) in e.iter().zip(d) {
            assert!((x - y).abs() < 1e-9, "{e:?}");
        }
    }

    #[test]
    fn a_tube_is_found_and_a_blob_is_not() {
        let n = 40;
        // a bright tube along i through (k, j) = (12, 12), radius 1.5, and a
        // bright ball of radius 4 at (28, 28, 20)
        let data = Array3::from_shape_fn((n, n, n), |(k, j, i)| {
            let tube = ((k as f64 - 12.0).powi(2) + (j as f64 - 12.0).powi(2)).sqrt() <= 1.5;
            let ball =
                ((k as f64 - 28.0).powi(2) + (j as f64 - 28.0).powi(2) + (i as f64 - 20.0).powi(2)).sqrt() <= 4.0;
            if tube || ball {
                100.0
            } else {
                1.0 + ((k * 7 + j * 3 + i) % 5) as f32 * 0.1
            }
        });
        let img = Volume::new(data, Affine::identity()).unwrap();
        let mask = img.map(|_| 1u8);
        let c = vessel_candidates(
            &img,
            &mask,
            &VesselOptions {
                quantile: 0.9,
                ..Default::default()
            },
        );
        assert!(c.len() > 30, "{}", c.len());
        let on_tube = c
            .iter()
            .filter(|v| ((v.k as f64 - 12.0).powi(2) + (v.j as f64 - 12.0).powi(2)).sqrt() <= 2.0)
            .count();
        let off: Vec<_> = c
            .iter()
            .filter(|v| ((v.k as f64 - 12.0).powi(2) + (v.j as f64 - 12.0).powi(2)).sqrt() > 2.0)
            .take(8)
            .collect();
        assert_eq!(on_tube, c.len(), "every candidate lies on the tube: {off:?}");
        let near_ball_centre = c
            .iter()
            .filter(|v| ((v.k as f64 - 28.0).powi(2) + (v.j as f64 - 28.0).powi(2) + (v.i as f64 - 20.0).powi(2)) < 4.0)
            .count();
        assert_eq!(near_ball_centre, 0);
    }
}

//! Patches, their provenance, zero-padded extraction and dense targets.

use aneu_io::{Location, VoxelIndex};
use ndarray::{Array3, ArrayView3, s};
use serde::{Deserialize, Serialize};

/// Where a patch's centre came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatchSource {
    /// Centred on an aneurysm, with jitter.
    Positive,
    /// Uniform inside the brain mask.
    Uniform,
    /// A bright, tubular (vessel) voxel inside the mask.
    Vessel,
    /// An earlier false positive.
    Hard,
    /// A tile of a [`crate::PatchGrid`].
    Grid,
}

/// What to extract: a case, a centre and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchSpec {
    /// Index of the case in the slice handed to the sampler.
    pub case: usize,
    /// The patch centre. For a patch of size `n` the centre is the voxel at
    /// index `n / 2` inside the patch.
    pub centre: VoxelIndex,
    /// The pool the centre was drawn from.
    pub source: PatchSource,
}

/// The dense (voxel-wise) training target drawn around every aneurysm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenseTarget {
    /// 1 inside the aneurysm's sphere (its radius), 0 outside.
    #[default]
    Sphere,
    /// `exp(−d² / 2σ²)` with σ = radius / 2 (0.135 at the radius).
    Gaussian,
}

/// A patch with its targets. Arrays are indexed `[k, j, i]` like
/// [`aneu_io::Volume`].
#[derive(Clone, Debug, PartialEq)]
pub struct Patch {
    /// Image intensities, zero outside the volume.
    pub image: Array3<f32>,
    /// Dense target in `[0, 1]`, the same shape as `image`.
    pub dense: Array3<f32>,
    /// 1 when an aneurysm centre lies inside the patch, else 0.
    pub label: f32,
    /// Multi-hot of the locations of the aneurysms inside the patch, in
    /// `train.csv` column order.
    pub locations: [f32; 13],
    /// The patch's first and last voxel along each array axis `[k, j, i]`,
    /// normalised to the case's mask bounding box (0 and 1 at its first and
    /// last voxel): the anatomical-position prior of Di Noto et al. 2023.
    /// [`Patch::position_channels`] expands it to three input channels.
    pub position: [[f32; 2]; 3],
    /// Vessel labels (`aneu_io::VESSEL_LABELS`), the same shape as
    /// `image`, when the case has them.
    pub vessels: Option<Array3<u8>>,
    /// Where the patch came from.
    pub spec: PatchSpec,
}

impl Patch {
    /// The patch's three coordinate channels: linear ramps from
    /// `position[a][0]` to `position[a][1]` along axis `a`, shaped
    /// `[3, d, h, w]` and flattened in C order.
    pub fn position_channels(&self) -> Vec<f32> {
        let (d, h, w) = self.image.dim();
        let n = [d, h, w];
        let ramp = |a: usize, x: usize| {
            let [lo, hi] = self.position[a];
            if n[a] <= 1 {
                lo
            } else {
                lo + (hi - lo) * x as f32 / (n[a] - 1) as f32
            }
        };
        let mut out = Vec::with_capacity(3 * d * h * w);
        for a in 0..3 {
            for k in 0..d {
                for j in 0..h {
                    for i in 0..w {
                        out.push(ramp(a, [k, j, i][a]));
                    }
                }
            }
        }
        out
    }

    /// The locations present, from [`Patch::locations`].
    pub fn location_list(&self) -> Vec<Location> {
        Location::ALL
            .into_iter()
            .filter(|l| self.locations[l.index()] > 0.5)
            .collect()
    }
}

/// The first voxel (`[k, j, i]`) of a patch of `size` centred on `centre`.
pub fn patch_start(centre: [usize; 3], size: [usize; 3]) -> [i64; 3] {
    std::array::from_fn(|a| centre[a] as i64 - (size[a] / 2) as i64)
}

/// Copies the box `[start, start + size)` out of `data`, zero-padding
/// whatever lies outside.
///
/// ```
/// use ndarray::Array3;
/// let v = Array3::from_shape_fn((4, 4, 4), |(k, j, i)| (k * 16 + j * 4 + i) as f32);
/// let p = aneu_patch::extract_box(v.view(), [-1, 2, 3], [2, 2, 2]);
/// assert_eq!(p[[0, 0, 0]], 0.0); // k = −1 is outside
/// assert_eq!(p[[1, 1, 0]], v[[0, 3, 3]]);
/// assert_eq!(p[[1, 1, 1]], 0.0); // i = 4 is outside
/// ```
pub fn extract_box<T: Clone + Default>(data: ArrayView3<'_, T>, start: [i64; 3], size: [usize; 3]) -> Array3<T> {
    let mut out = Array3::<T>::default((size[0], size[1], size[2]));
    let dims = data.dim();
    let dims = [dims.0, dims.1, dims.2];
    let mut src = [(0usize, 0usize); 3];
    let mut dst = [(0usize, 0usize); 3];
    for a in 0..3 {
        let lo = start[a].max(0);
        let hi = (start[a] + size[a] as i64).min(dims[a] as i64);
        if hi <= lo {
            return out;
        }
        src[a] = (lo as usize, hi as usize);
        dst[a] = ((lo - start[a]) as usize, (hi - start[a]) as usize);
    }
    out.slice_mut(s![dst[0].0..dst[0].1, dst[1].0..dst[1].1, dst[2].0..dst[2].1])
        .assign(&data.slice(s![src[0].0..src[0].1, src[1].0..src[1].1, src[2].0..src[2].1]));
    out
}

/// The fraction of the box's voxels that are inside the volume and
/// non-zero in `mask`.
pub fn mask_fraction(mask: ArrayView3<'_, u8>, start: [i64; 3], size: [usize; 3]) -> f64 {
    let dims = mask.dim();
    let dims = [dims.0, dims.1, dims.2];
    let mut r = [(0usize, 0usize); 3];
    for a in 0..3 {
        let lo = start[a].max(0);
        let hi = (start[a] + size[a] as i64).min(dims[a] as i64);
        if hi <= lo {
            return 0.0;
        }
        r[a] = (lo as usize, hi as usize);
    }
    let n = mask
        .slice(s![r[0].0..r[0].1, r[1].0..r[1].1, r[2].0..r[2].1])
        .iter()
        .filter(|v| **v != 0)
        .count();
    n as f64 / (size[0] * size[1] * size[2]) as f64
}

/// Renders the dense target of the box `[start, start + size)`: for every
/// sphere (centre `[k, j, i]` in voxels, radius in mm) the [`DenseTarget`]
/// value at each voxel, distances in mm through `spacing` (`[k, j, i]`),
/// the maximum where spheres overlap.
pub fn render_dense(
    start: [i64; 3],
    size: [usize; 3],
    spheres: &[([f64; 3], f64)],
    spacing: [f64; 3],
    kind: DenseTarget,
) -> Array3<f32> {
    let mut out = Array3::<f32>::zeros((size[0], size[1], size[2]));
    for &(c, r) in spheres {
        let reach = match kind {
            DenseTarget::Sphere => r,
            DenseTarget::Gaussian => 1.5 * r, // 3σ
        };
        let mut lo = [0usize; 3];
        let mut hi = [0usize; 3];
        let mut empty = false;
        for a in 0..3 {
            let rel = c[a] - start[a] as f64;
            let ext = reach / spacing[a];
            let l = (rel - ext).floor().max(0.0);
            let h = (rel + ext).ceil().min(size[a] as f64 - 1.0);
            if h < l {
                empty = true;
                break;
            }
            lo[a] = l as usize;
            hi[a] = h as usize;
        }
        if empty {
            continue;
        }
        let sigma2 = (r / 2.0) * (r / 2.0);
        for k in lo[0]..=hi[0] {
            let dk = ((start[0] + k as i64) as f64 - c[0]) * spacing[0];
            for j in lo[1]..=hi[1] {
                let dj = ((start[1] + j as i64) as f64 - c[1]) * spacing[1];
                for i in lo[2]..=hi[2] {
                    let di = ((start[2] + i as i64) as f64 - c[2]) * spacing[2];
                    let d2 = dk * dk + dj * dj + di * di;
                    let v = match kind {
                        DenseTarget::Sphere => f32::from(u8::from(d2 <= r * r)),
                        DenseTarget::Gaussian => (-d2 / (2.0 * sigma2)).exp() as f32,
                    };
                    let o = &mut out[[k, j, i]];
                    *o = o.max(v);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_matches_a_naive_loop() {
        let v = Array3::from_shape_fn((5, 6, 7), |(k, j, i)| (k * 100 + j * 10 + i) as f32 + 1.0);
        for start in [[-3i64, -2, -1], [0, 0, 0], [2, 3, 4], [4, 5, 6], [-10, 0, 0]] {
            let p = extract_box(v.view(), start, [4, 3, 5]);
            for ((k, j, i), x) in p.indexed_iter() {
                let (kk, jj, ii) = (start[0] + k as i64, start[1] + j as i64, start[2] + i as i64);
                let want = if (0..5).contains(&kk) && (0..6).contains(&jj) && (0..7).contains(&ii) {
                    v[[kk as usize, jj as usize, ii as usize]]
                } else {
                    0.0
                };
                assert_eq!(*x, want);
            }
        }
    }

    #[test]
    fn sphere_target_volume_is_close_to_the_ball() {
        // a 4 mm sphere on a 0.5 mm grid: 4/3 π r³ = 268 mm³
        let d = render_dense(
            [0; 3],
            [24; 3],
            &[([12.0, 12.0, 12.0], 4.0)],
            [0.5; 3],
            DenseTarget::Sphere,
        );
        let mm3 = d.sum() as f64 * 0.125;
        assert!((mm3 - 268.08).abs() / 268.08 < 0.03, "{mm3}");
        let g = render_dense(
            [0; 3],
            [24; 3],
            &[([12.0, 12.0, 12.0], 4.0)],
            [0.5; 3],
            DenseTarget::Gaussian,
        );
        assert_eq!(g[[12, 12, 12]], 1.0);
        assert!((g[[12, 12, 20]] - (-2.0f32).exp()).abs() < 1e-6); // at the radius
    }
}

//! Sliding-window tiling with nnU-Net's evenly spaced steps.

use aneu_io::{GridSize, Volume};
use ndarray::Array3;
use serde::{Deserialize, Serialize};

use crate::patch::mask_fraction;
use crate::{Error, Result};

/// One window of a [`PatchGrid`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tile {
    /// The first voxel `[k, j, i]`; the window is `[start, start + patch)`.
    /// Along an axis shorter than the patch the window starts at 0 and runs
    /// past the end (zero padding).
    pub start: [usize; 3],
}

/// Sliding windows over a volume: along each axis the windows are evenly
/// spaced, the first starts at 0 and the last ends exactly at the border,
/// with steps of at most `patch · (1 − overlap)` (nnU-Net's
/// `compute_steps_for_sliding_window`).
///
/// ```
/// use aneu_io::GridSize;
/// use aneu_patch::PatchGrid;
/// // 100 voxels, 32-voxel windows, half overlap: 6 windows per axis
/// let g = PatchGrid::new(GridSize::new(100, 100, 100), [32; 3], 0.5)?;
/// assert_eq!(g.starts()[2], vec![0, 14, 27, 41, 54, 68]);
/// assert_eq!(g.len(), 216);
/// # Ok::<(), aneu_patch::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchGrid {
    dims: [usize; 3],
    patch: [usize; 3],
    starts: [Vec<usize>; 3],
}

impl PatchGrid {
    /// The windows of `patch` (`[k, j, i]`) over a volume of `size` with the
    /// given overlap in `[0, 1)`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an empty patch or volume, or an overlap
    /// outside `[0, 1)`.
    pub fn new(size: GridSize, patch: [usize; 3], overlap: f64) -> Result<Self> {
        if patch.contains(&0) || size.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "empty patch {patch:?} or volume {:?}",
                size.to_kji()
            )));
        }
        if !(0.0..1.0).contains(&overlap) {
            return Err(Error::InvalidConfig(format!("overlap {overlap} is outside [0, 1)")));
        }
        let dims = size.to_kji();
        let starts = std::array::from_fn(|a| steps(dims[a], patch[a], overlap));
        Ok(PatchGrid { dims, patch, starts })
    }

    /// The window starts along each axis `[k, j, i]`.
    pub fn starts(&self) -> &[Vec<usize>; 3] {
        &self.starts
    }

    /// The patch size `[k, j, i]`.
    pub fn patch(&self) -> [usize; 3] {
        self.patch
    }

    /// The volume size `[k, j, i]`.
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// The number of windows.
    pub fn len(&self) -> usize {
        self.starts.iter().map(Vec::len).product()
    }

    /// Whether there is no window (never, for a valid grid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All windows, `k` slowest.
    pub fn tiles(&self) -> impl Iterator<Item = Tile> + '_ {
        self.starts[0].iter().flat_map(move |&k| {
            self.starts[1]
                .iter()
                .flat_map(move |&j| self.starts[2].iter().map(move |&i| Tile { start: [k, j, i] }))
        })
    }

    /// The windows that hold at least one voxel of `mask`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the mask's size is not the grid's.
    pub fn tiles_in_mask(&self, mask: &Volume<u8>) -> Result<Vec<Tile>> {
        if mask.size().to_kji() != self.dims {
            return Err(Error::InvalidConfig(format!(
                "mask size {:?} differs from the grid's {:?}",
                mask.size().to_kji(),
                self.dims
            )));
        }
        let m = mask.data();
        Ok(self
            .tiles()
            .filter(|t| mask_fraction(m, t.start.map(|x| x as i64), self.patch) > 0.0)
            .collect())
    }

    /// nnU-Net's Gaussian importance map for blending overlapping windows:
    /// σ = `sigma_scale` · patch per axis (1/8 in nnU-Net), scaled to a
    /// maximum of 1, with zeros raised to the smallest non-zero value.
    pub fn gaussian_importance(&self, sigma_scale: f64) -> Array3<f32> {
        let p = self.patch;
        let g = |a: usize, x: usize| {
            let c = (p[a] as f64 - 1.0) / 2.0;
            let s = (sigma_scale * p[a] as f64).max(1e-6);
            (-(x as f64 - c).powi(2) / (2.0 * s * s)).exp()
        };
        let mut w = Array3::from_shape_fn((p[0], p[1], p[2]), |(k, j, i)| (g(0, k) * g(1, j) * g(2, i)) as f32);
        let max = w.iter().copied().fold(0.0f32, f32::max);
        let min_pos = w.iter().copied().filter(|v| *v > 0.0).fold(f32::INFINITY, f32::min);
        w.mapv_inplace(|v| if v > 0.0 { v / max } else { min_pos / max });
        w
    }
}

/// Evenly spaced window starts along one axis.
fn steps(n: usize, patch: usize, overlap: f64) -> Vec<usize> {
    if n <= patch {
        return vec![0];
    }
    let target = (patch as f64 * (1.0 - overlap)).max(1.0);
    let span = (n - patch) as f64;
    let count = (span / target).ceil() as usize + 1;
    let step = span / (count - 1) as f64;
    (0..count).map(|x| (x as f64 * step).round() as usize).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_nnunet_compute_steps() {
        // nnU-Net: image 100, patch 32, step_size 0.5 → [0, 14, 27, 41, 54, 68]
        assert_eq!(steps(100, 32, 0.5), vec![0, 14, 27, 41, 54, 68]);
        // image 64, patch 64 → [0]; image 65 → [0, 1]
        assert_eq!(steps(64, 64, 0.5), vec![0]);
        assert_eq!(steps(65, 64, 0.5), vec![0, 1]);
        assert_eq!(steps(20, 32, 0.5), vec![0]);
    }
}

//! [`Volume<T>`]: a 3D array on a grid placed in the world by an [`Affine`].

use ndarray::{Array3, ArrayView3, ArrayViewMut3, Axis};

use crate::geometry::{Affine, GridSize, Voxel, VoxelIndex, WorldPoint};
use crate::{Error, Result};

/// A 3D image: C-contiguous data indexed `[k, j, i]` (slice, row, column)
/// and the [`Affine`] that maps voxel (i, j, k) to RAS+ millimetres.
///
/// The data is always in standard (C) layout, so column i is fastest in
/// memory, as in NIfTI and DICOM files.
///
/// ```
/// use aneu_io::{Affine, Volume, VoxelIndex};
/// use ndarray::Array3;
/// let data = Array3::from_shape_fn((2, 3, 4), |(k, j, i)| (100 * k + 10 * j + i) as f32);
/// let vol = Volume::new(data, Affine::identity()).unwrap();
/// assert_eq!(vol.size().ni, 4);
/// assert_eq!(vol.get(VoxelIndex::new(3, 2, 1)), Some(&123.0));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Volume<T> {
    data: Array3<T>,
    affine: Affine,
}

impl<T> Volume<T> {
    /// Wraps `data` (`[k, j, i]`) and its affine. Data not in standard
    /// layout is copied into it.
    ///
    /// # Errors
    /// [`Error::InvalidVolume`] if a dimension is zero.
    pub fn new(data: Array3<T>, affine: Affine) -> Result<Self>
    where
        T: Clone,
    {
        if data.is_empty() {
            return Err(Error::InvalidVolume {
                reason: format!("empty volume of shape {:?}", data.shape()),
            });
        }
        let data = if data.is_standard_layout() {
            data
        } else {
            data.as_standard_layout().into_owned()
        };
        Ok(Self { data, affine })
    }

    /// The data, indexed `[k, j, i]`.
    pub fn data(&self) -> ArrayView3<'_, T> {
        self.data.view()
    }

    /// Mutable access to the data (the shape cannot change).
    pub fn data_mut(&mut self) -> ArrayViewMut3<'_, T> {
        self.data.view_mut()
    }

    /// The data as a contiguous slice, column i fastest.
    pub fn as_slice(&self) -> &[T] {
        // Invariant: always standard layout.
        self.data.as_slice().unwrap_or(&[])
    }

    /// The voxel → world affine.
    pub fn affine(&self) -> &Affine {
        &self.affine
    }

    /// Splits the volume into its data and affine.
    pub fn into_parts(self) -> (Array3<T>, Affine) {
        (self.data, self.affine)
    }

    /// The grid size (ni, nj, nk).
    pub fn size(&self) -> GridSize {
        let s = self.data.shape();
        GridSize::new(s[2], s[1], s[0])
    }

    /// Spacing in mm along (i, j, k).
    pub fn spacing(&self) -> [f64; 3] {
        self.affine.spacing()
    }

    /// World position of voxel (0, 0, 0).
    pub fn origin(&self) -> WorldPoint {
        self.affine.origin()
    }

    /// Direction matrix; see [`Affine::direction`].
    pub fn direction(&self) -> [[f64; 3]; 3] {
        self.affine.direction()
    }

    /// The value at an index, or `None` outside the grid.
    pub fn get(&self, v: VoxelIndex) -> Option<&T> {
        self.data.get(v.to_kji())
    }

    /// World position of a voxel.
    pub fn voxel_to_world(&self, v: Voxel) -> WorldPoint {
        self.affine.voxel_to_world(v)
    }

    /// Continuous voxel coordinate of a world point.
    pub fn world_to_voxel(&self, w: WorldPoint) -> Voxel {
        self.affine.world_to_voxel(w)
    }

    /// Applies `f` to every voxel, keeping the geometry.
    pub fn map<U, F: FnMut(&T) -> U>(&self, f: F) -> Volume<U> {
        Volume {
            data: self.data.map(f),
            affine: self.affine,
        }
    }

    /// Replaces the data with `data` of the same shape, keeping the affine.
    ///
    /// # Errors
    /// [`Error::InvalidVolume`] if the shapes differ.
    pub fn with_data<U: Clone>(&self, data: Array3<U>) -> Result<Volume<U>> {
        if data.shape() != self.data.shape() {
            return Err(Error::InvalidVolume {
                reason: format!("shape {:?} does not match {:?}", data.shape(), self.data.shape()),
            });
        }
        Volume::new(data, self.affine)
    }

    /// Reorients the volume to the closest canonical RAS+ grid, exactly:
    /// the voxel axes are permuted and flipped (no interpolation) so that
    /// i points closest to +x (Right), j to +y (Anterior) and k to +z
    /// (Superior). Every voxel keeps its value and its world position; only
    /// the indexing changes. This is nibabel's `as_closest_canonical`.
    ///
    /// ```
    /// use aneu_io::{Affine, Volume, Voxel, VoxelIndex};
    /// use ndarray::Array3;
    /// // An LPI volume: i → left, j → posterior, k → inferior.
    /// let a = Affine::from_parts([[-1.0, 0.0, 0.0], [0.0, -2.0, 0.0], [0.0, 0.0, -3.0]], [0.0; 3]).unwrap();
    /// let data = Array3::from_shape_fn((2, 3, 4), |(k, j, i)| (100 * k + 10 * j + i) as f32);
    /// let vol = Volume::new(data, a).unwrap();
    /// let ras = vol.to_canonical().unwrap();
    /// assert_eq!(ras.affine().axis_codes_string(), "RAS");
    /// // voxel (0,0,0) of the original is now the last voxel on every axis
    /// let w = vol.voxel_to_world(Voxel::new(0.0, 0.0, 0.0));
    /// let v = ras.world_to_voxel(w).nearest_index(ras.size()).unwrap();
    /// assert_eq!(v, VoxelIndex::new(3, 2, 1));
    /// assert_eq!(ras.get(v), Some(&0.0));
    /// ```
    ///
    /// # Errors
    /// Only if the resulting affine were invalid, which cannot happen for a
    /// valid input.
    pub fn to_canonical(&self) -> Result<Volume<T>>
    where
        T: Clone,
    {
        let (assign, sign) = self.affine.closest_world_axes();
        // new voxel axis w (0 = i', 1 = j', 2 = k') comes from old axis a
        let mut old_of_new = [0usize; 3];
        for (a, &w) in assign.iter().enumerate() {
            old_of_new[w] = a;
        }
        let n_old = self.size().to_ijk();
        // index transform: old = P · new + c
        let mut t = [[0.0; 4]; 4];
        t[3][3] = 1.0;
        for (w, &a) in old_of_new.iter().enumerate() {
            if sign[a] {
                t[a][w] = 1.0;
            } else {
                t[a][w] = -1.0;
                t[a][3] = (n_old[a] - 1) as f64;
            }
        }
        let affine = self.affine.then_from(&t)?;
        // array axes are reversed: ijk axis a ↔ array axis 2 - a
        let perm = [2 - old_of_new[2], 2 - old_of_new[1], 2 - old_of_new[0]];
        let mut view = self.data.view().permuted_axes(perm);
        for (w, &a) in old_of_new.iter().enumerate() {
            if !sign[a] {
                view.invert_axis(Axis(2 - w));
            }
        }
        Ok(Volume {
            data: view.as_standard_layout().into_owned(),
            affine,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rot(ax: f64, ay: f64, az: f64) -> [[f64; 3]; 3] {
        let (sx, cx) = ax.sin_cos();
        let (sy, cy) = ay.sin_cos();
        let (sz, cz) = az.sin_cos();
        let rx = [[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]];
        let ry = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
        let rz = [[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]];
        let mul = |a: [[f64; 3]; 3], b: [[f64; 3]; 3]| {
            let mut r = [[0.0; 3]; 3];
            for i in 0..3 {
                for j in 0..3 {
                    r[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
                }
            }
            r
        };
        mul(rz, mul(ry, rx))
    }

    proptest! {
        /// Reorientation keeps every voxel's value at its world position and
        /// ends in the RAS-closest axis codes.
        #[test]
        fn canonical_keeps_world_positions(
            ax in -3.2f64..3.2, ay in -3.2f64..3.2, az in -3.2f64..3.2,
            sx in 0.3f64..3.0, sy in 0.3f64..3.0, sz in 0.3f64..3.0,
            ni in 1usize..6, nj in 1usize..6, nk in 1usize..6,
            flip in 0u8..8,
        ) {
            let r = rot(ax, ay, az);
            let sp = [sx, sy, sz];
            let mut lin = [[0.0; 3]; 3];
            for row in 0..3 { for c in 0..3 {
                let f = if flip & (1 << c) != 0 { -1.0 } else { 1.0 };
                lin[row][c] = r[row][c] * sp[c] * f;
            }}
            let a = Affine::from_parts(lin, [3.0, -4.0, 5.0]).unwrap();
            let data = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| (k * 100 + j * 10 + i) as i32);
            let vol = Volume::new(data, a).unwrap();
            let c = vol.to_canonical().unwrap();
            let codes = c.affine().axis_codes_string();
            prop_assert_eq!(codes, "RAS");
            let mut sorted = c.spacing(); sorted.sort_by(f64::total_cmp);
            let mut want = sp; want.sort_by(f64::total_cmp);
            for (g, w) in sorted.iter().zip(want.iter()) { prop_assert!((g - w).abs() < 1e-9); }
            for k in 0..nk { for j in 0..nj { for i in 0..ni {
                let idx = VoxelIndex::new(i, j, k);
                let w = vol.voxel_to_world(idx.into());
                let v = c.world_to_voxel(w);
                let n = v.nearest_index(c.size()).unwrap();
                prop_assert!(v.distance(&n.into()) < 1e-6);
                prop_assert_eq!(c.get(n), vol.get(idx));
            }}}
        }
    }

    #[test]
    fn empty_volume_rejected() {
        assert!(Volume::new(Array3::<f32>::zeros((0, 2, 2)), Affine::identity()).is_err());
    }
}

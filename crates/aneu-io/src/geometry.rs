//! Points, voxel grids and the voxel → world affine, in RAS+ millimetres.
//!
//! The whole project uses one convention (see `docs/architecture.md`):
//! a voxel is addressed as (i, j, k) — column, row, slice — and the
//! [`Affine`] maps it to a [`WorldPoint`] in RAS+ millimetres, exactly as a
//! NIfTI sform does. DICOM's LPS coordinates are converted at the reader.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A continuous voxel coordinate: `i` is the column, `j` the row, `k` the
/// slice (the NIfTI voxel order). Integer values are voxel centres.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Voxel {
    /// Column index (fastest axis in memory).
    pub i: f64,
    /// Row index.
    pub j: f64,
    /// Slice index (slowest axis in memory).
    pub k: f64,
}

impl Voxel {
    /// Creates a voxel coordinate.
    pub fn new(i: f64, j: f64, k: f64) -> Self {
        Self { i, j, k }
    }

    /// The nearest voxel centre, or `None` if it lies outside `size`
    /// (or the coordinate is not finite).
    pub fn nearest_index(&self, size: GridSize) -> Option<VoxelIndex> {
        let r = |v: f64, n: usize| -> Option<usize> {
            let v = v.round();
            (v.is_finite() && v >= 0.0 && v < n as f64).then_some(v as usize)
        };
        Some(VoxelIndex {
            i: r(self.i, size.ni)?,
            j: r(self.j, size.nj)?,
            k: r(self.k, size.nk)?,
        })
    }

    /// The coordinate in `[k, j, i]` order, the order of the data's axes.
    pub fn to_kji(self) -> [f64; 3] {
        [self.k, self.j, self.i]
    }

    /// Euclidean distance in voxel units.
    pub fn distance(&self, other: &Voxel) -> f64 {
        ((self.i - other.i).powi(2) + (self.j - other.j).powi(2) + (self.k - other.k).powi(2)).sqrt()
    }
}

/// An integer voxel index (i = column, j = row, k = slice).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct VoxelIndex {
    /// Column index.
    pub i: usize,
    /// Row index.
    pub j: usize,
    /// Slice index.
    pub k: usize,
}

impl VoxelIndex {
    /// Creates an index.
    pub fn new(i: usize, j: usize, k: usize) -> Self {
        Self { i, j, k }
    }

    /// The index as an `ndarray` index into `[k, j, i]` data.
    pub fn to_kji(self) -> [usize; 3] {
        [self.k, self.j, self.i]
    }

    /// The index of an `ndarray` index `[k, j, i]` into `[k, j, i]` data;
    /// the inverse of [`to_kji`](Self::to_kji).
    ///
    /// ```
    /// use aneu_io::VoxelIndex;
    /// let v = VoxelIndex::from_kji([3, 2, 1]);
    /// assert_eq!(v, VoxelIndex::new(1, 2, 3));
    /// assert_eq!(v.to_kji(), [3, 2, 1]);
    /// ```
    pub fn from_kji([k, j, i]: [usize; 3]) -> Self {
        Self { i, j, k }
    }
}

impl From<VoxelIndex> for Voxel {
    fn from(v: VoxelIndex) -> Self {
        Voxel::new(v.i as f64, v.j as f64, v.k as f64)
    }
}

/// The number of voxels along each axis of a grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct GridSize {
    /// Columns (voxels along i).
    pub ni: usize,
    /// Rows (voxels along j).
    pub nj: usize,
    /// Slices (voxels along k).
    pub nk: usize,
}

impl GridSize {
    /// Creates a grid size.
    pub fn new(ni: usize, nj: usize, nk: usize) -> Self {
        Self { ni, nj, nk }
    }

    /// The `ndarray` shape `[nk, nj, ni]` of data on this grid.
    pub fn to_kji(self) -> [usize; 3] {
        [self.nk, self.nj, self.ni]
    }

    /// Builds the size from an `ndarray` shape `[nk, nj, ni]`.
    pub fn from_kji(shape: [usize; 3]) -> Self {
        Self::new(shape[2], shape[1], shape[0])
    }

    /// The number of voxels.
    pub fn len(self) -> usize {
        self.ni * self.nj * self.nk
    }

    /// Whether the grid holds no voxel.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Sizes along (i, j, k).
    pub fn to_ijk(self) -> [usize; 3] {
        [self.ni, self.nj, self.nk]
    }
}

/// A point in patient space, in RAS+ millimetres.
///
/// RAS+ names the direction each axis *increases* towards: +x towards the
/// patient's **R**ight, +y **A**nterior, +z **S**uperior — the NIfTI and
/// nibabel world. DICOM uses LPS+ (+x Left, +y Posterior, +z Superior); the
/// two differ by negating x and y, see [`WorldPoint::from_lps`].
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct WorldPoint {
    /// Right (+) / left (−), mm.
    pub x: f64,
    /// Anterior (+) / posterior (−), mm.
    pub y: f64,
    /// Superior (+) / inferior (−), mm.
    pub z: f64,
}

impl WorldPoint {
    /// Creates a point from RAS+ coordinates.
    pub fn new(x: f64, y: f64, z: f64) -> Self {
        Self { x, y, z }
    }

    /// Converts a DICOM LPS+ point to RAS+.
    pub fn from_lps(lps: [f64; 3]) -> Self {
        Self::new(-lps[0], -lps[1], lps[2])
    }

    /// The point in DICOM LPS+ coordinates.
    pub fn to_lps(self) -> [f64; 3] {
        [-self.x, -self.y, self.z]
    }

    /// The coordinates as an array `[x, y, z]`.
    pub fn to_array(self) -> [f64; 3] {
        [self.x, self.y, self.z]
    }

    /// Euclidean distance in millimetres.
    pub fn distance(&self, other: &WorldPoint) -> f64 {
        ((self.x - other.x).powi(2) + (self.y - other.y).powi(2) + (self.z - other.z).powi(2)).sqrt()
    }
}

/// The anatomical direction a voxel axis points towards (the direction of
/// increasing index), as in nibabel's `aff2axcodes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AxisCode {
    /// Towards the patient's right (+x in RAS).
    R,
    /// Towards the patient's left (−x in RAS).
    L,
    /// Anterior (+y in RAS).
    A,
    /// Posterior (−y in RAS).
    P,
    /// Superior (+z in RAS).
    S,
    /// Inferior (−z in RAS).
    I,
}

impl AxisCode {
    fn from_world_axis(axis: usize, positive: bool) -> Self {
        match (axis, positive) {
            (0, true) => AxisCode::R,
            (0, false) => AxisCode::L,
            (1, true) => AxisCode::A,
            (1, false) => AxisCode::P,
            (2, true) => AxisCode::S,
            _ => AxisCode::I,
        }
    }

    /// The letter, as nibabel prints it.
    pub fn as_char(self) -> char {
        match self {
            AxisCode::R => 'R',
            AxisCode::L => 'L',
            AxisCode::A => 'A',
            AxisCode::P => 'P',
            AxisCode::S => 'S',
            AxisCode::I => 'I',
        }
    }
}

/// An affine map from voxel (i, j, k) to world (RAS+ mm) coordinates:
/// `world = M · [i, j, k]ᵀ + t`, stored as a 4 × 4 homogeneous matrix
/// whose last row is `[0, 0, 0, 1]`.
///
/// The columns of `M` are the world-space steps of one voxel along i, j
/// and k, so their norms are the spacing and their directions the axis
/// directions. The inverse is computed once at construction.
///
/// ```
/// use aneu_io::{Affine, Voxel, WorldPoint};
/// let a = Affine::from_spacing_origin_direction(
///     [0.5, 0.5, 2.0],
///     WorldPoint::new(10.0, -20.0, 30.0),
///     [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
/// ).unwrap();
/// let w = a.voxel_to_world(Voxel::new(2.0, 4.0, 1.0));
/// assert_eq!(w, WorldPoint::new(11.0, -18.0, 32.0));
/// let v = a.world_to_voxel(w);
/// assert!((v.k - 1.0).abs() < 1e-12);
/// assert_eq!(a.axis_codes_string(), "RAS");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "[[f64; 4]; 4]", into = "[[f64; 4]; 4]")]
pub struct Affine {
    m: [[f64; 4]; 4],
    inv: [[f64; 4]; 4],
}

impl TryFrom<[[f64; 4]; 4]> for Affine {
    type Error = Error;
    fn try_from(m: [[f64; 4]; 4]) -> Result<Self> {
        Affine::from_matrix(m)
    }
}

impl From<Affine> for [[f64; 4]; 4] {
    fn from(a: Affine) -> Self {
        a.m
    }
}

fn det3(a: &[[f64; 3]; 3]) -> f64 {
    a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
}

fn inv3(a: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let d = det3(a);
    let scale = a.iter().flatten().fold(0.0f64, |s, v| s.max(v.abs()));
    if !d.is_finite() || d.abs() <= 1e-12 * scale.powi(3) || scale == 0.0 {
        return None;
    }
    let mut r = [[0.0; 3]; 3];
    r[0][0] = (a[1][1] * a[2][2] - a[1][2] * a[2][1]) / d;
    r[0][1] = (a[0][2] * a[2][1] - a[0][1] * a[2][2]) / d;
    r[0][2] = (a[0][1] * a[1][2] - a[0][2] * a[1][1]) / d;
    r[1][0] = (a[1][2] * a[2][0] - a[1][0] * a[2][2]) / d;
    r[1][1] = (a[0][0] * a[2][2] - a[0][2] * a[2][0]) / d;
    r[1][2] = (a[0][2] * a[1][0] - a[0][0] * a[1][2]) / d;
    r[2][0] = (a[1][0] * a[2][1] - a[1][1] * a[2][0]) / d;
    r[2][1] = (a[0][1] * a[2][0] - a[0][0] * a[2][1]) / d;
    r[2][2] = (a[0][0] * a[1][1] - a[0][1] * a[1][0]) / d;
    Some(r)
}

fn apply(m: &[[f64; 4]; 4], p: [f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (r, o) in out.iter_mut().enumerate() {
        *o = m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3];
    }
    out
}

/// Multiplies two homogeneous 4 × 4 matrices.
pub(crate) fn matmul4(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4]) -> [[f64; 4]; 4] {
    let mut r = [[0.0; 4]; 4];
    for (i, row) in r.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..4).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    r
}

impl Affine {
    /// Builds an affine from a 4 × 4 row-major matrix.
    ///
    /// # Errors
    /// [`Error::InvalidAffine`] if an entry is not finite, the last row is
    /// not `[0, 0, 0, 1]`, or the linear part is singular.
    pub fn from_matrix(m: [[f64; 4]; 4]) -> Result<Self> {
        if m.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::InvalidAffine {
                reason: "an entry is not finite".into(),
            });
        }
        if m[3] != [0.0, 0.0, 0.0, 1.0] {
            return Err(Error::InvalidAffine {
                reason: format!("last row is {:?}, not [0, 0, 0, 1]", m[3]),
            });
        }
        let lin = [
            [m[0][0], m[0][1], m[0][2]],
            [m[1][0], m[1][1], m[1][2]],
            [m[2][0], m[2][1], m[2][2]],
        ];
        let li = inv3(&lin).ok_or_else(|| Error::InvalidAffine {
            reason: "the 3 x 3 linear part is singular".into(),
        })?;
        let t = [m[0][3], m[1][3], m[2][3]];
        let mut inv = [[0.0, 0.0, 0.0, 0.0], [0.0; 4], [0.0; 4], [0.0, 0.0, 0.0, 1.0]];
        for r in 0..3 {
            for c in 0..3 {
                inv[r][c] = li[r][c];
            }
            inv[r][3] = -(li[r][0] * t[0] + li[r][1] * t[1] + li[r][2] * t[2]);
        }
        Ok(Self { m, inv })
    }

    /// Builds an affine from its linear part (row-major, columns = voxel
    /// steps along i, j, k) and its translation (the world position of
    /// voxel (0, 0, 0)).
    ///
    /// # Errors
    /// As [`Affine::from_matrix`].
    pub fn from_parts(linear: [[f64; 3]; 3], translation: [f64; 3]) -> Result<Self> {
        let mut m = [[0.0; 4]; 4];
        for r in 0..3 {
            m[r][..3].copy_from_slice(&linear[r]);
            m[r][3] = translation[r];
        }
        m[3][3] = 1.0;
        Self::from_matrix(m)
    }

    /// Builds an affine from the voxel spacing (mm along i, j, k), the
    /// world position of voxel (0, 0, 0), and a direction matrix whose
    /// **columns** are the unit directions of i, j and k (ITK's convention).
    ///
    /// # Errors
    /// As [`Affine::from_matrix`].
    pub fn from_spacing_origin_direction(
        spacing: [f64; 3],
        origin: WorldPoint,
        direction: [[f64; 3]; 3],
    ) -> Result<Self> {
        let mut lin = [[0.0; 3]; 3];
        for (r, row) in lin.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = direction[r][c] * spacing[c];
            }
        }
        Self::from_parts(lin, origin.to_array())
    }

    /// The identity map (1 mm voxels, RAS axes, origin at voxel 0).
    pub fn identity() -> Self {
        let m = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        Self { m, inv: m }
    }

    /// The 4 × 4 row-major matrix.
    pub fn matrix(&self) -> [[f64; 4]; 4] {
        self.m
    }

    /// The inverse (world → voxel) 4 × 4 matrix.
    pub fn inverse_matrix(&self) -> [[f64; 4]; 4] {
        self.inv
    }

    /// The linear part (row-major; column c is the step of one voxel along
    /// axis c).
    pub fn linear(&self) -> [[f64; 3]; 3] {
        let m = &self.m;
        [
            [m[0][0], m[0][1], m[0][2]],
            [m[1][0], m[1][1], m[1][2]],
            [m[2][0], m[2][1], m[2][2]],
        ]
    }

    /// The world-space step (mm, RAS) of one voxel along voxel axis
    /// `axis` (0 = i, 1 = j, 2 = k).
    ///
    /// # Panics
    /// If `axis > 2` (programmer misuse).
    pub fn axis_step(&self, axis: usize) -> [f64; 3] {
        assert!(axis < 3, "axis must be 0, 1 or 2");
        [self.m[0][axis], self.m[1][axis], self.m[2][axis]]
    }

    /// Voxel spacing in mm along (i, j, k): the norms of the columns.
    pub fn spacing(&self) -> [f64; 3] {
        let n = |c: usize| {
            let s = self.axis_step(c);
            (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]).sqrt()
        };
        [n(0), n(1), n(2)]
    }

    /// The world position of voxel (0, 0, 0).
    pub fn origin(&self) -> WorldPoint {
        WorldPoint::new(self.m[0][3], self.m[1][3], self.m[2][3])
    }

    /// The direction matrix (row-major) whose **columns** are the unit
    /// RAS directions of the i, j and k axes (ITK's `GetDirection`, but in
    /// RAS rather than LPS).
    pub fn direction(&self) -> [[f64; 3]; 3] {
        let s = self.spacing();
        let mut d = self.linear();
        for row in d.iter_mut() {
            for (c, v) in row.iter_mut().enumerate() {
                *v /= s[c];
            }
        }
        d
    }

    /// Maps a voxel coordinate to the world.
    pub fn voxel_to_world(&self, v: Voxel) -> WorldPoint {
        let p = apply(&self.m, [v.i, v.j, v.k]);
        WorldPoint::new(p[0], p[1], p[2])
    }

    /// Maps a world point to a (continuous) voxel coordinate.
    pub fn world_to_voxel(&self, w: WorldPoint) -> Voxel {
        let p = apply(&self.inv, w.to_array());
        Voxel::new(p[0], p[1], p[2])
    }

    /// The anatomical direction of each voxel axis (nibabel's
    /// `aff2axcodes`): for i, j and k, the world axis it is closest to,
    /// assigned greedily by the largest absolute direction cosine so that
    /// no world axis is used twice.
    pub fn axis_codes(&self) -> [AxisCode; 3] {
        let (assign, sign) = self.closest_world_axes();
        [0, 1, 2].map(|a| AxisCode::from_world_axis(assign[a], sign[a]))
    }

    /// [`Affine::axis_codes`] as a string such as `"LAS"`.
    pub fn axis_codes_string(&self) -> String {
        self.axis_codes().iter().map(|c| c.as_char()).collect()
    }

    /// For each voxel axis, the world axis (0 = x, 1 = y, 2 = z) it is
    /// closest to and whether it points along + (true) or −.
    pub(crate) fn closest_world_axes(&self) -> ([usize; 3], [bool; 3]) {
        let d = self.direction();
        let mut assign = [usize::MAX; 3];
        let mut sign = [true; 3];
        let mut used_world = [false; 3];
        for _ in 0..3 {
            let mut best = (-1.0, 0, 0);
            for (a, &asg) in assign.iter().enumerate() {
                if asg != usize::MAX {
                    continue;
                }
                for (w, &used) in used_world.iter().enumerate() {
                    if !used && d[w][a].abs() > best.0 {
                        best = (d[w][a].abs(), w, a);
                    }
                }
            }
            let (_, w, a) = best;
            assign[a] = w;
            sign[a] = d[w][a] >= 0.0;
            used_world[w] = true;
        }
        (assign, sign)
    }

    /// Composes `self` with a voxel-index transform: the result maps
    /// `v` to `self(t(v))`.
    pub(crate) fn then_from(&self, t: &[[f64; 4]; 4]) -> Result<Self> {
        Self::from_matrix(matmul4(&self.m, t))
    }

    /// Builds an affine from an LPS+ (DICOM) voxel → world matrix.
    ///
    /// # Errors
    /// As [`Affine::from_matrix`].
    pub fn from_lps_matrix(m: [[f64; 4]; 4]) -> Result<Self> {
        let mut r = m;
        for v in r[..2].iter_mut().flatten() {
            *v = -*v;
        }
        Self::from_matrix(r)
    }

    /// The voxel → LPS+ (DICOM world) matrix.
    pub fn to_lps_matrix(&self) -> [[f64; 4]; 4] {
        let mut r = self.m;
        for v in r[..2].iter_mut().flatten() {
            *v = -*v;
        }
        r
    }

    /// The largest absolute difference between the entries of two affines.
    pub fn max_abs_diff(&self, other: &Affine) -> f64 {
        self.m
            .iter()
            .flatten()
            .zip(other.m.iter().flatten())
            .fold(0.0, |acc, (a, b)| acc.max((a - b).abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn inverse_round_trip_oblique() {
        let c = 0.3f64.cos();
        let s = 0.3f64.sin();
        let a = Affine::from_parts(
            [[0.7 * c, -0.8 * s, 0.0], [0.7 * s, 0.8 * c, 0.1], [0.0, 0.0, 2.5]],
            [5.0, -7.0, 11.0],
        )
        .unwrap();
        let v = Voxel::new(3.5, -2.0, 17.25);
        let back = a.world_to_voxel(a.voxel_to_world(v));
        assert_abs_diff_eq!(back.i, v.i, epsilon = 1e-12);
        assert_abs_diff_eq!(back.j, v.j, epsilon = 1e-12);
        assert_abs_diff_eq!(back.k, v.k, epsilon = 1e-12);
        let sp = a.spacing();
        assert_abs_diff_eq!(sp[0], 0.7, epsilon = 1e-12);
        assert_abs_diff_eq!(sp[1], 0.8, epsilon = 1e-12);
        assert_abs_diff_eq!(sp[2], (6.25f64 + 0.01).sqrt(), epsilon = 1e-12);
    }

    #[test]
    fn singular_and_non_finite_rejected() {
        assert!(Affine::from_parts([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], [0.0; 3]).is_err());
        assert!(Affine::from_parts([[f64::NAN, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [0.0; 3]).is_err());
    }

    #[test]
    fn axis_codes_match_nibabel_examples() {
        // dcm2niix's affine for ct5n: LAS
        let a = Affine::from_parts(
            [[-0.48828, 0.0, 0.0], [0.0, 0.48828, 0.0], [0.0, 0.0, 2.5]],
            [72.2, 135.67578, -1.2375],
        )
        .unwrap();
        assert_eq!(a.axis_codes_string(), "LAS");
        let lpi = Affine::from_parts([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]], [0.0; 3]).unwrap();
        assert_eq!(lpi.axis_codes_string(), "LPI");
        // sagittal: i → A, j → S, k → R
        let sag = Affine::from_parts([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [0.0; 3]).unwrap();
        assert_eq!(sag.axis_codes_string(), "ASR");
    }

    #[test]
    fn serde_round_trip() {
        let a = Affine::from_parts([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], [1.0, 2.0, 3.0]).unwrap();
        let s = serde_json::to_string(&a).unwrap();
        let b: Affine = serde_json::from_str(&s).unwrap();
        assert_eq!(a, b);
        assert!(serde_json::from_str::<Affine>("[[0,0,0,0],[0,0,0,0],[0,0,0,0],[0,0,0,1]]").is_err());
    }
}

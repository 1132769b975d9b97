//! Orthogonal planes through a volume in RAS space, in radiological or
//! neurological display convention, and the projection of world points
//! onto them.

use aneu_io::{Volume, WorldPoint};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A display plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plane {
    /// Perpendicular to S–I: seen from the feet.
    Axial,
    /// Perpendicular to A–P: seen from the front.
    Coronal,
    /// Perpendicular to R–L: seen from the patient's right, anterior on
    /// the left of the screen.
    Sagittal,
}

impl Plane {
    /// The three planes.
    pub const ALL: [Plane; 3] = [Plane::Axial, Plane::Coronal, Plane::Sagittal];

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Plane::Axial => "axial",
            Plane::Coronal => "coronal",
            Plane::Sagittal => "sagittal",
        }
    }

    /// The canonical voxel axis (0 = i, 1 = j, 2 = k) across the plane.
    pub fn normal_axis(self) -> usize {
        match self {
            Plane::Axial => 2,
            Plane::Coronal => 1,
            Plane::Sagittal => 0,
        }
    }
}

/// Which side the patient's right is shown on in axial and coronal views.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// Patient's right on the screen's left (as if facing the patient).
    #[default]
    Radiological,
    /// Patient's right on the screen's right.
    Neurological,
}

/// A volume reoriented to canonical RAS (exactly, by axis permutation and
/// flips), ready to be cut into planes.
#[derive(Clone, Debug)]
pub struct Scene {
    /// The image on the canonical grid.
    pub image: Volume<f32>,
    /// An optional map on the same grid (the probability map).
    pub overlay: Option<Volume<f32>>,
}

/// A 2D cut (a slice or a projection) with what is needed to place world
/// points on it and label its edges.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// The plane.
    pub plane: Plane,
    /// The convention.
    pub convention: Convention,
    /// Values, `[row, column]`.
    pub pixels: Array2<f32>,
    /// The overlay cut the same way, when the scene has one.
    pub overlay: Option<Array2<f32>>,
    /// Millimetres per row and per column.
    pub pixel_mm: [f64; 2],
    /// The edge labels: left, right, top, bottom (`R`, `L`, `A`, `P`, `S`,
    /// `I`).
    pub labels: [char; 4],
    /// For a slice, the canonical voxel index across the plane.
    pub index: Option<usize>,
    /// For a slab MIP, the voxel range across the plane.
    pub slab: Option<(usize, usize)>,
    // how rows and columns map to canonical voxel axes: (axis, flipped)
    row_axis: (usize, bool),
    col_axis: (usize, bool),
    dims: [usize; 3],
    affine: aneu_io::Affine,
}

impl Scene {
    /// Reorients `image` (and `overlay`, which must share its grid) to
    /// canonical RAS.
    ///
    /// # Errors
    /// [`Error::Grid`] when the overlay's grid differs; reorientation
    /// errors.
    pub fn new(image: &Volume<f32>, overlay: Option<&Volume<f32>>) -> Result<Self> {
        if let Some(o) = overlay
            && (o.size() != image.size() || o.affine().max_abs_diff(image.affine()) > 1e-3)
        {
            return Err(Error::Grid("the overlay's grid differs from the image's".into()));
        }
        Ok(Scene {
            image: image.to_canonical()?,
            overlay: overlay.map(Volume::to_canonical).transpose()?,
        })
    }

    fn layout(&self, plane: Plane, convention: Convention) -> ((usize, bool), (usize, bool), [char; 4]) {
        let radiological = convention == Convention::Radiological;
        // canonical: i → R, j → A, k → S. Flipped means index decreases
        // along the screen direction.
        let lr = if radiological {
            ((0, true), ['R', 'L'])
        } else {
            ((0, false), ['L', 'R'])
        };
        match plane {
            Plane::Axial => ((1, true), lr.0, [lr.1[0], lr.1[1], 'A', 'P']),
            Plane::Coronal => ((2, true), lr.0, [lr.1[0], lr.1[1], 'S', 'I']),
            Plane::Sagittal => ((2, true), (1, true), ['A', 'P', 'S', 'I']),
        }
    }

    fn dims(&self) -> [usize; 3] {
        self.image.size().to_ijk()
    }

    fn empty_view(&self, plane: Plane, convention: Convention) -> View {
        let (row_axis, col_axis, labels) = self.layout(plane, convention);
        let sp = self.image.spacing();
        let dims = self.dims();
        View {
            plane,
            convention,
            pixels: Array2::zeros((dims[row_axis.0], dims[col_axis.0])),
            overlay: self
                .overlay
                .as_ref()
                .map(|_| Array2::zeros((dims[row_axis.0], dims[col_axis.0]))),
            pixel_mm: [sp[row_axis.0], sp[col_axis.0]],
            labels,
            index: None,
            slab: None,
            row_axis,
            col_axis,
            dims,
            affine: *self.image.affine(),
        }
    }

    /// The canonical voxel index across `plane` nearest to `at`, clamped
    /// into the volume.
    pub fn index_at(&self, plane: Plane, at: WorldPoint) -> usize {
        let v = self.image.world_to_voxel(at);
        let a = plane.normal_axis();
        let x = [v.i, v.j, v.k][a];
        let n = self.dims()[a];
        if x.is_finite() {
            (x.round().max(0.0) as usize).min(n - 1)
        } else {
            n / 2
        }
    }

    /// The number of slices across `plane`.
    pub fn slices(&self, plane: Plane) -> usize {
        self.dims()[plane.normal_axis()]
    }

    /// Slice `index` across `plane` (clamped).
    pub fn slice(&self, plane: Plane, index: usize, convention: Convention) -> View {
        let a = plane.normal_axis();
        let index = index.min(self.dims()[a] - 1);
        let mut v = self.empty_view(plane, convention);
        v.index = Some(index);
        let img = self.image.data();
        let ov = self.overlay.as_ref().map(|o| o.data());
        let (rows, cols) = v.pixels.dim();
        for r in 0..rows {
            for c in 0..cols {
                let ijk = v.voxel_of(r, c, index);
                let at = [ijk[2], ijk[1], ijk[0]];
                v.pixels[[r, c]] = img[at];
                if let (Some(o), Some(ov)) = (v.overlay.as_mut(), ov.as_ref()) {
                    o[[r, c]] = ov[at];
                }
            }
        }
        v
    }

    /// The slice through a world point.
    pub fn slice_at(&self, plane: Plane, at: WorldPoint, convention: Convention) -> View {
        self.slice(plane, self.index_at(plane, at), convention)
    }

    /// The maximum intensity projection across `plane`, over the whole
    /// volume (`slab = None`) or over the slices within `half_mm` of a
    /// world point (a slab MIP). The overlay is projected by its maximum
    /// too.
    pub fn mip(&self, plane: Plane, slab: Option<(WorldPoint, f64)>, convention: Convention) -> View {
        let a = plane.normal_axis();
        let n = self.dims()[a];
        let (lo, hi) = match slab {
            None => (0, n - 1),
            Some((p, half_mm)) => {
                let c = self.index_at(plane, p) as f64;
                let h = (half_mm / self.image.spacing()[a]).max(0.0);
                (
                    ((c - h).ceil().max(0.0)) as usize,
                    ((c + h).floor() as usize).min(n - 1),
                )
            }
        };
        let mut v = self.empty_view(plane, convention);
        v.slab = Some((lo, hi));
        v.pixels.fill(f32::NEG_INFINITY);
        if let Some(o) = v.overlay.as_mut() {
            o.fill(f32::NEG_INFINITY);
        }
        let img = self.image.data();
        let ov = self.overlay.as_ref().map(|o| o.data());
        let (rows, cols) = v.pixels.dim();
        for s in lo..=hi {
            for r in 0..rows {
                for c in 0..cols {
                    let ijk = v.voxel_of(r, c, s);
                    let at = [ijk[2], ijk[1], ijk[0]];
                    let p = &mut v.pixels[[r, c]];
                    *p = p.max(img[at]);
                    if let (Some(o), Some(ov)) = (v.overlay.as_mut(), ov.as_ref()) {
                        let q = &mut o[[r, c]];
                        *q = q.max(ov[at]);
                    }
                }
            }
        }
        v
    }
}

impl View {
    /// The canonical voxel `[i, j, k]` shown at `(row, col)` of this view
    /// at position `across` along the normal.
    fn voxel_of(&self, row: usize, col: usize, across: usize) -> [usize; 3] {
        let mut ijk = [0usize; 3];
        let n = self.dims;
        let (ra, rf) = self.row_axis;
        let (ca, cf) = self.col_axis;
        ijk[ra] = if rf { n[ra] - 1 - row } else { row };
        ijk[ca] = if cf { n[ca] - 1 - col } else { col };
        ijk[self.plane.normal_axis()] = across;
        ijk
    }

    /// Where a world point falls on this view: `(row, col)` in pixels
    /// (continuous), and its distance (mm) from the slice's plane (0 for a
    /// whole-volume MIP; for a slab MIP, the distance outside the slab).
    pub fn project(&self, w: WorldPoint) -> (f64, f64, f64) {
        let v = self.affine.world_to_voxel(w);
        let x = [v.i, v.j, v.k];
        let n = self.dims;
        let (ra, rf) = self.row_axis;
        let (ca, cf) = self.col_axis;
        let row = if rf { (n[ra] - 1) as f64 - x[ra] } else { x[ra] };
        let col = if cf { (n[ca] - 1) as f64 - x[ca] } else { x[ca] };
        let a = self.plane.normal_axis();
        let sp = self.affine.spacing()[a];
        let depth = match (self.index, self.slab) {
            (Some(i), _) => (x[a] - i as f64).abs() * sp,
            (None, Some((lo, hi))) => {
                if x[a] < lo as f64 {
                    (lo as f64 - x[a]) * sp
                } else if x[a] > hi as f64 {
                    (x[a] - hi as f64) * sp
                } else {
                    0.0
                }
            }
            (None, None) => 0.0,
        };
        (row, col, depth)
    }

    /// Rows and columns.
    pub fn dim(&self) -> (usize, usize) {
        self.pixels.dim()
    }
}

//! A preprocessed scan held in memory for sampling: image, mask, findings.

use aneu_io::{Location, Volume, Voxel, VoxelIndex};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One annotated aneurysm, in the voxel coordinates of its [`Case`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The aneurysm centre (continuous voxel coordinates of the case grid).
    pub voxel: Voxel,
    /// The RSNA location, when known.
    pub location: Option<Location>,
    /// The aneurysm radius, when known (phantoms know it, RSNA localizers
    /// do not); otherwise the sampler's default radius is used.
    pub radius_mm: Option<f64>,
}

/// A preprocessed scan ready for sampling: the image and the brain mask on
/// one grid, its findings, and the sampling pools the sampler computes
/// ([`crate::PatchSampler::prepare`]).
///
/// The grid is expected in canonical RAS orientation (as aneu-preproc
/// writes it), so that array axis 2 (`i`) runs from the subject's left to
/// right; [`crate::augment::RandFlip`] relies on this to swap left/right labels.
#[derive(Clone, Debug)]
pub struct Case {
    /// An identifier, usually the SeriesInstanceUID.
    pub id: String,
    /// The image (normalised intensities).
    pub image: Volume<f32>,
    /// The brain mask (non-zero inside) on the image's grid.
    pub mask: Volume<u8>,
    /// The annotated aneurysms.
    pub findings: Vec<Finding>,
    /// Centres of earlier false positives (the hard-negative pool), filled
    /// by the trainer between hard-negative rounds.
    pub hard_negatives: Vec<VoxelIndex>,
    pub(crate) vessels: Vec<VoxelIndex>,
    pub(crate) vessel_labels: Option<Volume<u8>>,
    pub(crate) bbox: [[usize; 2]; 3],
}

impl Case {
    /// Checks and wraps a scan.
    ///
    /// # Errors
    /// [`Error::InvalidCase`] when the image and mask grids differ, the
    /// image has a NaN or infinite voxel, the mask is empty, or a finding
    /// lies outside the volume.
    pub fn new(id: impl Into<String>, image: Volume<f32>, mask: Volume<u8>, findings: Vec<Finding>) -> Result<Self> {
        let id = id.into();
        let bad = |reason: String| Error::InvalidCase {
            case: id.clone(),
            reason,
        };
        if image.size() != mask.size() {
            return Err(bad(format!(
                "image size {:?} differs from mask size {:?}",
                image.size().to_ijk(),
                mask.size().to_ijk()
            )));
        }
        if image.affine().max_abs_diff(mask.affine()) > 1e-3 {
            return Err(bad("image and mask affines differ".into()));
        }
        if let Some(p) = image.as_slice().iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("non-finite voxel at linear index {p}")));
        }
        let [ni, nj, nk] = image.size().to_ijk();
        for (n, f) in findings.iter().enumerate() {
            let v = f.voxel;
            let inside = |x: f64, n: usize| x.is_finite() && x > -0.5 && x < n as f64 - 0.5;
            if !(inside(v.i, ni) && inside(v.j, nj) && inside(v.k, nk)) {
                return Err(bad(format!(
                    "finding {n} at voxel ({:.1}, {:.1}, {:.1}) is outside the volume",
                    v.i, v.j, v.k
                )));
            }
            if f.radius_mm.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
                return Err(bad(format!("finding {n} has radius {:?}", f.radius_mm)));
            }
        }
        let mut lo = [usize::MAX; 3];
        let mut hi = [0usize; 3];
        for ((k, j, i), m) in mask.data().indexed_iter() {
            if *m != 0 {
                for (a, x) in [k, j, i].into_iter().enumerate() {
                    lo[a] = lo[a].min(x);
                    hi[a] = hi[a].max(x + 1);
                }
            }
        }
        if lo[0] == usize::MAX {
            return Err(bad("the mask is empty".into()));
        }
        Ok(Case {
            id,
            image,
            mask,
            findings,
            hard_negatives: Vec::new(),
            vessels: Vec::new(),
            vessel_labels: None,
            bbox: [[lo[0], hi[0]], [lo[1], hi[1]], [lo[2], hi[2]]],
        })
    }

    /// The case with vessel labels (`aneu_io::VESSEL_LABELS`) on its
    /// image's grid, for training a vessel head.
    ///
    /// # Errors
    /// [`Error::InvalidCase`] when their grid is not the image's.
    pub fn with_vessel_labels(mut self, labels: Volume<u8>) -> Result<Self> {
        if labels.size() != self.image.size() || labels.affine().max_abs_diff(self.image.affine()) > 1e-3 {
            return Err(Error::InvalidCase {
                case: self.id.clone(),
                reason: "the vessel labels' grid differs from the image's".into(),
            });
        }
        self.vessel_labels = Some(labels);
        Ok(self)
    }

    /// The vessel labels, when the case has them.
    pub fn vessel_labels(&self) -> Option<&Volume<u8>> {
        self.vessel_labels.as_ref()
    }

    /// Whether the scan has an aneurysm.
    pub fn is_positive(&self) -> bool {
        !self.findings.is_empty()
    }

    /// The mask's bounding box, per array axis `[k, j, i]`, as half-open
    /// ranges `[lo, hi)`.
    pub fn mask_bbox(&self) -> [[usize; 2]; 3] {
        self.bbox
    }

    /// The vessel-biased negative pool (empty until
    /// [`crate::PatchSampler::prepare`] ran with a vessel ratio above 0).
    pub fn vessel_candidates(&self) -> &[VoxelIndex] {
        &self.vessels
    }

    /// The voxel's position normalised to the mask bounding box: 0 at the
    /// first voxel of the box and 1 at the last, per array axis `[k, j, i]`.
    pub fn normalised_position(&self, kji: [f64; 3]) -> [f64; 3] {
        std::array::from_fn(|a| {
            let [lo, hi] = self.bbox[a];
            let span = (hi - lo).saturating_sub(1).max(1) as f64;
            (kji[a] - lo as f64) / span
        })
    }

    /// Each finding's centre as `[k, j, i]` and radius in mm (the default
    /// where unknown).
    pub(crate) fn finding_spheres(&self, default_radius_mm: f64) -> Vec<([f64; 3], f64, Option<Location>)> {
        self.findings
            .iter()
            .map(|f| (f.voxel.to_kji(), f.radius_mm.unwrap_or(default_radius_mm), f.location))
            .collect()
    }

    /// Spacing per array axis `[k, j, i]`, in mm.
    pub(crate) fn spacing_kji(&self) -> [f64; 3] {
        let [si, sj, sk] = self.image.spacing();
        [sk, sj, si]
    }
}

//! Candidate points from a probability map: local maxima above a floor,
//! refined to a sub-voxel centroid, then non-maximum suppression by a
//! distance in mm, and optionally each kept maximum moved to the centroid
//! of its plateau.

use aneu_io::{Affine, Voxel};
use ndarray::ArrayView3;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Options of [`find_peaks`].
///
/// ```
/// let o = aneu_infer::CandidateOptions::default();
/// assert_eq!((o.floor, o.nms_mm, o.max_candidates), (0.05, 10.0, 20));
/// assert_eq!(o.refine_mm, Some(5.0));
/// assert_eq!(o.territory_radius, 9.0);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CandidateOptions {
    /// Maxima below this probability are ignored.
    pub floor: f32,
    /// Two candidates closer than this (mm) are one: the lower goes.
    pub nms_mm: f64,
    /// At most this many candidates per scan, highest first.
    pub max_candidates: usize,
    /// Rescore each candidate by the geometric mean of its map peak and the
    /// `Aneurysm Present` head's probability on a patch centred on it (the
    /// patch head sees the whole neighbourhood; a dense map alone is
    /// generous with bright vessel segments). Off by default: on the CI
    /// phantom model it lowered the scan AUC (docs/inference.md).
    pub rescore: bool,
    /// Moves each kept candidate to the weighted centroid of the map
    /// values ≥ half its peak that connect to the peak within this
    /// distance (mm): the middle of a plateau, such as the sphere a dense
    /// head is trained to fill, instead of wherever its maximum fell.
    /// 5 mm by default (on the detection benchmark it halved the shipped
    /// model's median localisation error, docs/benchmarks.md); `None`
    /// keeps the centroid of the peak's 3×3×3 neighbourhood.
    /// Non-maximum suppression uses the latter either way.
    pub refine_mm: Option<f64>,
    /// The candidate's artery and locations, from a vessel head, are the
    /// head's probabilities summed over the voxels within this distance
    /// (voxels of the preprocessed grid) of the candidate
    /// ([`crate::territory`]); 9 by default. A candidate sits inside its
    /// dome, which the shipped head calls the widest artery (the
    /// supraclinoid ICA) whatever its parent, so a reach well past the
    /// dome reads the arteries around it: on the detection benchmark the
    /// hits' artery was right at 31 of 58 with 9, 20 with 6 and 15 with 2
    /// (docs/benchmarks.md, "Left and right from the midline").
    pub territory_radius: f64,
}

impl Default for CandidateOptions {
    fn default() -> Self {
        Self {
            floor: 0.05,
            nms_mm: 10.0,
            max_candidates: 20,
            rescore: false,
            refine_mm: Some(5.0),
            territory_radius: 9.0,
        }
    }
}

impl CandidateOptions {
    /// Sets the floor.
    pub fn with_floor(mut self, f: f32) -> Self {
        self.floor = f;
        self
    }
    /// Sets the NMS distance.
    pub fn with_nms_mm(mut self, d: f64) -> Self {
        self.nms_mm = d;
        self
    }
    /// Sets the maximum count.
    pub fn with_max_candidates(mut self, n: usize) -> Self {
        self.max_candidates = n;
        self
    }
    /// Sets the plateau refinement's reach ([`CandidateOptions::refine_mm`]).
    pub fn with_refine_mm(mut self, d: Option<f64>) -> Self {
        self.refine_mm = d;
        self
    }

    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`].
    pub fn validate(&self) -> Result<()> {
        if !(self.floor.is_finite() && (0.0..=1.0).contains(&self.floor)) {
            return Err(Error::InvalidConfig(format!(
                "candidate floor {} is outside [0, 1]",
                self.floor
            )));
        }
        if !(self.nms_mm.is_finite() && self.nms_mm >= 0.0) {
            return Err(Error::InvalidConfig(format!("nms_mm {} must be ≥ 0", self.nms_mm)));
        }
        if self.max_candidates == 0 {
            return Err(Error::InvalidConfig("max_candidates must be positive".into()));
        }
        if !(self.territory_radius.is_finite() && self.territory_radius >= 0.0) {
            return Err(Error::InvalidConfig(format!(
                "territory_radius {} must be ≥ 0",
                self.territory_radius
            )));
        }
        if let Some(d) = self.refine_mm
            && !(d.is_finite() && d > 0.0)
        {
            return Err(Error::InvalidConfig(format!("refine_mm {d} must be > 0")));
        }
        Ok(())
    }
}

/// A local maximum of a map.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    /// The map value at the maximum.
    pub score: f32,
    /// The maximum's voxel.
    pub voxel: [usize; 3],
    /// The centroid of the values ≥ half the peak in its 3×3×3
    /// neighbourhood, or of its plateau with
    /// [`CandidateOptions::refine_mm`] (sub-voxel).
    pub centroid: Voxel,
}

/// Local maxima of `map` (`[k, j, i]`, on the grid of `affine`) at or above
/// `floor`, refined and suppressed: a maximum is kept unless a higher one
/// already kept lies within `nms_mm` (world distance); then, with
/// `refine_mm`, each kept one moves to its plateau's centroid
/// ([`plateau_centroid`]). Highest first.
///
/// ```
/// use aneu_io::Affine;
/// use aneu_infer::{CandidateOptions, find_peaks};
/// let mut m = ndarray::Array3::<f32>::zeros((20, 20, 20));
/// m[[5, 5, 5]] = 0.9;
/// m[[5, 5, 7]] = 0.8; // 2 mm away: suppressed
/// m[[15, 15, 15]] = 0.6;
/// let p = find_peaks(m.view(), &Affine::identity(), &CandidateOptions::default().with_nms_mm(5.0));
/// assert_eq!(p.len(), 2);
/// assert_eq!(p[0].voxel, [5, 5, 5]);
/// assert_eq!(p[1].voxel, [15, 15, 15]);
/// ```
pub fn find_peaks(map: ArrayView3<'_, f32>, affine: &Affine, opts: &CandidateOptions) -> Vec<Peak> {
    let (nk, nj, ni) = map.dim();
    let mut maxima: Vec<Peak> = Vec::new();
    for ((k, j, i), &v) in map.indexed_iter() {
        if !(v >= opts.floor && v > 0.0) {
            continue;
        }
        let mut is_max = true;
        let mut sum = 0.0f64;
        let mut c = [0.0f64; 3];
        'n: for dk in -1i64..=1 {
            for dj in -1i64..=1 {
                for di in -1i64..=1 {
                    let (kk, jj, ii) = (k as i64 + dk, j as i64 + dj, i as i64 + di);
                    if kk < 0 || jj < 0 || ii < 0 || kk >= nk as i64 || jj >= nj as i64 || ii >= ni as i64 {
                        continue;
                    }
                    let u = map[[kk as usize, jj as usize, ii as usize]];
                    // ties: the first voxel in memory order wins a plateau
                    let before = (dk, dj, di) < (0, 0, 0);
                    if u > v || (u == v && before && (dk, dj, di) != (0, 0, 0)) {
                        is_max = false;
                        break 'n;
                    }
                    if u >= 0.5 * v {
                        let w = f64::from(u);
                        sum += w;
                        c[0] += w * kk as f64;
                        c[1] += w * jj as f64;
                        c[2] += w * ii as f64;
                    }
                }
            }
        }
        if is_max {
            maxima.push(Peak {
                score: v,
                voxel: [k, j, i],
                centroid: Voxel::new(c[2] / sum, c[1] / sum, c[0] / sum),
            });
        }
    }
    maxima.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.voxel.cmp(&b.voxel)));
    let mut kept: Vec<(Peak, [f64; 3])> = Vec::new();
    for p in maxima {
        if kept.len() >= opts.max_candidates {
            break;
        }
        let w = affine.voxel_to_world(p.centroid).to_array();
        let near = kept.iter().any(|(_, o)| {
            let d2: f64 = (0..3).map(|a| (o[a] - w[a]).powi(2)).sum();
            d2.sqrt() < opts.nms_mm
        });
        if !near {
            kept.push((p, w));
        }
    }
    let spacing = affine.spacing();
    kept.into_iter()
        .map(|(p, _)| match opts.refine_mm {
            Some(reach) => Peak {
                centroid: plateau_centroid(map, p.voxel, spacing, reach),
                ..p
            },
            None => p,
        })
        .collect()
}

/// The weighted centroid of the voxels of `map` whose values are ≥ half
/// the value at `peak` and that connect to `peak` (26-neighbourhood)
/// through such voxels, all within `reach` mm of it (voxel sizes
/// `spacing`, in `[i, j, k]` order as [`Affine::spacing`] gives them).
///
/// ```
/// use aneu_infer::plateau_centroid;
/// let mut m = ndarray::Array3::<f32>::zeros((12, 12, 12));
/// // a plateau from i = 2 to 8 along one line, its maximum at one end
/// for i in 2..=8 {
///     m[[5, 5, i]] = 0.8;
/// }
/// m[[5, 5, 2]] = 0.81;
/// let c = plateau_centroid(m.view(), [5, 5, 2], [1.0; 3], 10.0);
/// assert!((c.i - 5.0).abs() < 0.01 && c.j == 5.0 && c.k == 5.0);
/// ```
pub fn plateau_centroid(map: ArrayView3<'_, f32>, peak: [usize; 3], spacing: [f64; 3], reach: f64) -> Voxel {
    let half = 0.5 * map[peak];
    let dims = map.dim();
    let dims = [dims.0, dims.1, dims.2];
    // spacing along [k, j, i]
    let sp = [spacing[2], spacing[1], spacing[0]];
    let within = |v: [usize; 3]| -> bool {
        let d2: f64 = (0..3).map(|a| ((v[a] as f64 - peak[a] as f64) * sp[a]).powi(2)).sum();
        d2 <= reach * reach
    };
    let mut seen = std::collections::HashSet::from([peak]);
    let mut stack = vec![peak];
    let (mut sum, mut c) = (0.0f64, [0.0f64; 3]);
    while let Some(v) = stack.pop() {
        let w = f64::from(map[v]);
        sum += w;
        for a in 0..3 {
            c[a] += w * v[a] as f64;
        }
        for dk in -1i64..=1 {
            for dj in -1i64..=1 {
                for di in -1i64..=1 {
                    let n = [v[0] as i64 + dk, v[1] as i64 + dj, v[2] as i64 + di];
                    if (0..3).any(|a| n[a] < 0 || n[a] >= dims[a] as i64) {
                        continue;
                    }
                    let n = n.map(|x| x as usize);
                    if map[n] >= half && within(n) && seen.insert(n) {
                        stack.push(n);
                    }
                }
            }
        }
    }
    Voxel::new(c[2] / sum, c[1] / sum, c[0] / sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn plateau_gives_one_peak_and_centroid_in_its_middle() {
        let mut m = Array3::<f32>::zeros((9, 9, 9));
        m[[4, 4, 4]] = 0.5;
        m[[4, 4, 5]] = 0.5;
        let p = find_peaks(
            m.view(),
            &Affine::identity(),
            &CandidateOptions::default().with_nms_mm(0.0),
        );
        assert_eq!(p.len(), 1);
        assert!((p[0].centroid.i - 4.5).abs() < 1e-9);
    }

    /// A sphere of radius 3 mm on an anisotropic grid, its maximum near the
    /// rim, beside a brighter, unconnected blob and a connected tail beyond
    /// the reach: refined, the candidate sits at the sphere's centre (the
    /// 3×3×3 centroid stays near the rim).
    #[test]
    fn refinement_finds_the_plateau_centre() {
        let mut m = Array3::<f32>::zeros((24, 24, 24));
        let centre = [10.0, 12.0, 11.0];
        let spacing = [0.5, 1.0, 2.0]; // [i, j, k]
        for ((k, j, i), v) in m.indexed_iter_mut() {
            let d2 = ((k as f64 - centre[0]) * spacing[2]).powi(2)
                + ((j as f64 - centre[1]) * spacing[1]).powi(2)
                + ((i as f64 - centre[2]) * spacing[0]).powi(2);
            if d2 <= 9.0 {
                *v = 0.7;
            }
        }
        m[[10, 12, 6]] = 0.72; // the maximum, 2.5 mm off centre along i
        // a tail from the far rim on, beyond the reach, and a brighter
        // blob apart
        for i in 18..24 {
            m[[10, 12, i]] = 0.7;
        }
        m[[20, 20, 20]] = 0.9;
        let identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let affine = Affine::from_spacing_origin_direction(spacing, aneu_io::WorldPoint::new(0.0, 0.0, 0.0), identity)
            .expect("a valid affine");
        let o = CandidateOptions::default().with_nms_mm(5.0);
        let plain = find_peaks(m.view(), &affine, &o.clone().with_refine_mm(None));
        let refined = find_peaks(m.view(), &affine, &o.clone().with_refine_mm(Some(5.6)));
        assert_eq!(plain.len(), 2);
        assert_eq!(refined.len(), 2);
        assert_eq!(refined[1].voxel, [10, 12, 6]);
        assert!(plain[1].centroid.i < 7.0, "{:?}", plain[1].centroid);
        let c = refined[1].centroid;
        let err = ((c.i - centre[2]) * spacing[0])
            .hypot((c.j - centre[1]) * spacing[1])
            .hypot((c.k - centre[0]) * spacing[2]);
        assert!(err < 0.5, "{c:?}: {err} mm from the centre");
        // the lone maximum is its own plateau
        assert_eq!(refined[0].centroid, Voxel::new(20.0, 20.0, 20.0));
        assert!(o.with_refine_mm(Some(0.0)).validate().is_err());
    }

    #[test]
    fn floor_and_cap_apply() {
        let mut m = Array3::<f32>::zeros((30, 30, 30));
        for n in 0..5 {
            m[[3 + 5 * n, 3, 3]] = 0.1 * (n + 1) as f32;
        }
        let o = CandidateOptions::default().with_floor(0.25).with_nms_mm(1.0);
        let p = find_peaks(m.view(), &Affine::identity(), &o);
        assert_eq!(p.len(), 3);
        let p = find_peaks(m.view(), &Affine::identity(), &o.with_max_candidates(2));
        assert_eq!(p.iter().map(|p| p.voxel[0]).collect::<Vec<_>>(), vec![23, 18]);
    }

    #[test]
    fn nms_uses_millimetres() {
        let mut m = Array3::<f32>::zeros((10, 10, 10));
        m[[2, 2, 2]] = 0.9;
        m[[2, 2, 6]] = 0.8; // 4 voxels along i
        let aff = Affine::from_spacing_origin_direction(
            [3.0, 1.0, 1.0],
            aneu_io::WorldPoint::new(0.0, 0.0, 0.0),
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        )
        .unwrap();
        let o = CandidateOptions::default().with_nms_mm(10.0);
        assert_eq!(find_peaks(m.view(), &Affine::identity(), &o).len(), 1);
        assert_eq!(find_peaks(m.view(), &aff, &o).len(), 2); // 12 mm apart
    }
}

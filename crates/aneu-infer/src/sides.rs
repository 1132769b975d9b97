//! Which side of the head an artery lies on.
//!
//! A patch network trained with left–right flips and instance norm cannot
//! tell the left ICA from the right one: the flip shows it both sides with
//! the same surroundings, and the norm removes where the patch lies
//! (docs/benchmarks.md, "The artery map"). Yet the side is a fact of
//! geometry: the left arteries lie left of the head's midsagittal plane.
//! [`Sides::Midline`] lets the vessel head say only *which* artery, and the
//! midline say which side.

use aneu_io::{Affine, Location, Volume, Voxel, WorldPoint};
use ndarray::Array3;
use serde::{Deserialize, Serialize};

/// Where the left and right arteries (ICA, MCA, ACA, PComm) of the
/// candidates' locations and of the artery map get their side.
///
/// ```
/// use aneu_infer::Sides;
/// assert_eq!(Sides::default(), Sides::Midline);
/// assert_eq!(serde_json::to_string(&Sides::Network).unwrap(), "\"network\"");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sides {
    /// As the network says.
    Network,
    /// From the [`Midline`] of the scan's brain mask: a lateral artery is
    /// the one on the side of the midline where its voxel (or candidate)
    /// lies, and the network's probabilities for its left and right
    /// arteries are added. The network's side when the mask is empty.
    #[default]
    Midline,
}

/// The centroid (RAS mm) of a mask's non-zero voxels, or `None` when the
/// mask is empty: the centre of the brain, for a brain mask.
///
/// ```
/// use aneu_io::{Affine, Volume};
/// use aneu_infer::mask_centre;
/// let mut m = ndarray::Array3::<u8>::zeros((4, 6, 10));
/// m.slice_mut(ndarray::s![1..3, 0..4, 2..6]).fill(1);
/// let mask = Volume::new(m, Affine::identity()).unwrap();
/// let c = mask_centre(&mask).unwrap();
/// assert_eq!((c.x, c.y, c.z), (3.5, 1.5, 1.5));
/// ```
pub fn mask_centre(mask: &Volume<u8>) -> Option<WorldPoint> {
    let (mut n, mut sum) = (0usize, [0f64; 3]);
    for ((k, j, i), &v) in mask.data().indexed_iter() {
        if v != 0 {
            n += 1;
            sum[0] += i as f64;
            sum[1] += j as f64;
            sum[2] += k as f64;
        }
    }
    (n > 0).then(|| {
        let c = sum.map(|s| s / n as f64);
        mask.voxel_to_world(Voxel::new(c[0], c[1], c[2]))
    })
}

/// An estimate of the head's midsagittal plane: the plane `x = x_mm` (RAS:
/// the patient's right is +x) through the centroid of the brain mask. It
/// assumes the head is not turned far about its vertical axis: a turn of θ
/// moves the true plane by `d · tan θ` at `d` mm in front of or behind the
/// centroid. On the phantoms (turned up to 8°), it puts every voxel of the
/// ICAs, MCAs and PComms on its side, and about 80 % of the ACAs, which
/// run within a few mm of the midline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Midline {
    /// The plane's x (mm, RAS).
    pub x_mm: f64,
}

impl Midline {
    /// The plane through the centroid of the mask's non-zero voxels
    /// ([`mask_centre`]), or `None` when the mask is empty.
    ///
    /// ```
    /// use aneu_io::{Affine, Volume};
    /// use aneu_infer::Midline;
    /// let mut m = ndarray::Array3::<u8>::zeros((4, 4, 10));
    /// m.slice_mut(ndarray::s![.., .., 2..6]).fill(1); // i = 2..=5: centroid 3.5
    /// let mask = Volume::new(m, Affine::identity()).unwrap();
    /// assert_eq!(Midline::of_mask(&mask).unwrap().x_mm, 3.5);
    /// ```
    pub fn of_mask(mask: &Volume<u8>) -> Option<Midline> {
        mask_centre(mask).map(|c| Midline { x_mm: c.x })
    }

    /// Whether `w` lies on the patient's right of the plane.
    pub fn is_right(&self, w: WorldPoint) -> bool {
        w.x > self.x_mm
    }

    /// The 13 location probabilities (in [`Location::ALL`] order) of a
    /// point at `w`, with each lateral location's probability moved to its
    /// artery on `w`'s side. The sum is unchanged.
    ///
    /// ```
    /// use aneu_io::{Location, WorldPoint};
    /// use aneu_infer::Midline;
    /// let mut p = [0.0; 13];
    /// p[Location::LeftMca.index()] = 0.5;
    /// p[Location::RightMca.index()] = 0.2;
    /// p[Location::AcomA.index()] = 0.3;
    /// let right = Midline { x_mm: 0.0 }.fold(p, WorldPoint::new(30.0, 0.0, 0.0));
    /// assert_eq!(right[Location::RightMca.index()], 0.7);
    /// assert_eq!(right[Location::LeftMca.index()], 0.0);
    /// assert_eq!(right[Location::AcomA.index()], 0.3);
    /// ```
    pub fn fold(&self, probs: [f64; 13], w: WorldPoint) -> [f64; 13] {
        let right = self.is_right(w);
        let mut out = [0.0; 13];
        for l in Location::ALL {
            out[l.on_side(right).index()] += probs[l.index()];
        }
        out
    }

    /// Moves each lateral artery of a label map (RSNA vessel labels,
    /// `[k, j, i]` on the grid of `affine`) to its artery on its voxel's
    /// side. Background, the midline arteries and labels outside 1–13 stay.
    ///
    /// ```
    /// use aneu_io::{Affine, Location};
    /// use aneu_infer::Midline;
    /// let (left, right) = (Location::LeftMca.vessel_label(), Location::RightMca.vessel_label());
    /// let mut m = ndarray::Array3::<u8>::zeros((1, 1, 4));
    /// m[[0, 0, 0]] = right; // x = 0: left of the plane at 1.5
    /// m[[0, 0, 3]] = left; // x = 3: right of it
    /// Midline { x_mm: 1.5 }.relabel(&mut m, &Affine::identity());
    /// assert_eq!((m[[0, 0, 0]], m[[0, 0, 3]]), (left, right));
    /// ```
    pub fn relabel(&self, labels: &mut Array3<u8>, affine: &Affine) {
        for ((k, j, i), l) in labels.indexed_iter_mut() {
            let Some(loc) = Location::from_vessel_label(*l).filter(|loc| loc.is_lateral()) else {
                continue;
            };
            let w = affine.voxel_to_world(Voxel::new(i as f64, j as f64, k as f64));
            *l = loc.on_side(self.is_right(w)).vessel_label();
        }
    }
}

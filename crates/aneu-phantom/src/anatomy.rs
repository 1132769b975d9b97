//! The head and its arteries, in a per-case **head frame**: millimetres,
//! RAS axes (+x patient right, +y anterior, +z superior), origin at the
//! centre of the Circle of Willis (just above the sella).

use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::shapes::{Primitive, V3, add, catmull_rom, norm, scale, sub, tube, unit};

/// Which side of the body a segment lies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// Patient left (−x).
    Left,
    /// Patient right (+x).
    Right,
    /// On the midline.
    Midline,
}

impl Side {
    fn sign(self) -> f64 {
        match self {
            Side::Left => -1.0,
            Side::Right => 1.0,
            Side::Midline => 0.0,
        }
    }
}

/// The named arterial segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Artery {
    Vertebral,
    Basilar,
    SuperiorCerebellar,
    /// P1: basilar tip to the PComm junction.
    PcaP1,
    /// P2 and beyond.
    PcaP2,
    /// Petrous and cavernous (infraclinoid) internal carotid.
    IcaInfraclinoid,
    /// Clinoid to terminus (supraclinoid) internal carotid.
    IcaSupraclinoid,
    PComm,
    MiddleCerebralM1,
    MiddleCerebralM2,
    AnteriorCerebralA1,
    AnteriorCerebralA2,
    AComm,
    /// A random distal branch.
    Distal,
}

/// The label of vessels that belong to no RSNA location's artery (distal
/// branches, distractors) in the per-artery label map
/// (`ground_truth/<uid>/arteries.nii.gz`).
pub const OTHER_VESSEL_LABEL: u8 = 14;

/// The label of aneurysm voxels in the per-artery label map.
pub const ANEURYSM_LABEL: u8 = 15;

impl Artery {
    /// The label of this artery on `side` in the per-artery label map: the
    /// RSNA vessel-segmentation value of the location it carries
    /// ([`aneu_io::Location::vessel_label`], 1 to 13), or
    /// [`OTHER_VESSEL_LABEL`]. The basilar trunk is "Basilar Tip";
    /// vertebrals, superior cerebellars and the PCAs are "Other Posterior
    /// Circulation"; M2 belongs to the MCA and A2 to the ACA.
    ///
    /// ```
    /// use aneu_io::Location;
    /// use aneu_phantom::anatomy::{Artery, Side};
    /// assert_eq!(Artery::MiddleCerebralM2.vessel_label(Side::Left), Location::LeftMca.vessel_label());
    /// assert_eq!(Artery::Vertebral.vessel_label(Side::Right), Location::OtherPosterior.vessel_label());
    /// assert_eq!(Artery::Distal.vessel_label(Side::Left), aneu_phantom::anatomy::OTHER_VESSEL_LABEL);
    /// ```
    pub fn vessel_label(self, side: Side) -> u8 {
        use aneu_io::Location::*;
        let sided = |left: aneu_io::Location, right: aneu_io::Location| {
            if side == Side::Right { right } else { left }
        };
        let location = match self {
            Artery::Vertebral | Artery::SuperiorCerebellar | Artery::PcaP1 | Artery::PcaP2 => OtherPosterior,
            Artery::Basilar => BasilarTip,
            Artery::IcaInfraclinoid => sided(LeftInfraclinoidIca, RightInfraclinoidIca),
            Artery::IcaSupraclinoid => sided(LeftSupraclinoidIca, RightSupraclinoidIca),
            Artery::PComm => sided(LeftPcomA, RightPcomA),
            Artery::MiddleCerebralM1 | Artery::MiddleCerebralM2 => sided(LeftMca, RightMca),
            Artery::AnteriorCerebralA1 | Artery::AnteriorCerebralA2 => sided(LeftAca, RightAca),
            Artery::AComm => AcomA,
            Artery::Distal => return OTHER_VESSEL_LABEL,
        };
        location.vessel_label()
    }
}

/// One artery segment: a smooth centreline and a linearly tapering radius.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Which artery.
    pub artery: Artery,
    /// Which side.
    pub side: Side,
    /// Centreline points (mm, head frame), about 0.5 mm apart.
    pub centreline: Vec<V3>,
    /// Radius at the first point (mm).
    pub r0: f64,
    /// Radius at the last point (mm).
    pub r1: f64,
}

impl Segment {
    /// The point and unit tangent at fraction `t` (0..=1) of the points.
    pub fn at(&self, t: f64) -> (V3, V3, f64) {
        let n = self.centreline.len();
        let i = ((t.clamp(0.0, 1.0) * (n - 1) as f64).round() as usize).min(n - 1);
        let a = self.centreline[i.saturating_sub(1)];
        let b = self.centreline[(i + 1).min(n - 1)];
        let r = self.r0 + (self.r1 - self.r0) * i as f64 / (n - 1).max(1) as f64;
        (self.centreline[i], unit(sub(b, a)), r)
    }

    /// The segment as capsules.
    pub fn primitives(&self) -> Vec<Primitive> {
        tube(&self.centreline, self.r0, self.r1)
    }
}

/// The arterial tree of one case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VesselTree {
    /// All segments.
    pub segments: Vec<Segment>,
    /// Bifurcation points with the parent radius (mm).
    pub bifurcations: Vec<(V3, f64)>,
    /// Which variants this case has, as text (for the ground truth).
    pub variants: Vec<String>,
}

impl VesselTree {
    /// The first segment of an artery on a side, if present.
    pub fn find(&self, artery: Artery, side: Side) -> Option<&Segment> {
        self.segments.iter().find(|s| s.artery == artery && s.side == side)
    }
}

fn jitter(rng: &mut StdRng, p: V3, amount: f64) -> V3 {
    add(
        p,
        [
            rng.random_range(-amount..=amount),
            rng.random_range(-amount..=amount),
            rng.random_range(-amount..=amount),
        ],
    )
}

/// The landmarks of one side of the circle (head frame, mm).
#[derive(Clone, Copy, Debug)]
struct SideLandmarks {
    /// P1–P2 junction, where the PComm joins the PCA.
    p1p2: V3,
    /// The anterior clinoid: infraclinoid to supraclinoid ICA.
    clinoid: V3,
    /// Origin of the PComm on the ICA.
    pcom: V3,
    /// ICA terminus: the ICA splits into M1 and A1.
    term: V3,
    /// MCA bifurcation: M1 into the M2 branches.
    mbif: V3,
    /// A1–A2 junction, where the AComm joins.
    a1a2: V3,
    /// Where the vertebral artery enters the model.
    vert0: V3,
    /// Where the ICA enters the model.
    ica0: V3,
}

/// The junction landmarks of one case, each jittered once so that the
/// segments meeting there stay connected. Each is a named field: a
/// misspelt landmark does not compile (a string key once fell back to the
/// origin silently).
#[derive(Clone, Copy, Debug)]
struct Landmarks {
    /// Vertebrobasilar junction.
    vb: V3,
    /// Basilar tip.
    tip: V3,
    /// Origin of the superior cerebellar arteries on the basilar.
    sca: V3,
    /// The patient's left side.
    left: SideLandmarks,
    /// The patient's right side.
    right: SideLandmarks,
}

impl Landmarks {
    /// Draws the landmarks: the midline ones, then each side's, left first.
    fn draw(rng: &mut StdRng) -> Self {
        let mut put = |p: V3| jitter(rng, p, 1.2);
        let vb = put([0.0, -23.0, -33.0]);
        let tip = put([0.0, -12.0, -2.0]);
        let sca = put([0.0, -13.5, -6.0]);
        let mut side = |s: Side| {
            let x = s.sign();
            SideLandmarks {
                p1p2: put([10.0 * x, -14.0, 0.0]),
                clinoid: put([14.0 * x, 0.0, -4.0]),
                pcom: put([13.0 * x, -2.0, -1.0]),
                term: put([12.0 * x, 2.0, 3.0]),
                mbif: put([38.0 * x, 3.0, 6.0]),
                a1a2: put([1.6 * x, 15.0, 6.5]),
                vert0: put([14.0 * x, -38.0, -70.0]),
                ica0: put([22.0 * x, -12.0, -44.0]),
            }
        };
        let left = side(Side::Left);
        let right = side(Side::Right);
        Self {
            vb,
            tip,
            sca,
            left,
            right,
        }
    }

    /// Each side with its landmarks, left first.
    fn sides(&self) -> [(Side, SideLandmarks); 2] {
        [(Side::Left, self.left), (Side::Right, self.right)]
    }
}

/// The segments and variants of a tree under construction.
#[derive(Default)]
struct TreeBuilder {
    segments: Vec<Segment>,
    variants: Vec<String>,
}

impl TreeBuilder {
    /// Adds a segment through the control points `ctrl`: the ends are
    /// landmarks, the free points between them get their own jitter.
    fn seg(&mut self, rng: &mut StdRng, artery: Artery, side: Side, ctrl: Vec<V3>, r0: f64, r1: f64) {
        let n = ctrl.len();
        let ctrl: Vec<V3> = ctrl
            .into_iter()
            .enumerate()
            .map(|(i, p)| if i == 0 || i + 1 == n { p } else { jitter(rng, p, 1.5) })
            .collect();
        self.segments.push(Segment {
            artery,
            side,
            centreline: catmull_rom(&ctrl, 0.5),
            r0,
            r1,
        });
    }
}

/// A uniform draw in `lo..=hi`.
fn rr(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    rng.random_range(lo..=hi)
}

/// Builds a Circle of Willis with the common variants, radii from the
/// literature (ICA 2.0–2.5 mm, M1 ≈ 1.5, A1 ≈ 1.0, basilar ≈ 1.6,
/// PComm ≈ 0.7), smooth curved centrelines and random distal branches.
pub fn circle_of_willis(rng: &mut StdRng) -> VesselTree {
    let lm = Landmarks::draw(rng);
    let mut b = TreeBuilder::default();
    posterior_circulation(rng, &lm, &mut b);
    for (s, side) in lm.sides() {
        anterior_circulation(rng, s, &side, &mut b);
    }
    let rc = rr(rng, 0.6, 0.8);
    b.seg(
        rng,
        Artery::AComm,
        Side::Midline,
        vec![lm.left.a1a2, [0.0, 15.5, 6.6], lm.right.a1a2],
        rc,
        rc,
    );
    distal_branches(rng, &mut b.segments);
    let mut bifurcations = Vec::new();
    for (_, side) in lm.sides() {
        bifurcations.push((side.term, 2.0));
        bifurcations.push((side.mbif, 1.4));
        bifurcations.push((side.p1p2, 1.1));
        bifurcations.push((side.a1a2, 0.9));
    }
    bifurcations.push((lm.tip, 1.5));
    VesselTree {
        segments: b.segments,
        bifurcations,
        variants: b.variants,
    }
}

/// The basilar, then on each side the vertebral, superior cerebellar, P1
/// and P2 segments.
fn posterior_circulation(rng: &mut StdRng, lm: &Landmarks, b: &mut TreeBuilder) {
    let m = Side::Midline;
    let rb = rr(rng, 1.45, 1.75);
    b.seg(
        rng,
        Artery::Basilar,
        m,
        vec![lm.vb, [0.0, -19.0, -22.0], [0.0, -15.5, -11.0], lm.tip],
        rb,
        rb * 0.92,
    );
    for (s, side) in lm.sides() {
        let x = s.sign();
        let rv = rr(rng, 1.3, 1.7);
        b.seg(
            rng,
            Artery::Vertebral,
            s,
            vec![side.vert0, [12.0 * x, -36.0, -55.0], [7.0 * x, -30.0, -42.0], lm.vb],
            rv,
            rv * 0.9,
        );
        let rs = rr(rng, 0.7, 0.9);
        b.seg(
            rng,
            Artery::SuperiorCerebellar,
            s,
            vec![
                lm.sca,
                [8.0 * x, -16.0, -7.0],
                [16.0 * x, -24.0, -8.0],
                [22.0 * x, -34.0, -6.0],
            ],
            rs,
            rs * 0.8,
        );
        let rp = rr(rng, 1.0, 1.25);
        b.seg(
            rng,
            Artery::PcaP1,
            s,
            vec![lm.tip, [5.0 * x, -12.5, -1.0], side.p1p2],
            rp,
            rp,
        );
        b.seg(
            rng,
            Artery::PcaP2,
            s,
            vec![
                side.p1p2,
                [19.0 * x, -21.0, 2.0],
                [27.0 * x, -33.0, 4.0],
                [30.0 * x, -48.0, 7.0],
                [28.0 * x, -66.0, 11.0],
            ],
            rp,
            rp * 0.75,
        );
    }
}

/// One side's ICA (infra- and supraclinoid), M1, two M2 branches, A1
/// (hypoplastic or absent in some cases), A2 and PComm (often hypoplastic
/// or absent).
fn anterior_circulation(rng: &mut StdRng, s: Side, side: &SideLandmarks, b: &mut TreeBuilder) {
    let x = s.sign();
    let ri = rr(rng, 2.2, 2.55);
    b.seg(
        rng,
        Artery::IcaInfraclinoid,
        s,
        vec![
            side.ica0,
            [20.0 * x, -8.0, -32.0],
            [17.0 * x, -4.0, -22.0],
            [15.0 * x, 2.0, -15.0],
            [16.0 * x, 6.0, -10.0],
            [14.5 * x, 3.0, -6.0],
            side.clinoid,
        ],
        ri,
        ri * 0.95,
    );
    let rs = rr(rng, 2.0, 2.3);
    b.seg(
        rng,
        Artery::IcaSupraclinoid,
        s,
        vec![side.clinoid, side.pcom, [12.5 * x, 0.0, 1.5], side.term],
        rs,
        rs * 0.95,
    );
    let rm = rr(rng, 1.35, 1.65);
    b.seg(
        rng,
        Artery::MiddleCerebralM1,
        s,
        vec![side.term, [20.0 * x, 3.0, 4.0], [30.0 * x, 4.0, 5.0], side.mbif],
        rm,
        rm * 0.92,
    );
    let r2 = rr(rng, 0.95, 1.15);
    b.seg(
        rng,
        Artery::MiddleCerebralM2,
        s,
        vec![
            side.mbif,
            [45.0 * x, 5.0, 14.0],
            [50.0 * x, 2.0, 26.0],
            [52.0 * x, -10.0, 38.0],
        ],
        r2,
        r2 * 0.8,
    );
    b.seg(
        rng,
        Artery::MiddleCerebralM2,
        s,
        vec![
            side.mbif,
            [46.0 * x, 0.0, 2.0],
            [52.0 * x, -10.0, -2.0],
            [55.0 * x, -25.0, 0.0],
        ],
        r2,
        r2 * 0.8,
    );
    // A1: hypoplastic or absent in some cases
    let u: f64 = rng.random();
    let ra = rr(rng, 0.9, 1.1);
    if u < 0.04 {
        b.variants.push(format!("absent {s:?} A1"));
    } else {
        let r = if u < 0.14 {
            b.variants.push(format!("hypoplastic {s:?} A1"));
            ra * 0.45
        } else {
            ra
        };
        b.seg(
            rng,
            Artery::AnteriorCerebralA1,
            s,
            vec![side.term, [8.0 * x, 8.0, 5.0], [4.0 * x, 13.0, 6.0], side.a1a2],
            r,
            r,
        );
    }
    let r2 = rr(rng, 0.85, 1.0);
    b.seg(
        rng,
        Artery::AnteriorCerebralA2,
        s,
        vec![
            side.a1a2,
            [2.5 * x, 20.0, 14.0],
            [3.0 * x, 26.0, 25.0],
            [3.0 * x, 28.0, 38.0],
            [3.0 * x, 20.0, 50.0],
            [3.0 * x, 5.0, 56.0],
        ],
        r2,
        r2 * 0.8,
    );
    // PComm: often hypoplastic or absent
    let u: f64 = rng.random();
    let rc = rr(rng, 0.6, 0.8);
    if u < 0.15 {
        b.variants.push(format!("absent {s:?} PComm"));
    } else {
        let r = if u < 0.40 {
            b.variants.push(format!("hypoplastic {s:?} PComm"));
            rc * 0.5
        } else {
            rc
        };
        b.seg(
            rng,
            Artery::PComm,
            s,
            vec![side.pcom, [12.0 * x, -7.0, -0.5], side.p1p2],
            r,
            r,
        );
    }
}

/// One to three random distal branches from the end of each M2, A2 and P2.
fn distal_branches(rng: &mut StdRng, segments: &mut Vec<Segment>) {
    let ends: Vec<(V3, V3, Side)> = segments
        .iter()
        .filter(|s| {
            matches!(
                s.artery,
                Artery::MiddleCerebralM2 | Artery::AnteriorCerebralA2 | Artery::PcaP2
            )
        })
        .map(|s| {
            let n = s.centreline.len();
            (
                s.centreline[n - 1],
                unit(sub(s.centreline[n - 1], s.centreline[n.saturating_sub(6)])),
                s.side,
            )
        })
        .collect();
    for (p, d, side) in ends {
        for _ in 0..rng.random_range(1..=3) {
            let len = rng.random_range(12.0..28.0);
            let mut pts = vec![p];
            let mut dir = d;
            for _ in 0..3 {
                dir = unit(add(
                    dir,
                    [
                        rng.random_range(-0.8..0.8),
                        rng.random_range(-0.8..0.8),
                        rng.random_range(-0.8..0.8),
                    ],
                ));
                let last = pts[pts.len() - 1];
                pts.push(add(last, scale(dir, len / 3.0)));
            }
            let r0 = rng.random_range(0.55..0.8);
            segments.push(Segment {
                artery: Artery::Distal,
                side,
                centreline: catmull_rom(&pts, 0.5),
                r0,
                r1: r0 * 0.6,
            });
        }
    }
}

/// The head of one case: nested ellipsoids and a stepped skull base.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// Brain ellipsoid centre (head frame).
    pub brain_centre: V3,
    /// Brain semi-axes (mm).
    pub brain_radii: V3,
    /// CSF (subarachnoid) thickness.
    pub csf_mm: f64,
    /// Skull thickness.
    pub skull_mm: f64,
    /// Scalp thickness.
    pub scalp_mm: f64,
    /// Heights of the anterior, middle and posterior cranial fossae.
    pub fossa_z: [f64; 3],
}

/// Tissue fractions at a point (air is the rest).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tissues {
    /// Scalp, face and neck soft tissue.
    pub soft: f64,
    /// Bone.
    pub bone: f64,
    /// Cerebrospinal fluid.
    pub csf: f64,
    /// Brain.
    pub brain: f64,
}

/// Approximate signed distance to an axis-aligned ellipsoid.
fn ellipsoid_sd(p: V3, c: V3, r: V3) -> f64 {
    let q = [(p[0] - c[0]) / r[0], (p[1] - c[1]) / r[1], (p[2] - c[2]) / r[2]];
    (norm(q) - 1.0) * r[0].min(r[1]).min(r[2])
}

/// Inside fraction for a signed distance over an edge width.
pub(crate) fn inside(d: f64, edge: f64) -> f64 {
    (0.5 - d / edge).clamp(0.0, 1.0)
}

fn smoothstep(e0: f64, e1: f64, x: f64) -> f64 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

impl Head {
    /// A head with per-case variation of size and shape.
    pub fn random(rng: &mut StdRng) -> Self {
        Self {
            brain_centre: [
                rng.random_range(-1.5..1.5),
                rng.random_range(-9.0..-3.0),
                rng.random_range(20.0..28.0),
            ],
            brain_radii: [
                rng.random_range(62.0..70.0),
                rng.random_range(78.0..88.0),
                rng.random_range(56.0..64.0),
            ],
            csf_mm: rng.random_range(2.0..4.0),
            skull_mm: rng.random_range(5.0..8.0),
            scalp_mm: rng.random_range(4.0..7.0),
            fossa_z: [
                rng.random_range(-18.0..-14.0),
                rng.random_range(-37.0..-32.0),
                rng.random_range(-52.0..-46.0),
            ],
        }
    }

    /// The floor of the cranial cavity under (x, y): anterior, middle and
    /// posterior fossae with smooth steps.
    fn base_z(&self, p: V3) -> f64 {
        let [a, mid, post] = self.fossa_z;
        let front = smoothstep(14.0, 22.0, p[1]);
        let back = smoothstep(-14.0, -22.0, p[1]);
        mid + (a - mid) * front + (post - mid) * back
    }

    /// Bone of the central skull base: clivus, dorsum sellae and anterior
    /// clinoid processes, next to the basilar artery and the ICAs.
    fn central_bone(&self) -> [Primitive; 4] {
        let sph = |c: V3, r: f64| Primitive::Capsule {
            a: c,
            b: c,
            ra: r,
            rb: r,
        };
        [
            Primitive::Capsule {
                a: [0.0, -8.0, -9.0],
                b: [0.0, -19.0, -45.0],
                ra: 4.0,
                rb: 5.0,
            },
            Primitive::Capsule {
                a: [-5.0, -8.5, -7.0],
                b: [5.0, -8.5, -7.0],
                ra: 1.6,
                rb: 1.6,
            },
            sph([-10.5, 6.0, -3.0], 2.6),
            sph([10.5, 6.0, -3.0], 2.6),
        ]
    }

    /// Tissue fractions at `p` (head frame) with soft edges `edge` mm wide.
    pub fn tissues(&self, p: V3, edge: f64) -> Tissues {
        let c = self.brain_centre;
        let r = self.brain_radii;
        let grow = |d: f64| [r[0] + d, r[1] + d, r[2] + d];
        let floor = inside(self.base_z(p) - p[2], edge);
        let brain = inside(ellipsoid_sd(p, c, r), edge) * floor;
        let ic = inside(ellipsoid_sd(p, c, grow(self.csf_mm)), edge) * floor;
        let skull_out = inside(ellipsoid_sd(p, c, grow(self.csf_mm + self.skull_mm)), edge);
        // the skull base is a 14 mm slab under the fossae
        let slab = inside((self.base_z(p) - 14.0) - p[2], edge);
        let mut bone = (skull_out * slab - ic).max(0.0);
        let extra = self
            .central_bone()
            .iter()
            .map(|b| inside(b.distance(p), edge))
            .fold(0.0, f64::max);
        bone = bone.max(extra);
        let head = inside(
            ellipsoid_sd(p, c, grow(self.csf_mm + self.skull_mm + self.scalp_mm)),
            edge,
        );
        let neck = inside(ellipsoid_sd(p, [0.0, -5.0, -70.0], [48.0, 58.0, 55.0]), edge);
        let face = inside(ellipsoid_sd(p, [0.0, 40.0, -40.0], [45.0, 40.0, 45.0]), edge);
        let outer = head.max(neck).max(face);
        // central bone displaces whatever intracranial tissue it overlaps
        let csf = ((ic - brain) * (1.0 - extra)).max(0.0);
        let brain = brain * (1.0 - extra);
        let solid = bone + csf + brain;
        let (bone, csf, brain) = if solid > 1.0 {
            (bone / solid, csf / solid, brain / solid)
        } else {
            (bone, csf, brain)
        };
        let soft = (outer - bone - csf - brain).max(0.0);
        Tissues { soft, bone, csf, brain }
    }

    /// Whether `p` is inside the cranial cavity (brain + CSF, above the
    /// skull base): the "brain/intracranial" ground-truth mask.
    pub fn intracranial(&self, p: V3) -> bool {
        let t = self.tissues(p, 1e-6);
        t.brain + t.csf > 0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tree_has_every_named_segment_and_is_connected() {
        for seed in 0..20 {
            let mut rng = StdRng::seed_from_u64(seed);
            let t = circle_of_willis(&mut rng);
            for a in [Artery::Basilar, Artery::AComm] {
                assert!(t.find(a, Side::Midline).is_some());
            }
            for s in [Side::Left, Side::Right] {
                for a in [
                    Artery::IcaInfraclinoid,
                    Artery::IcaSupraclinoid,
                    Artery::MiddleCerebralM1,
                    Artery::PcaP1,
                    Artery::Vertebral,
                ] {
                    assert!(t.find(a, s).is_some(), "{a:?} {s:?}");
                }
                // the supraclinoid ICA starts where the infraclinoid ends
                let i = t.find(Artery::IcaInfraclinoid, s).unwrap();
                let su = t.find(Artery::IcaSupraclinoid, s).unwrap();
                assert!(norm(sub(*i.centreline.last().unwrap(), su.centreline[0])) < 1e-9);
            }
        }
    }

    #[test]
    fn tissues_are_fractions_and_the_cow_is_intracranial() {
        let mut rng = StdRng::seed_from_u64(3);
        let h = Head::random(&mut rng);
        assert!(h.intracranial([0.0, 0.0, 5.0]));
        assert!(!h.intracranial([0.0, 0.0, 200.0]));
        for p in [
            [0.0, 0.0, 0.0],
            [0.0, -19.0, -30.0],
            [70.0, 0.0, 20.0],
            [0.0, 0.0, -80.0],
        ] {
            let t = h.tissues(p, 1.0);
            let s = t.soft + t.bone + t.csf + t.brain;
            assert!((0.0..=1.0 + 1e-9).contains(&s), "{p:?}: {t:?}");
        }
        // the clivus is bone
        assert!(h.tissues([0.0, -13.0, -25.0], 0.5).bone > 0.9);
    }
}

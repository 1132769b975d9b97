//! Rendering a case on its acquisition grid: partial-volume vessels and
//! aneurysms, the tissue model, and each modality's appearance and noise.

use aneu_io::{Affine, GridSize, Modality, Volume, Voxel};
use ndarray::Array3;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::anatomy::{Head, inside};
use crate::shapes::{Primitive, V3, add, scale, sub};

/// Intensities and artefacts of one series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Appearance {
    /// Air.
    pub air: f64,
    /// Scalp, face and neck soft tissue.
    pub soft: f64,
    /// Bone.
    pub bone: f64,
    /// CSF.
    pub csf: f64,
    /// Brain.
    pub brain: f64,
    /// Vessel lumen (and aneurysms).
    pub vessel: f64,
    /// Noise standard deviation.
    pub noise: f64,
    /// Rician (MR magnitude) rather than Gaussian (CT) noise.
    pub rician: bool,
    /// Coefficients of a smooth multiplicative bias field (log domain):
    /// linear x, y, z then quadratic x², y², z².
    pub bias: [f64; 6],
    /// TOF slabs along k (0: none) and the signal loss across each slab.
    pub slabs: (usize, f64),
    /// Phases of the brain texture.
    pub texture: [f64; 4],
    /// The lowest value the scanner stores (−1024 HU for CT, 0 for MR).
    pub floor: f64,
    /// σ of a Gaussian point-spread function on the noiseless signal, mm
    /// (0: none; the partial-volume edge alone).
    #[serde(default)]
    pub blur_mm: f64,
}

/// The ranges a series' appearance is drawn from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppearanceRange {
    /// The ranges of [`Appearance::random`], which every training set of
    /// aneu has been drawn from.
    #[default]
    Standard,
    /// Wider ranges that hold the standard ones, on the axes that
    /// [`AppearanceRange::Outside`] moves (and never reaching its ranges):
    /// for training sets whose own appearance varies widely.
    Wide,
    /// Beyond them on every axis that makes an aneurysm harder to see
    /// ([`AppearanceRange::redraw`]): lower vessel contrast, more noise, a
    /// blurred point-spread function and, for TOF-MRA, a stronger bias
    /// field and deeper slab boundaries. For testing how a model trained on
    /// the standard ranges holds up on data it has not seen.
    Outside,
}

impl std::str::FromStr for AppearanceRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "standard" => Ok(Self::Standard),
            "wide" => Ok(Self::Wide),
            "outside" => Ok(Self::Outside),
            o => Err(format!("unknown appearance range {o:?} (standard, wide, outside)")),
        }
    }
}

impl std::fmt::Display for AppearanceRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Standard => "standard",
            Self::Wide => "wide",
            Self::Outside => "outside",
        })
    }
}

impl Appearance {
    /// Draws the appearance of a modality.
    pub fn random(m: Modality, rng: &mut StdRng) -> Self {
        let mut r = |lo: f64, hi: f64| rng.random_range(lo..=hi);
        let texture = [r(0.0, 6.3), r(0.0, 6.3), r(0.0, 6.3), r(0.0, 6.3)];
        match m {
            Modality::Cta => Self {
                air: -1000.0,
                soft: r(35.0, 60.0),
                bone: r(700.0, 1500.0),
                csf: r(4.0, 12.0),
                brain: r(30.0, 40.0),
                vessel: r(250.0, 450.0),
                noise: r(10.0, 20.0),
                rician: false,
                bias: [0.0; 6],
                slabs: (0, 0.0),
                texture,
                floor: -1024.0,
                blur_mm: 0.0,
            },
            Modality::Mra => {
                let bias = TOF_BIAS_BOUNDS.map(|b| r(-b, b));
                let slabs = (2 + (r(0.0, 2.999) as usize), r(0.1, 0.25));
                Self {
                    air: 0.0,
                    soft: r(140.0, 200.0),
                    bone: r(10.0, 25.0),
                    csf: r(30.0, 45.0),
                    brain: r(100.0, 130.0),
                    vessel: r(380.0, 560.0),
                    noise: r(6.0, 12.0),
                    rician: true,
                    bias,
                    slabs,
                    texture,
                    floor: 0.0,
                    blur_mm: 0.0,
                }
            }
            Modality::MriT1post => {
                let brain = r(140.0, 170.0);
                Self {
                    air: 0.0,
                    soft: r(220.0, 280.0),
                    bone: r(15.0, 30.0),
                    csf: r(35.0, 55.0),
                    brain,
                    vessel: brain * r(1.3, 1.5),
                    noise: r(4.0, 8.0),
                    rician: true,
                    bias: [r(-0.1, 0.1), r(-0.1, 0.1), r(-0.1, 0.1), 0.0, 0.0, 0.0],
                    slabs: (0, 0.0),
                    texture,
                    floor: 0.0,
                    blur_mm: 0.0,
                }
            }
            Modality::MriT2 => Self {
                air: 0.0,
                soft: r(100.0, 140.0),
                bone: r(5.0, 15.0),
                csf: r(280.0, 340.0),
                brain: r(120.0, 150.0),
                vessel: r(50.0, 80.0),
                noise: r(4.0, 8.0),
                rician: true,
                bias: [r(-0.1, 0.1), r(-0.1, 0.1), r(-0.1, 0.1), 0.0, 0.0, 0.0],
                slabs: (0, 0.0),
                texture,
                floor: 0.0,
                blur_mm: 0.0,
            },
        }
    }

    /// This appearance (drawn by [`Appearance::random`]) with the axes
    /// that hide an aneurysm redrawn from `range`'s ranges
    /// ([`AppearanceRange::redraw`]), keeping the tissue intensities, the
    /// texture and the floor. [`AppearanceRange::Standard`] changes nothing.
    ///
    /// ```
    /// use aneu_io::Modality;
    /// use aneu_phantom::AppearanceRange;
    /// use aneu_phantom::render::Appearance;
    /// use rand::SeedableRng;
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    /// let a = Appearance::random(Modality::Cta, &mut rng);
    /// let o = a.clone().redrawn(Modality::Cta, AppearanceRange::Outside, &mut rng);
    /// assert!(o.vessel < 250.0 && o.noise > 20.0 && o.blur_mm >= 0.5);
    /// assert_eq!((o.brain, o.bone), (a.brain, a.bone));
    /// ```
    pub fn redrawn(mut self, m: Modality, range: AppearanceRange, rng: &mut StdRng) -> Self {
        let Some(d) = range.redraw(m) else {
            return self;
        };
        let mut r = |x: [f64; 2]| rng.random_range(x[0]..=x[1]);
        self.blur_mm = r(d.blur_mm);
        self.vessel = if m == Modality::MriT1post {
            self.brain * r(d.vessel)
        } else {
            r(d.vessel)
        };
        self.noise = r(d.noise);
        if m == Modality::Mra {
            for (b, bound) in self.bias.iter_mut().zip(TOF_BIAS_BOUNDS) {
                let sign = if r([0.0, 1.0]) < 0.5 { -1.0 } else { 1.0 };
                *b = sign * bound * r(d.bias_scale);
            }
            self.slabs.1 = r(d.slab_loss);
        }
        self
    }
}

/// The bounds of the standard TOF-MRA bias coefficients (linear x, y, z,
/// then quadratic).
const TOF_BIAS_BOUNDS: [f64; 6] = [0.2, 0.2, 0.25, 0.15, 0.15, 0.15];

/// The ranges an [`AppearanceRange`] redraws ([`Appearance::redrawn`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Redraw {
    /// Vessel intensity (T1post: as a multiple of the brain's).
    pub vessel: [f64; 2],
    /// Noise σ.
    pub noise: [f64; 2],
    /// Point-spread σ, mm.
    pub blur_mm: [f64; 2],
    /// TOF-MRA: each bias coefficient's size as a multiple of its standard
    /// bound (the sign is random).
    pub bias_scale: [f64; 2],
    /// TOF-MRA: the signal lost across each slab.
    pub slab_loss: [f64; 2],
}

impl AppearanceRange {
    /// The ranges this set redraws for modality `m`; `None` for the
    /// standard set, which keeps [`Appearance::random`]'s draw.
    ///
    /// | | standard | wide | outside |
    /// |---|---|---|---|
    /// | CTA vessel (HU) | 250–450 | 235–520 | 150–230 |
    /// | CTA noise σ (HU) | 10–20 | 7–23 | 24–36 |
    /// | TOF-MRA vessel | 380–560 | 335–600 | 240–330 |
    /// | TOF-MRA noise σ | 6–12 | 5–13.5 | 14–20 |
    /// | TOF-MRA bias coefficients, × the standard bounds | 0–1 | 0–1.15 | 1.2–1.6 |
    /// | TOF-MRA slab signal loss | 0.10–0.25 | 0.05–0.29 | 0.30–0.40 |
    /// | T1post vessel / brain | 1.3–1.5 | 1.23–1.6 | 1.12–1.22 |
    /// | T2 vessel (flow void) | 50–80 | 40–86 | 88–100 |
    /// | T1post, T2 noise σ | 4–8 | 3–9.5 | 10–14 |
    /// | point-spread σ (mm) | 0 | 0–0.45 | 0.5–0.8 |
    ///
    /// Each wide range holds the standard one and none reaches the outside
    /// one, so a model trained on wide phantoms is still tested beyond its
    /// training ranges by the outside set.
    pub fn redraw(self, m: Modality) -> Option<Redraw> {
        let tof = |vessel, noise, bias_scale, slab_loss, blur_mm| Redraw {
            vessel,
            noise,
            blur_mm,
            bias_scale,
            slab_loss,
        };
        let plain = |vessel, noise, blur_mm| tof(vessel, noise, [0.0, 0.0], [0.0, 0.0], blur_mm);
        let (wide_blur, outside_blur) = ([0.0, 0.45], [0.5, 0.8]);
        Some(match (self, m) {
            (Self::Standard, _) => return None,
            (Self::Wide, Modality::Cta) => plain([235.0, 520.0], [7.0, 23.0], wide_blur),
            (Self::Outside, Modality::Cta) => plain([150.0, 230.0], [24.0, 36.0], outside_blur),
            (Self::Wide, Modality::Mra) => tof([335.0, 600.0], [5.0, 13.5], [0.0, 1.15], [0.05, 0.29], wide_blur),
            (Self::Outside, Modality::Mra) => tof([240.0, 330.0], [14.0, 20.0], [1.2, 1.6], [0.3, 0.4], outside_blur),
            (Self::Wide, Modality::MriT1post) => plain([1.23, 1.6], [3.0, 9.5], wide_blur),
            (Self::Outside, Modality::MriT1post) => plain([1.12, 1.22], [10.0, 14.0], outside_blur),
            (Self::Wide, Modality::MriT2) => plain([40.0, 86.0], [3.0, 9.5], wide_blur),
            (Self::Outside, Modality::MriT2) => plain([88.0, 100.0], [10.0, 14.0], outside_blur),
        })
    }
}

/// How the head sits in the scanner: `world = R · (s · head) + offset`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pose {
    /// Rotation (row-major).
    pub rotation: [[f64; 3]; 3],
    /// Isotropic scale of the anatomy.
    pub scale: f64,
    /// World position (RAS mm) of the head-frame origin.
    pub offset: V3,
}

impl Pose {
    /// Head frame → world.
    pub fn to_world(&self, p: V3) -> V3 {
        add(self.dir(scale(p, self.scale)), self.offset)
    }
    /// A direction, head frame → world.
    pub fn dir(&self, d: V3) -> V3 {
        let r = &self.rotation;
        [
            r[0][0] * d[0] + r[0][1] * d[1] + r[0][2] * d[2],
            r[1][0] * d[0] + r[1][1] * d[1] + r[1][2] * d[2],
            r[2][0] * d[0] + r[2][1] * d[1] + r[2][2] * d[2],
        ]
    }
    /// World → head frame.
    pub fn to_head(&self, w: V3) -> V3 {
        let d = sub(w, self.offset);
        let r = &self.rotation;
        let q = [
            r[0][0] * d[0] + r[1][0] * d[1] + r[2][0] * d[2],
            r[0][1] * d[0] + r[1][1] * d[1] + r[2][1] * d[2],
            r[0][2] * d[0] + r[1][2] * d[1] + r[2][2] * d[2],
        ];
        scale(q, 1.0 / self.scale)
    }
}

/// The rendered series and its label maps, on one grid.
pub struct Rendered {
    /// The image (HU for CT, arbitrary units for MR), integer-valued.
    pub image: Volume<f32>,
    /// Vessel lumen, aneurysms included (0/1).
    pub vessels: Volume<u8>,
    /// Per-artery labels of the same voxels: each vessel voxel the label
    /// of the scene's group that covers most of it, aneurysm voxels
    /// [`crate::anatomy::ANEURYSM_LABEL`] (0 outside the vessels).
    pub arteries: Volume<u8>,
    /// Aneurysm instance ids (0 = none, 1.. in truth order).
    pub aneurysms: Volume<u8>,
    /// The cranial cavity (0/1).
    pub brain: Volume<u8>,
}

/// A normal deviate (Box–Muller).
fn gauss(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(1e-12..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Rasterises primitives (world mm) into a fraction map with `edge` mm of
/// partial volume, parallel over slices. `label` receives `id` where the
/// fraction of that primitive's group passes 0.5.
struct Raster<'a> {
    affine: &'a Affine,
    size: GridSize,
    edge: f64,
}

impl Raster<'_> {
    /// Inclusive voxel box of a primitive.
    fn bbox(&self, p: &Primitive) -> Option<([usize; 3], [usize; 3])> {
        let (lo, hi) = p.bounds(self.edge);
        let mut vlo = [f64::INFINITY; 3];
        let mut vhi = [f64::NEG_INFINITY; 3];
        for c in 0..8 {
            let w = [
                if c & 1 == 0 { lo[0] } else { hi[0] },
                if c & 2 == 0 { lo[1] } else { hi[1] },
                if c & 4 == 0 { lo[2] } else { hi[2] },
            ];
            let v = self.affine.world_to_voxel(aneu_io::WorldPoint::new(w[0], w[1], w[2]));
            for (a, x) in [v.i, v.j, v.k].into_iter().enumerate() {
                vlo[a] = vlo[a].min(x);
                vhi[a] = vhi[a].max(x);
            }
        }
        let n = self.size.to_ijk();
        let mut a = [0usize; 3];
        let mut b = [0usize; 3];
        for d in 0..3 {
            let l = vlo[d].floor().max(0.0);
            let h = vhi[d].ceil().min(n[d] as f64 - 1.0);
            if l > h {
                return None;
            }
            a[d] = l as usize;
            b[d] = h as usize;
        }
        Some((a, b))
    }

    /// Max-composites groups of primitives; returns the fraction map and,
    /// per voxel, the group (1-based) with the largest fraction ≥ 0.5.
    fn draw(&self, groups: &[Vec<Primitive>]) -> (Array3<f32>, Array3<u8>) {
        let s = self.size;
        let mut items: Vec<(usize, Primitive, [usize; 3], [usize; 3])> = Vec::new();
        for (g, prims) in groups.iter().enumerate() {
            for p in prims {
                if let Some((a, b)) = self.bbox(p) {
                    items.push((g, *p, a, b));
                }
            }
        }
        let mut frac = Array3::<f32>::zeros(s.to_kji());
        let mut label = Array3::<u8>::zeros(s.to_kji());
        let plane = s.ni * s.nj;
        let (Some(fs), Some(ls)) = (frac.as_slice_mut(), label.as_slice_mut()) else {
            return (frac, label);
        };
        fs.par_chunks_mut(plane)
            .zip(ls.par_chunks_mut(plane))
            .enumerate()
            .for_each(|(k, (fp, lp))| {
                for (g, p, a, b) in items.iter().filter(|it| it.2[2] <= k && k <= it.3[2]) {
                    for j in a[1]..=b[1] {
                        for i in a[0]..=b[0] {
                            let w = self.affine.voxel_to_world(Voxel::new(i as f64, j as f64, k as f64));
                            let f = inside(p.distance([w.x, w.y, w.z]), self.edge) as f32;
                            let at = j * s.ni + i;
                            if f > fp[at] {
                                fp[at] = f;
                                if f >= 0.5 {
                                    lp[at] = (*g + 1).min(255) as u8;
                                }
                            }
                        }
                    }
                }
            });
        (frac, label)
    }
}

/// Everything the renderer needs about a case.
pub struct Scene<'a> {
    /// Head anatomy.
    pub head: &'a Head,
    /// Pose in the scanner.
    pub pose: &'a Pose,
    /// Vessel and distractor solids (head frame), each with its label in
    /// the per-artery map (1 to 254).
    pub vessels: Vec<(u8, Primitive)>,
    /// Aneurysm solids (head frame), one group per aneurysm.
    pub aneurysms: Vec<Vec<Primitive>>,
    /// Intensities.
    pub appearance: &'a Appearance,
    /// Grid.
    pub affine: Affine,
    /// Grid size.
    pub size: GridSize,
    /// Seed for the noise.
    pub seed: u64,
}

/// Renders a scene.
///
/// # Errors
/// Only if a volume cannot be built (an empty grid).
pub fn render(scene: &Scene<'_>) -> aneu_io::Result<Rendered> {
    let sp = scene.affine.spacing();
    let edge = (sp[0] + sp[1] + sp[2]) / 3.0;
    let raster = Raster {
        affine: &scene.affine,
        size: scene.size,
        edge,
    };
    let pose = scene.pose;
    let to_world = |p: Primitive| p.transformed(&|v| pose.to_world(v), &|d| pose.dir(d), pose.scale);
    // one group per label value (group g has label g + 1)
    let mut vessel_world: Vec<Vec<Primitive>> = Vec::new();
    for (label, p) in &scene.vessels {
        let g = usize::from(*label).max(1) - 1;
        if vessel_world.len() <= g {
            vessel_world.resize(g + 1, Vec::new());
        }
        vessel_world[g].push(to_world(*p));
    }
    let aneurysm_world: Vec<Vec<Primitive>> = scene
        .aneurysms
        .iter()
        .map(|g| g.iter().map(|p| to_world(*p)).collect())
        .collect();
    let (vfrac, vlabel) = raster.draw(&vessel_world);
    let (afrac, alabel) = raster.draw(&aneurysm_world);

    let s = scene.size;
    let plane = s.ni * s.nj;
    let app = scene.appearance;
    let mut image = Array3::<f32>::zeros(s.to_kji());
    let mut brain = Array3::<u8>::zeros(s.to_kji());
    let (Some(img), Some(brn), Some(vf), Some(af)) = (
        image.as_slice_mut(),
        brain.as_slice_mut(),
        vfrac.as_slice(),
        afrac.as_slice(),
    ) else {
        return Err(aneu_io::Error::InvalidVolume {
            reason: "non-contiguous render buffer".into(),
        });
    };
    let slab_len = if app.slabs.0 > 0 { s.nk.div_ceil(app.slabs.0) } else { 0 };
    // the noiseless value of voxel (i, j, k) (after the bias field and the
    // slab profile) and whether it lies in the cranial cavity
    let signal = |i: usize, j: usize, k: usize| -> (f64, bool) {
        let slab = if slab_len > 0 {
            1.0 - app.slabs.1 * ((k % slab_len) as f64 / slab_len as f64)
        } else {
            1.0
        };
        let at = (k * s.nj + j) * s.ni + i;
        let w = scene.affine.voxel_to_world(Voxel::new(i as f64, j as f64, k as f64));
        let p = pose.to_head([w.x, w.y, w.z]);
        let t = scene.head.tissues(p, edge);
        let air = (1.0 - t.soft - t.bone - t.csf - t.brain).max(0.0);
        let tx = &app.texture;
        let texture = 1.0
            + 0.07 * (0.21 * p[0] + tx[0]).sin() * (0.17 * p[1] + tx[1]).sin() * (0.19 * p[2] + tx[2]).sin()
            + 0.04 * (0.5 * p[0] + 0.3 * p[1] - 0.4 * p[2] + tx[3]).sin();
        let tissue =
            air * app.air + t.soft * app.soft + t.bone * app.bone + t.csf * app.csf + t.brain * app.brain * texture;
        let v = f64::from(vf[at].max(af[at]));
        let mut val = tissue * (1.0 - v) + app.vessel * v * slab.powi(2);
        if app.rician {
            let q = [p[0] / 100.0, p[1] / 100.0, p[2] / 100.0];
            let b = &app.bias;
            let logb =
                b[0] * q[0] + b[1] * q[1] + b[2] * q[2] + b[3] * q[0] * q[0] + b[4] * q[1] * q[1] + b[5] * q[2] * q[2];
            val *= logb.exp() * slab.sqrt();
        }
        (val, t.brain + t.csf > 0.5)
    };
    // the stored value: noise (Rician for MR) on the signal, the floor, rounding
    let noisy = |val: f64, rng: &mut StdRng| -> f32 {
        let val = if app.rician {
            let (n1, n2) = (gauss(rng) * app.noise, gauss(rng) * app.noise);
            ((val + n1).powi(2) + n2 * n2).sqrt()
        } else {
            val + gauss(rng) * app.noise
        };
        val.max(app.floor).round() as f32
    };
    let plane_rng = |k: usize| StdRng::seed_from_u64(scene.seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    if app.blur_mm > 0.0 {
        // the point-spread function blurs the signal, not the noise
        let mut clean = Array3::<f32>::zeros(s.to_kji());
        clean
            .axis_iter_mut(ndarray::Axis(0))
            .into_par_iter()
            .zip(brn.par_chunks_mut(plane))
            .enumerate()
            .for_each(|(k, (mut cp, bp))| {
                for ((j, i), c) in cp.indexed_iter_mut() {
                    let (val, inside) = signal(i, j, k);
                    *c = val as f32;
                    bp[j * s.ni + i] = u8::from(inside);
                }
            });
        let sp = scene.affine.spacing();
        let clean = aneu_io::gaussian_smooth(clean, [2, 1, 0].map(|a| app.blur_mm / sp[a]));
        img.par_chunks_mut(plane)
            .zip(clean.axis_iter(ndarray::Axis(0)).into_par_iter())
            .enumerate()
            .for_each(|(k, (ip, cp))| {
                let mut rng = plane_rng(k);
                for (o, c) in ip.iter_mut().zip(cp.iter()) {
                    *o = noisy(f64::from(*c), &mut rng);
                }
            });
    } else {
        img.par_chunks_mut(plane)
            .zip(brn.par_chunks_mut(plane))
            .enumerate()
            .for_each(|(k, (ip, bp))| {
                let mut rng = plane_rng(k);
                for j in 0..s.nj {
                    for i in 0..s.ni {
                        let (val, inside) = signal(i, j, k);
                        ip[j * s.ni + i] = noisy(val, &mut rng);
                        bp[j * s.ni + i] = u8::from(inside);
                    }
                }
            });
    }
    let vessels = Array3::from_shape_fn(s.to_kji(), |(k, j, i)| {
        u8::from(vfrac[[k, j, i]] >= 0.5 || afrac[[k, j, i]] >= 0.5)
    });
    let arteries = Array3::from_shape_fn(s.to_kji(), |(k, j, i)| {
        if afrac[[k, j, i]] >= 0.5 {
            crate::anatomy::ANEURYSM_LABEL
        } else {
            vlabel[[k, j, i]]
        }
    });
    let image = Volume::new(image, scene.affine)?;
    Ok(Rendered {
        vessels: image.with_data(vessels)?,
        arteries: image.with_data(arteries)?,
        aneurysms: image.with_data(alabel)?,
        brain: image.with_data(brain)?,
        image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each set draws: (vessel or vessel / brain, noise, blur, largest
    /// bias coefficient / its bound, slab loss).
    fn draws(m: Modality, range: AppearanceRange, n: u64) -> Vec<[f64; 5]> {
        (0..n)
            .map(|seed| {
                let mut rng = StdRng::seed_from_u64(seed);
                let a = Appearance::random(m, &mut rng).redrawn(m, range, &mut rng);
                let vessel = if m == Modality::MriT1post {
                    a.vessel / a.brain
                } else {
                    a.vessel
                };
                let bias = a
                    .bias
                    .iter()
                    .zip(TOF_BIAS_BOUNDS)
                    .map(|(b, bound)| b.abs() / bound)
                    .fold(0.0, f64::max);
                [
                    vessel,
                    a.noise,
                    a.blur_mm,
                    if m == Modality::Mra { bias } else { 0.0 },
                    a.slabs.1,
                ]
            })
            .collect()
    }

    /// Every standard draw lies in the wide ranges, and no outside draw
    /// does, on any redrawn axis of any modality.
    #[test]
    fn wide_holds_standard_and_outside_stays_outside() {
        for m in Modality::ALL {
            let Some(w) = AppearanceRange::Wide.redraw(m) else {
                panic!("wide redraws {m}")
            };
            let ranges = [w.vessel, w.noise, w.blur_mm, [0.0, w.bias_scale[1]], w.slab_loss];
            let inside = |x: f64, r: [f64; 2]| x >= r[0] && x <= r[1];
            for set in [AppearanceRange::Standard, AppearanceRange::Wide] {
                for d in draws(m, set, 300) {
                    for (axis, (x, r)) in d.iter().zip(ranges).enumerate() {
                        let unused = m != Modality::Mra && axis >= 3;
                        assert!(unused || inside(*x, r), "{m} {set} axis {axis}: {x} not in {r:?}");
                    }
                }
            }
            for d in draws(m, AppearanceRange::Outside, 300) {
                for (axis, (x, r)) in d.iter().zip(ranges).enumerate() {
                    let redrawn = m == Modality::Mra || axis < 3;
                    assert!(!redrawn || !inside(*x, r), "{m} outside axis {axis}: {x} in {r:?}");
                }
            }
        }
    }
}

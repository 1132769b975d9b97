//! # aneu-phantom
//!
//! Synthetic head angiography in the exact RSNA Intracranial Aneurysm
//! Detection layout, so that every test, example and benchmark runs without
//! the 300 GB dataset, through the same `RsnaDataset` code path as real data.
//!
//! Each case has:
//! * a head (scalp, skull with a stepped skull base, clivus and clinoid
//!   processes, CSF, textured brain) with per-case size, shape and pose;
//! * a Circle of Willis: vertebrals, basilar, SCAs, PCAs (P1, P2),
//!   infraclinoid and supraclinoid ICAs, MCA M1 → M2, ACA A1 → A2, AComm,
//!   PComms and random distal branches, on smooth curved centrelines with
//!   radii from the literature, and hypoplastic or absent A1/PComm variants;
//! * for positive cases 1–3 saccular aneurysms (some elongated, some
//!   lobulated; dome radius 1–6 mm, median ≈ 2.3 mm) on the segment of their
//!   RSNA location;
//! * in every case 2–5 distractors from one distribution (bifurcation
//!   bulges, infundibula under 1.5 mm, loops and kinks);
//! * a modality appearance (CTA in HU with RescaleIntercept −1024, TOF-MRA
//!   with bias field, Rician noise and slab boundaries, T1post and T2 with
//!   low vessel contrast and thick slices), or one beyond those ranges
//!   ([`AppearanceRange::Outside`]: lower contrast, more noise, blur) on the
//!   same anatomy, and an acquisition (axial or
//!   oblique grid, shuffled or reversed InstanceNumbers, 15 % Enhanced
//!   multi-frame).
//!
//! ```no_run
//! use aneu_phantom::{PhantomConfig, SizePreset, generate};
//! let summary = generate(&PhantomConfig::new(8, 42, SizePreset::Tiny), "phantoms")?;
//! println!("{} series, {} positive", summary.series, summary.positives);
//! # Ok::<(), aneu_phantom::Error>(())
//! ```
//!
//! The same configuration gives the same bytes: every random draw comes
//! from a per-case RNG seeded from `(seed, index)`, and series are rendered
//! in parallel.

#![forbid(unsafe_code)]

pub mod anatomy;
pub mod lesions;
pub mod render;
pub mod shapes;

use aneu_io::AtPath;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use aneu_io::{
    Affine, DicomWriteOptions, GridSize, Localizer, Location, Modality, SeriesLabels, StoredType, Voxel, WorldPoint,
    write_enhanced, write_localizers_csv, write_nifti, write_series, write_train_csv,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::anatomy::{ANEURYSM_LABEL, Head, OTHER_VESSEL_LABEL, VesselTree, circle_of_willis};
pub use crate::lesions::DomeRadii;
use crate::lesions::{Aneurysm, Distractor, aneurysm, distractors};
pub use crate::render::AppearanceRange;
use crate::render::{Appearance, Pose, Scene, render};
use crate::shapes::{V3, add, unit};

/// Errors of phantom generation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Writing a file failed.
    #[error(transparent)]
    Io(#[from] aneu_io::Error),
    /// The configuration is invalid.
    #[error("invalid phantom configuration: {0}")]
    Config(String),
    /// A file could not be created.
    #[error("{path}: {source}")]
    File {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<aneu_io::FileError> for Error {
    fn from(e: aneu_io::FileError) -> Self {
        Error::File {
            path: e.path,
            source: e.source,
        }
    }
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Grid sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SizePreset {
    /// About 64³ voxels of 1.35–1.55 mm (≈ 90 mm) around the Circle of
    /// Willis (T2: 3–4 mm slices): for unit tests.
    Tiny,
    /// 128 × 128 voxels of 0.75–0.95 mm over ≈ 110 mm around the Circle of
    /// Willis, 0.8–1.0 mm slices (T1post 1–1.25 mm, T2 3–5 mm): for the demo
    /// and end-to-end tests.
    Small,
    /// Clinical grids: CTA 512² at 0.35–0.5 mm with 0.5–0.8 mm slices and up
    /// to 400 slices; MRA 384–512² at 0.35–0.55 mm; T1post 512² at
    /// 0.45–0.6 mm; T2 512² at 0.4–0.5 mm with 3–5 mm slices.
    Full,
}

impl std::str::FromStr for SizePreset {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tiny" => Ok(SizePreset::Tiny),
            "small" => Ok(SizePreset::Small),
            "full" => Ok(SizePreset::Full),
            o => Err(format!("unknown size {o:?} (tiny, small, full)")),
        }
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PhantomConfig {
    /// Number of series.
    pub n: usize,
    /// Master seed.
    pub seed: u64,
    /// Grid size preset.
    pub size: SizePreset,
    /// Share of positive series.
    pub positive_rate: f64,
    /// Relative frequency of CTA, MRA, MRI T2 and MRI T1post.
    pub modality_weights: [f64; 4],
    /// Share of series written as one Enhanced multi-frame file.
    pub multiframe_share: f64,
    /// Share of series on an oblique grid.
    pub oblique_share: f64,
    /// Also write the NIfTI label maps of the ground truth.
    pub label_maps: bool,
    /// The share of series that get a vessel segmentation in the RSNA
    /// layout, `segmentations/<uid>/<uid>_cowseg.nii.gz` (RSNA ships them
    /// for about 4 % of its series; every one by default).
    pub segmentation_share: f64,
    /// The ranges of the series' intensities, noise and blur. A series of
    /// [`AppearanceRange::Wide`] or [`AppearanceRange::Outside`] has the
    /// same anatomy, grid, aneurysms and UIDs as the
    /// [`AppearanceRange::Standard`] series of the same seed and index, so
    /// the sets pair scan by scan.
    pub appearance: AppearanceRange,
    /// How the aneurysms' dome radii are drawn (the clinical distribution
    /// by default).
    pub dome_radii: DomeRadii,
}

impl Default for PhantomConfig {
    fn default() -> Self {
        Self {
            n: 10,
            seed: 0,
            size: SizePreset::Tiny,
            positive_rate: 0.5,
            modality_weights: [0.4, 0.3, 0.2, 0.1],
            multiframe_share: 0.15,
            oblique_share: 0.15,
            label_maps: true,
            segmentation_share: 1.0,
            appearance: AppearanceRange::Standard,
            dome_radii: DomeRadii::default(),
        }
    }
}

impl PhantomConfig {
    /// `n` series from `seed` at `size`, other settings default.
    pub fn new(n: usize, seed: u64, size: SizePreset) -> Self {
        Self {
            n,
            seed,
            size,
            ..Self::default()
        }
    }
    /// Sets the positive share.
    pub fn with_positive_rate(mut self, r: f64) -> Self {
        self.positive_rate = r;
        self
    }
    /// Sets the modality weights (CTA, MRA, MRI T2, MRI T1post).
    pub fn with_modality_weights(mut self, w: [f64; 4]) -> Self {
        self.modality_weights = w;
        self
    }
    /// Draws the modalities in `list` only, equally often. The same weights
    /// written out as [`PhantomConfig::with_modality_weights`] (1 for each
    /// listed one) give the same phantoms.
    ///
    /// ```
    /// use aneu_io::Modality;
    /// use aneu_phantom::{PhantomConfig, SizePreset};
    /// let c = PhantomConfig::new(4, 1, SizePreset::Tiny).with_modalities(&[Modality::Mra]);
    /// assert_eq!(c.modality_weights, [0.0, 1.0, 0.0, 0.0]);
    /// ```
    pub fn with_modalities(self, list: &[Modality]) -> Self {
        self.with_modality_weights(Modality::ALL.map(|m| if list.contains(&m) { 1.0 } else { 0.0 }))
    }
    /// Sets the Enhanced multi-frame share.
    pub fn with_multiframe_share(mut self, s: f64) -> Self {
        self.multiframe_share = s;
        self
    }
    /// Sets the oblique share.
    pub fn with_oblique_share(mut self, s: f64) -> Self {
        self.oblique_share = s;
        self
    }
    /// Sets the share of series with a vessel segmentation.
    pub fn with_segmentation_share(mut self, s: f64) -> Self {
        self.segmentation_share = s;
        self
    }
    /// Sets the appearance ranges.
    pub fn with_appearance(mut self, a: AppearanceRange) -> Self {
        self.appearance = a;
        self
    }
    /// Sets how the dome radii are drawn.
    pub fn with_dome_radii(mut self, d: DomeRadii) -> Self {
        self.dome_radii = d;
        self
    }
    /// Writes (or not) the NIfTI label maps.
    pub fn with_label_maps(mut self, w: bool) -> Self {
        self.label_maps = w;
        self
    }

    fn check(&self) -> Result<()> {
        let share = |v: f64| (0.0..=1.0).contains(&v);
        if !share(self.positive_rate)
            || !share(self.multiframe_share)
            || !share(self.oblique_share)
            || !share(self.segmentation_share)
        {
            return Err(Error::Config("rates must lie in 0..=1".into()));
        }
        if self.modality_weights.iter().any(|w| w.is_nan() || *w < 0.0)
            || self.modality_weights.iter().sum::<f64>() <= 0.0
        {
            return Err(Error::Config("modality weights must be non-negative, not all 0".into()));
        }
        self.dome_radii.validate().map_err(Error::Config)
    }
}

/// How InstanceNumbers relate to the slice positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceOrder {
    /// 1.. along the slice normal.
    Ascending,
    /// Against the normal.
    Reversed,
    /// A random permutation.
    Shuffled,
}

/// One aneurysm of the ground truth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthAneurysm {
    /// RSNA location name.
    pub location: String,
    /// Parent artery.
    pub artery: anatomy::Artery,
    /// Dome centre (RAS mm).
    pub centre_world: WorldPoint,
    /// Dome centre in the series grid as aneu-io reads it.
    pub centre_voxel: Voxel,
    /// Dome radius (mm).
    pub radius_mm: f64,
    /// Neck radius (mm).
    pub neck_mm: f64,
    /// Shape family.
    pub shape: lesions::AneurysmShape,
    /// Id in `aneurysms.nii.gz`.
    pub label: u8,
}

/// The ground truth of one series (`ground_truth/<uid>/truth.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesTruth {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// Modality class.
    pub modality: Modality,
    /// The aneurysms (empty for a negative series).
    pub aneurysms: Vec<TruthAneurysm>,
    /// The distractors: kind and centre (RAS mm).
    pub distractors: Vec<(lesions::DistractorKind, WorldPoint)>,
    /// Anatomical variants.
    pub variants: Vec<String>,
    /// The series grid (voxel → RAS mm), as aneu-io reads it.
    pub affine: Affine,
    /// Grid size.
    pub size: GridSize,
    /// Written as one Enhanced multi-frame file.
    pub multiframe: bool,
    /// InstanceNumber order.
    pub instance_order: InstanceOrder,
}

/// A fully planned case: all randomness is drawn here.
struct Case {
    uid: String,
    study_uid: String,
    modality: Modality,
    head: Head,
    tree: VesselTree,
    pose: Pose,
    aneurysms: Vec<Aneurysm>,
    distractors: Vec<Distractor>,
    appearance: Appearance,
    affine: Affine,
    size: GridSize,
    multiframe: bool,
    order: InstanceOrder,
    age: u32,
    female: bool,
    noise_seed: u64,
}

fn hash64(parts: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// A DICOM UID under `2.25` (a UUID-derived root) from a hash.
fn uid(seed: u64, index: usize, what: &str) -> String {
    let a = hash64((seed, index, what, 1u8));
    let b = hash64((seed, index, what, 2u8));
    format!("2.25.{}", (u128::from(a) << 64 | u128::from(b)) >> 2)
}

fn rotation(ax: f64, ay: f64, az: f64) -> [[f64; 3]; 3] {
    let (sx, cx) = ax.sin_cos();
    let (sy, cy) = ay.sin_cos();
    let (sz, cz) = az.sin_cos();
    [
        [cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx],
        [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx],
        [-sy, cy * sx, cy * cx],
    ]
}

fn matvec(r: &[[f64; 3]; 3], v: V3) -> V3 {
    [
        r[0][0] * v[0] + r[0][1] * v[1] + r[0][2] * v[2],
        r[1][0] * v[0] + r[1][1] * v[1] + r[1][2] * v[2],
        r[2][0] * v[0] + r[2][1] * v[1] + r[2][2] * v[2],
    ]
}

/// The acquisition grid of a case: spacing, matrix, orientation, centre.
fn grid(rng: &mut StdRng, m: Modality, size: SizePreset, oblique: bool, cow: V3, pose: &Pose) -> (Affine, GridSize) {
    let mut r = |lo: f64, hi: f64| rng.random_range(lo..=hi);
    let (dxy, n_ij, dz, cover_z, centre_dz) = match (size, m) {
        (SizePreset::Tiny, Modality::MriT2) => (r(1.35, 1.55), 64, r(3.0, 4.0), 80.0, 0.0),
        (SizePreset::Tiny, _) => {
            let d = r(1.35, 1.55);
            (d, 64, r(1.35, 1.55), 64.0 * d * 0.9, 0.0)
        }
        (SizePreset::Small, Modality::MriT2) => (r(0.75, 0.95), 128, r(3.0, 5.0), 120.0, 0.0),
        (SizePreset::Small, Modality::MriT1post) => (r(0.75, 0.95), 128, r(1.0, 1.25), 110.0, 0.0),
        (SizePreset::Small, _) => (r(0.75, 0.95), 128, r(0.8, 1.0), 100.0, 0.0),
        (SizePreset::Full, Modality::Cta) => (r(0.35, 0.5), 512, r(0.5, 0.8), r(150.0, 220.0), -25.0),
        (SizePreset::Full, Modality::Mra) => {
            let n = if r(0.0, 1.0) < 0.5 { 384 } else { 512 };
            (r(0.35, 0.55), n, r(0.5, 0.8), r(70.0, 100.0), 5.0)
        }
        (SizePreset::Full, Modality::MriT1post) => (r(0.45, 0.6), 512, r(0.8, 1.25), r(140.0, 170.0), 20.0),
        (SizePreset::Full, Modality::MriT2) => (r(0.4, 0.5), 512, r(3.0, 5.0), r(120.0, 150.0), 20.0),
    };
    let nk = ((cover_z / dz).round() as usize).clamp(8, 400);
    // axial: i → patient left (−x RAS), j → posterior (−y), k → superior
    let (mut di, mut dj, mut dk) = ([-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]);
    if oblique {
        let ang = r(10.0, 25.0).to_radians();
        let axis = unit([r(-1.0, 1.0), r(-1.0, 1.0), r(-0.3, 0.3)]);
        let rot = axis_angle(axis, ang);
        di = matvec(&rot, di);
        dj = matvec(&rot, dj);
        dk = matvec(&rot, dk);
    }
    let shift = [r(-6.0, 6.0), r(-6.0, 6.0), r(-6.0, 6.0)];
    let centre = add(add(pose.to_world(cow), shift), [0.0, 0.0, centre_dz]);
    let half = |n: usize, d: f64| (n as f64 - 1.0) / 2.0 * d;
    let origin = [
        centre[0] - di[0] * half(n_ij, dxy) - dj[0] * half(n_ij, dxy) - dk[0] * half(nk, dz),
        centre[1] - di[1] * half(n_ij, dxy) - dj[1] * half(n_ij, dxy) - dk[1] * half(nk, dz),
        centre[2] - di[2] * half(n_ij, dxy) - dj[2] * half(n_ij, dxy) - dk[2] * half(nk, dz),
    ];
    let lin = [
        [di[0] * dxy, dj[0] * dxy, dk[0] * dz],
        [di[1] * dxy, dj[1] * dxy, dk[1] * dz],
        [di[2] * dxy, dj[2] * dxy, dk[2] * dz],
    ];
    let affine = Affine::from_parts(lin, origin).unwrap_or_else(|_| Affine::identity());
    (affine, GridSize::new(n_ij, n_ij, nk))
}

fn axis_angle(a: V3, t: f64) -> [[f64; 3]; 3] {
    let (s, c) = t.sin_cos();
    let ic = 1.0 - c;
    let [x, y, z] = a;
    [
        [c + x * x * ic, x * y * ic - z * s, x * z * ic + y * s],
        [y * x * ic + z * s, c + y * y * ic, y * z * ic - x * s],
        [z * x * ic - y * s, z * y * ic + x * s, c + z * z * ic],
    ]
}

fn pick_modality(rng: &mut StdRng, w: &[f64; 4]) -> Modality {
    let total: f64 = w.iter().sum();
    let mut u = rng.random_range(0.0..total);
    for (m, wi) in Modality::ALL.into_iter().zip(w) {
        if u < *wi {
            return m;
        }
        u -= wi;
    }
    Modality::Cta
}

/// Plans case `index`: every random draw of the case happens here.
fn plan(config: &PhantomConfig, index: usize) -> Case {
    let seed = hash64((config.seed, index, "case"));
    let mut rng = StdRng::seed_from_u64(seed);
    let modality = pick_modality(&mut rng, &config.modality_weights);
    let positive = rng.random_bool(config.positive_rate);
    let head = Head::random(&mut rng);
    let tree = circle_of_willis(&mut rng);
    let pose = Pose {
        rotation: rotation(
            rng.random_range(-0.14..0.14),
            rng.random_range(-0.14..0.14),
            rng.random_range(-0.14..0.14),
        ),
        scale: rng.random_range(0.92..1.08),
        offset: [
            rng.random_range(-8.0..8.0),
            rng.random_range(5.0..25.0),
            rng.random_range(-8.0..8.0),
        ],
    };
    let oblique = rng.random_bool(config.oblique_share);
    let (affine, size) = grid(&mut rng, modality, config.size, oblique, [0.0; 3], &pose);
    let visible = |a: &Aneurysm| {
        let w = pose.to_world(a.centre);
        let v = affine.world_to_voxel(WorldPoint::new(w[0], w[1], w[2]));
        let n = size.to_ijk();
        let m = a.radius_mm / affine.spacing().iter().fold(f64::MAX, |x, y| x.min(*y)) + 1.0;
        [v.i, v.j, v.k]
            .iter()
            .zip(n)
            .all(|(x, n)| *x >= m && *x <= n as f64 - 1.0 - m)
    };
    let mut aneurysms = Vec::new();
    if positive {
        let want = match rng.random_range(0..100) {
            0..75 => 1,
            75..95 => 2,
            _ => 3,
        };
        let mut tries = 0;
        while aneurysms.len() < want && tries < 60 {
            tries += 1;
            if let Some(a) = aneurysm(&tree, None, &config.dome_radii, &mut rng)
                && visible(&a)
                && aneurysms
                    .iter()
                    .all(|b: &Aneurysm| shapes::norm(shapes::sub(a.centre, b.centre)) > a.radius_mm + b.radius_mm + 2.0)
            {
                aneurysms.push(a);
            }
        }
    }
    let distractors = distractors(&tree, &mut rng);
    let mut appearance = Appearance::random(modality, &mut rng);
    if config.appearance != AppearanceRange::Standard {
        // its own stream, so that every later draw (and the anatomy) stays
        // that of the standard series
        let mut own = StdRng::seed_from_u64(hash64((config.seed, index, config.appearance.to_string().as_str())));
        appearance = appearance.redrawn(modality, config.appearance, &mut own);
    }
    let multiframe = rng.random_bool(config.multiframe_share);
    let order = match rng.random_range(0..100) {
        0..70 => InstanceOrder::Ascending,
        70..85 => InstanceOrder::Reversed,
        _ => InstanceOrder::Shuffled,
    };
    Case {
        uid: uid(config.seed, index, "series"),
        study_uid: uid(config.seed, index, "study"),
        modality,
        head,
        tree,
        pose,
        aneurysms,
        distractors,
        appearance,
        affine,
        size,
        multiframe,
        order,
        age: rng.random_range(25..=85),
        female: rng.random_bool(0.6),
        noise_seed: rng.random(),
    }
}

/// The per-artery labels as the RSNA vessel segmentations hold them
/// (`aneu_io::VESSEL_LABELS`): other vessels are background, and an
/// aneurysm's voxels take the label of its location's artery.
fn rsna_segmentation(r: &render::Rendered, aneurysms: &[Aneurysm]) -> aneu_io::Volume<u8> {
    let mut out = r.arteries.clone();
    for (label, instance) in out.data_mut().iter_mut().zip(r.aneurysms.data().iter()) {
        *label = match *label {
            OTHER_VESSEL_LABEL => 0,
            ANEURYSM_LABEL => usize::from(*instance)
                .checked_sub(1)
                .and_then(|n| aneurysms.get(n))
                .map_or(0, |a| a.location.vessel_label()),
            l => l,
        };
    }
    out
}

/// What one generated series contributes to the dataset files.
struct Written {
    labels: SeriesLabels,
    localizers: Vec<Localizer>,
    truth: SeriesTruth,
}

fn write_case(case: Case, config: &PhantomConfig, root: &Path) -> Result<Written> {
    let mut vessels = Vec::new();
    for s in &case.tree.segments {
        let label = s.artery.vessel_label(s.side);
        vessels.extend(s.primitives().into_iter().map(|p| (label, p)));
    }
    for d in &case.distractors {
        vessels.extend(d.primitives.iter().map(|p| (OTHER_VESSEL_LABEL, *p)));
    }
    let scene = Scene {
        head: &case.head,
        pose: &case.pose,
        vessels,
        aneurysms: case.aneurysms.iter().map(|a| a.primitives.clone()).collect(),
        appearance: &case.appearance,
        affine: case.affine,
        size: case.size,
        seed: case.noise_seed,
    };
    let r = render(&scene)?;
    let dir = root.join("series").join(&case.uid);
    std::fs::create_dir_all(&dir).at(&dir)?;
    let nk = case.size.nk;
    let sops: Vec<String> = if case.multiframe {
        vec![format!("{}.1", case.uid)]
    } else {
        (1..=nk).map(|k| format!("{}.{k}", case.uid)).collect()
    };
    let mut opts = DicomWriteOptions::default()
        .with_modality(case.modality.dicom_modality())
        .with_series_uid(case.uid.clone())
        .with_study_uid(case.study_uid.clone())
        .with_sop_uids(sops.clone())
        .with_patient_id(format!("PHANTOM-{}", &case.uid[case.uid.len() - 8..]))
        .with_series_description(format!("aneu-phantom {}", case.modality))
        .with_patient(
            Some(format!("{:03}Y", case.age)),
            Some(if case.female { "F" } else { "M" }.to_string()),
        );
    opts = if case.modality == Modality::Cta {
        opts.with_stored(StoredType::U16).with_rescale(1.0, -1024.0)
    } else {
        opts.with_stored(StoredType::U16).with_rescale(1.0, 0.0)
    };
    match case.order {
        InstanceOrder::Ascending => {}
        InstanceOrder::Reversed => opts = opts.with_reverse_instance_numbers(true),
        InstanceOrder::Shuffled => {
            let mut v: Vec<u32> = (1..=nk as u32).collect();
            v.shuffle(&mut StdRng::seed_from_u64(case.noise_seed ^ 0x5EED));
            opts = opts.with_instance_numbers(v);
        }
    }
    if case.multiframe {
        write_enhanced(&r.image, dir.join(format!("{}.dcm", sops[0])), &opts)?;
    } else {
        write_series(&r.image, &dir, &opts)?;
    }
    // truth, localizers, labels
    let mut locations = [false; 13];
    let mut localizers = Vec::new();
    let mut truth_an = Vec::new();
    for (n, a) in case.aneurysms.iter().enumerate() {
        let w = case.pose.to_world(a.centre);
        let world = WorldPoint::new(w[0], w[1], w[2]);
        let v = case.affine.world_to_voxel(world);
        let k = (v.k.round().max(0.0) as usize).min(nk - 1);
        locations[a.location.index()] = true;
        localizers.push(Localizer {
            series_uid: case.uid.clone(),
            sop_uid: if case.multiframe {
                sops[0].clone()
            } else {
                sops[k].clone()
            },
            x: (v.i * 100.0).round() / 100.0,
            y: (v.j * 100.0).round() / 100.0,
            frame: case.multiframe.then_some(k as u32),
            location: a.location,
        });
        truth_an.push(TruthAneurysm {
            location: a.location.name().to_string(),
            artery: a.artery,
            centre_world: world,
            centre_voxel: v,
            radius_mm: a.radius_mm,
            neck_mm: a.neck_mm,
            shape: a.shape,
            label: (n + 1) as u8,
        });
    }
    let truth = SeriesTruth {
        series_uid: case.uid.clone(),
        modality: case.modality,
        aneurysms: truth_an,
        distractors: case
            .distractors
            .iter()
            .map(|d| {
                let w = case.pose.to_world(d.centre);
                (d.kind, WorldPoint::new(w[0], w[1], w[2]))
            })
            .collect(),
        variants: case.tree.variants.clone(),
        affine: case.affine,
        size: case.size,
        multiframe: case.multiframe,
        instance_order: case.order,
    };
    let gt = root.join("ground_truth").join(&case.uid);
    std::fs::create_dir_all(&gt).at(&gt)?;
    let json = serde_json::to_string_pretty(&truth).map_err(|e| Error::Config(e.to_string()))?;
    aneu_io::write_atomic(&gt.join("truth.json"), json.as_bytes())?;
    // a share of the series, chosen by a draw the case already made (the
    // phantoms stay those of earlier versions)
    let draw = (case.noise_seed >> 11) as f64 / (1u64 << 53) as f64;
    if draw < config.segmentation_share {
        let seg = root.join("segmentations").join(&case.uid);
        std::fs::create_dir_all(&seg).at(&seg)?;
        write_nifti(
            &rsna_segmentation(&r, &case.aneurysms),
            // compressed (labels shrink about 100-fold; RSNA's are plain
            // .nii, and aneu reads both)
            seg.join(format!("{}_cowseg.nii.gz", case.uid)),
        )?;
    }
    if config.label_maps {
        write_nifti(&r.arteries, gt.join("arteries.nii.gz"))?;
        write_nifti(&r.vessels, gt.join("vessels.nii.gz"))?;
        write_nifti(&r.aneurysms, gt.join("aneurysms.nii.gz"))?;
        write_nifti(&r.brain, gt.join("brain.nii.gz"))?;
    }
    Ok(Written {
        labels: SeriesLabels {
            series_uid: case.uid,
            patient_age: Some(case.age),
            patient_sex: Some(if case.female { "Female" } else { "Male" }.to_string()),
            modality: case.modality,
            locations,
            aneurysm_present: !case.aneurysms.is_empty(),
        },
        localizers,
        truth,
    })
}

/// What [`generate`] wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// Series written.
    pub series: usize,
    /// Positive series.
    pub positives: usize,
    /// Aneurysms in all.
    pub aneurysms: usize,
    /// Series per location (RSNA order).
    pub per_location: Vec<usize>,
    /// The dataset root.
    pub root: PathBuf,
}

/// Generates `config.n` series under `root` in the RSNA layout
/// (`series/<uid>/<sop>.dcm`, `train.csv`, `train_localizers.csv`), plus
/// `segmentations/<uid>/<uid>_cowseg.nii.gz` (for
/// [`PhantomConfig::segmentation_share`] of the series) and
/// `ground_truth/<uid>/{truth.json, arteries.nii.gz, vessels.nii.gz,
/// aneurysms.nii.gz, brain.nii.gz}`, in parallel. `progress` is called after each series.
///
/// # Errors
/// [`Error::Config`] for a bad configuration; I/O errors.
pub fn generate_with_progress(
    config: &PhantomConfig,
    root: impl AsRef<Path>,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<DatasetSummary> {
    config.check()?;
    let root = root.as_ref();
    std::fs::create_dir_all(root.join("series")).at(root)?;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let written: Vec<Written> = (0..config.n)
        .into_par_iter()
        .map(|i| {
            let w = write_case(plan(config, i), config, root);
            progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
            w
        })
        .collect::<Result<_>>()?;
    let labels: Vec<SeriesLabels> = written.iter().map(|w| w.labels.clone()).collect();
    let localizers: Vec<Localizer> = written.iter().flat_map(|w| w.localizers.clone()).collect();
    write_train_csv(root.join("train.csv"), &labels)?;
    write_localizers_csv(root.join("train_localizers.csv"), &localizers)?;
    let mut per_location = vec![0; 13];
    for l in &labels {
        for (n, b) in l.locations.iter().enumerate() {
            per_location[n] += usize::from(*b);
        }
    }
    Ok(DatasetSummary {
        series: labels.len(),
        positives: labels.iter().filter(|l| l.aneurysm_present).count(),
        aneurysms: written.iter().map(|w| w.truth.aneurysms.len()).sum(),
        per_location,
        root: root.to_path_buf(),
    })
}

/// [`generate_with_progress`] without a progress callback.
///
/// # Errors
/// As [`generate_with_progress`].
pub fn generate(config: &PhantomConfig, root: impl AsRef<Path>) -> Result<DatasetSummary> {
    generate_with_progress(config, root, &|_| {})
}

/// Reads `ground_truth/<uid>/truth.json`.
///
/// # Errors
/// [`Error::File`] if it cannot be read or parsed.
pub fn read_truth(root: impl AsRef<Path>, uid: &str) -> Result<SeriesTruth> {
    let p = root.as_ref().join("ground_truth").join(uid).join("truth.json");
    let text = std::fs::read_to_string(&p).at(&p)?;
    serde_json::from_str(&text).map_err(|e| Error::File {
        path: p,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// The location names, for convenience.
pub fn location_names() -> [&'static str; 13] {
    Location::ALL.map(|l| l.name())
}

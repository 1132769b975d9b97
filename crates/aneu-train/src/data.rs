//! The data path: preprocessed series → [`Case`]s in memory → patches →
//! Burn batches, through Burn's [`Dataset`] and [`Batcher`] traits.

use std::path::Path;
use std::sync::Arc;

use aneu_io::{Location, Modality};
use aneu_patch::augment::{Compose, RandTransform};
use aneu_patch::{Case, Finding, Patch, PatchSampler, PatchSpec};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::loss::{Targets, VesselTargets};

/// What the trainer knows about a scan besides its voxels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseInfo {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// PatientID (the series UID when the series had none).
    pub patient_id: String,
    /// Modality.
    pub modality: Modality,
    /// Aneurysm Present (from the labels, else from the annotations).
    pub positive: bool,
    /// The preprocessing config hash.
    pub config_hash: String,
}

/// Reads every preprocessed series under `dir` (as `preprocess_dataset`
/// wrote them) into [`Case`]s, in parallel, with findings from the
/// annotations (location parsed from the RSNA name; radius unknown).
///
/// # Errors
/// The first unreadable series, named; an empty folder is
/// [`crate::Error::Data`].
pub fn load_cases(dir: impl AsRef<Path>) -> Result<(Vec<Case>, Vec<CaseInfo>)> {
    let dirs = aneu_preproc::list_preprocessed(dir.as_ref())?;
    if dirs.is_empty() {
        return Err(crate::Error::Data(format!(
            "no preprocessed series under {}",
            dir.as_ref().display()
        )));
    }
    let loaded: Vec<Result<(Case, CaseInfo)>> = dirs
        .par_iter()
        .map(|d| {
            let p = aneu_preproc::read_preprocessed(d)?;
            let findings: Vec<Finding> = p
                .meta
                .annotations
                .iter()
                .map(|a| Finding {
                    voxel: a.voxel,
                    location: a.location.parse::<Location>().ok(),
                    radius_mm: None,
                })
                .collect();
            let positive = p
                .meta
                .labels
                .as_ref()
                .map_or(!findings.is_empty(), |l| l.aneurysm_present);
            let patient_id = if p.meta.patient_id.is_empty() {
                p.meta.series_uid.clone()
            } else {
                p.meta.patient_id.clone()
            };
            let info = CaseInfo {
                series_uid: p.meta.series_uid.clone(),
                patient_id,
                modality: p.meta.modality,
                positive,
                config_hash: p.meta.config_hash.clone(),
            };
            let case = Case::new(p.meta.series_uid, p.image, p.mask, findings)?;
            let case = match p.vessels {
                Some(v) => case.with_vessel_labels(v)?,
                None => case,
            };
            Ok((case, info))
        })
        .collect();
    let mut cases = Vec::with_capacity(loaded.len());
    let mut infos = Vec::with_capacity(loaded.len());
    for r in loaded {
        let (c, i) = r?;
        cases.push(c);
        infos.push(i);
    }
    Ok((cases, infos))
}

/// Gives each finding of `cases` the radius of the aneu-phantom aneurysm
/// it marks, from `root/ground_truth/<uid>/truth.json` (an aneu-phantom
/// dataset root): the aneurysm whose centre lies nearest the finding, at
/// most [`PHANTOM_MATCH_MM`] away. RSNA's localizers carry no size, so
/// without this every finding counts as the sampler's
/// `default_radius_mm`; with it the dense target is each aneurysm's own
/// sphere and `size_weighting` can weigh small ones.
///
/// # Errors
/// [`crate::Error::Phantom`] naming a truth file that cannot be read;
/// [`crate::Error::Data`] naming the series and the finding when no
/// phantom aneurysm lies near it. Nothing is changed then.
pub fn give_phantom_radii(cases: &mut [Case], root: impl AsRef<Path>) -> Result<()> {
    let root = root.as_ref();
    let radii: Vec<Vec<f64>> = cases
        .iter()
        .map(|c| {
            let truth = aneu_phantom::read_truth(root, &c.id)?;
            c.findings
                .iter()
                .enumerate()
                .map(|(n, f)| {
                    let w = c.image.voxel_to_world(f.voxel);
                    truth
                        .aneurysms
                        .iter()
                        .map(|a| (w.distance(&a.centre_world), a.radius_mm))
                        .filter(|(d, _)| *d <= PHANTOM_MATCH_MM)
                        .min_by(|a, b| a.0.total_cmp(&b.0))
                        .map(|(_, r)| r)
                        .ok_or_else(|| {
                            crate::Error::Data(format!(
                                "series {}: finding {n} at ({:.1}, {:.1}, {:.1}) mm marks no aneurysm of {}",
                                c.id,
                                w.x,
                                w.y,
                                w.z,
                                root.join("ground_truth").join(&c.id).join("truth.json").display()
                            ))
                        })
                })
                .collect()
        })
        .collect::<Result<_>>()?;
    for (c, r) in cases.iter_mut().zip(radii) {
        for (f, r) in c.findings.iter_mut().zip(r) {
            f.radius_mm = Some(r);
        }
    }
    Ok(())
}

/// How far (mm) a finding may lie from the phantom aneurysm it marks
/// ([`give_phantom_radii`]): a localizer sits on a slice, up to half a
/// slice from the centre.
pub const PHANTOM_MATCH_MM: f64 = 2.0;

/// A batch of patches as tensors.
#[derive(Debug, Clone)]
pub struct PatchBatch<B: Backend> {
    /// `[N, C, D, H, W]`: the image, then (with the position prior) three
    /// normalised-coordinate channels.
    pub images: Tensor<B, 5>,
    /// The targets.
    pub targets: Targets<B>,
}

/// Turns patches into a [`PatchBatch`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PatchBatcher {
    /// Append the position channels.
    pub position_prior: bool,
}

impl<B: Backend> Batcher<B, Patch, PatchBatch<B>> for PatchBatcher {
    /// # Panics
    /// On an empty batch or patches of different sizes (programmer misuse).
    fn batch(&self, items: Vec<Patch>, device: &B::Device) -> PatchBatch<B> {
        assert!(!items.is_empty(), "an empty batch");
        let n = items.len();
        let (d, h, w) = items[0].image.dim();
        let c = if self.position_prior { 4 } else { 1 };
        let per = d * h * w;
        let mut img = Vec::with_capacity(n * c * per);
        let mut den = Vec::with_capacity(n * per);
        let mut lab = Vec::with_capacity(n);
        let mut loc = Vec::with_capacity(n * 13);
        let labelled = items.iter().any(|p| p.vessels.is_some());
        let mut ves: Vec<i64> = Vec::with_capacity(if labelled { n * per } else { 0 });
        let mut has = Vec::with_capacity(n);
        for p in &items {
            assert_eq!(p.image.dim(), (d, h, w), "patches of different sizes in one batch");
            img.extend(p.image.iter().copied());
            if self.position_prior {
                img.extend(p.position_channels());
            }
            den.extend(p.dense.iter().copied());
            lab.push(p.label);
            loc.extend_from_slice(&p.locations);
            if labelled {
                match &p.vessels {
                    Some(v) => ves.extend(v.iter().map(|&l| i64::from(l))),
                    None => ves.resize(ves.len() + per, 0),
                }
                has.push(f32::from(u8::from(p.vessels.is_some())));
            }
        }
        let t1 = |v: Vec<f32>| Tensor::<B, 1>::from_floats(v.as_slice(), device);
        PatchBatch {
            images: t1(img).reshape([n, c, d, h, w]),
            targets: Targets {
                labels: t1(lab).reshape([n, 1]),
                locations: t1(loc).reshape([n, 13]),
                dense: t1(den).reshape([n, 1, d, h, w]),
                vessels: labelled.then(|| {
                    let classes = usize::from(aneu_io::MAX_VESSEL_LABEL) + 1;
                    let mut hot = vec![0f32; n * classes * per];
                    for (at, &l) in ves.iter().enumerate() {
                        let (s, v) = (at / per, at % per);
                        hot[(s * classes + l as usize) * per + v] = 1.0;
                    }
                    VesselTargets {
                        labels: Tensor::<B, 4, Int>::from_data(TensorData::new(ves, [n, d, h, w]), device),
                        one_hot: t1(hot).reshape([n, classes, d, h, w]),
                        has: t1(has),
                    }
                }),
            },
        }
    }
}

/// The patches of one epoch as a Burn [`Dataset`]: item `n` is the patch
/// of `specs[n]`, augmented with an RNG seeded from `(seed, n)`, so that
/// any item can be produced in any order, on any thread, identically.
pub struct PatchDataset {
    cases: Arc<Vec<Case>>,
    specs: Vec<PatchSpec>,
    sampler: PatchSampler,
    augment: Compose,
    seed: u64,
}

impl PatchDataset {
    /// A dataset over `specs` (from [`PatchSampler::plan_epoch`]).
    pub fn new(
        cases: Arc<Vec<Case>>,
        specs: Vec<PatchSpec>,
        sampler: PatchSampler,
        augment: Compose,
        seed: u64,
    ) -> Self {
        PatchDataset {
            cases,
            specs,
            sampler,
            augment,
            seed,
        }
    }

    /// Items `range`, extracted and augmented in parallel.
    pub fn get_range(&self, range: std::ops::Range<usize>) -> Vec<Patch> {
        range.into_par_iter().filter_map(|n| self.get(n)).collect()
    }

    /// The specs.
    pub fn specs(&self) -> &[PatchSpec] {
        &self.specs
    }
}

impl Dataset<Patch> for PatchDataset {
    fn get(&self, index: usize) -> Option<Patch> {
        let spec = self.specs.get(index)?;
        let mut p = self.sampler.extract(&self.cases, spec);
        if !self.augment.0.is_empty() {
            let mut rng = StdRng::seed_from_u64(self.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            self.augment.apply(&mut p, &mut rng);
        }
        Some(p)
    }

    fn len(&self) -> usize {
        self.specs.len()
    }
}

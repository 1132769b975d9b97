//! The predictor: one or more model bundles (an ensemble, such as the
//! folds of a cross-validation) run over a scan with optional flip TTA,
//! giving a probability map, candidates and the 14 RSNA outputs.

use aneu_io::AtPath;
use std::path::Path;
use std::time::Instant;

use aneu_bundle::{ModelBundle, Thresholds, Tta};
use aneu_io::{DicomSeries, Location, Modality, SeriesLabels, Volume, Voxel, WorldPoint};
use aneu_metrics::{Candidate, Lesion, ScanDetections, ScanOutcome};
use aneu_models::{AnyModel, PatchModel};
use aneu_patch::{Case, patch_start};
use aneu_preproc::{Grid, PreprocessConfig, Preprocessed, preprocess_series};
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};
use ndarray::{Array3, Array4, Axis, s};
use serde::{Deserialize, Serialize};

use crate::candidates::{CandidateOptions, find_peaks};
use crate::labeller::{check_labeller, label_arteries, most_probable};
use crate::locate::{check_locator, locate};
use crate::rescore::{VesselFeatures, candidate_features, check_rescorer};
use crate::sides::{Midline, Sides, mask_centre};
use crate::window::{SlidingWindow, WindowBatch, WindowOutput, window_input};
use crate::{Error, Result};

/// How the scan's `Aneurysm Present` probability is made from the map and
/// the candidates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Aggregator {
    /// The top candidate's score; the map's maximum inside the mask when
    /// no candidate reaches the floor.
    Max,
    /// The map's mean inside the mask.
    Mean,
    /// The map's 95th percentile inside the mask.
    P95,
    /// The mean of the `k` highest candidate scores, missing ones counted
    /// as 0.
    TopKMean {
        /// How many candidates.
        k: usize,
    },
    /// `1 − Π (1 − s)` over the `k` highest candidate scores: the chance
    /// that at least one is an aneurysm if they were independent.
    NoisyOr {
        /// How many candidates.
        k: usize,
    },
}

/// Everything inference does besides the models, as one JSON value.
///
/// ```
/// let c: aneu_infer::InferConfig =
///     serde_json::from_str(r#"{"tta": "flip_lr", "aggregator": {"type": "noisy_or", "k": 3}}"#)?;
/// assert!(c.validate().is_ok());
/// assert_eq!(c.window, aneu_infer::SlidingWindow::default());
/// assert_eq!(c.location_smoothing, 0.25);
/// let bad: aneu_infer::InferConfig = serde_json::from_str(r#"{"location_smoothing": 1.5}"#)?;
/// assert!(bad.validate().is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InferConfig {
    /// The sliding window.
    pub window: SlidingWindow,
    /// Candidate extraction.
    pub candidates: CandidateOptions,
    /// The `Aneurysm Present` aggregator.
    pub aggregator: Aggregator,
    /// Test-time augmentation; unset (`null` or absent), the TTA the
    /// thresholds were calibrated with ([`Thresholds::tta`]; the shipped
    /// model's record flip TTA), else none. See [`Predictor::tta`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tta: Option<Tta>,
    /// Also blend the vessel head's class logits over the windows into an
    /// artery label map ([`Prediction::arteries`]; `predict_dataset`
    /// writes it as `<uid>_arteries.nii.gz`). It costs a map of
    /// `classes` floats per voxel while the scan runs (14 × the
    /// probability map's memory). Bundles without a vessel head make none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub arteries: bool,
    /// Where the lateral arteries of the candidates' locations and of the
    /// artery map get their side: the brain mask's midline (the default)
    /// or the network. The candidate locator and the artery labeller,
    /// when the thresholds hold them, always take the midline's.
    pub sides: Sides,
    /// How far each candidate's 13 location probabilities are pulled
    /// towards the uniform 1/13 before the scan's locations are taken from
    /// them ([`scan_locations`]): 0 keeps them as the locator or location
    /// head gives them, 1 gives every location the candidate's score / 13.
    /// 0.25 by default (the best of 0.1, 0.25, 0.5 and 0.75 on the
    /// shipped model's calibration scans, though within their intervals
    /// there): a location a candidate's
    /// locator rules out then still ranks with the candidate's score, so a
    /// scan with a strong candidate ranks above a clean scan in every
    /// location's column (docs/benchmarks.md, "Location probabilities that
    /// keep the scan's evidence"). Each candidate's own `locations` are
    /// unchanged.
    pub location_smoothing: f64,
}

impl Default for InferConfig {
    fn default() -> Self {
        Self {
            window: SlidingWindow::default(),
            candidates: CandidateOptions::default(),
            aggregator: Aggregator::Max,
            tta: None,
            arteries: false,
            sides: Sides::Midline,
            location_smoothing: 0.25,
        }
    }
}

impl InferConfig {
    /// Checks every option.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the bad option.
    pub fn validate(&self) -> Result<()> {
        self.window.validate()?;
        self.candidates.validate()?;
        if let Aggregator::TopKMean { k: 0 } | Aggregator::NoisyOr { k: 0 } = self.aggregator {
            return Err(Error::InvalidConfig("the aggregator's k must be positive".into()));
        }
        if !(0.0..=1.0).contains(&self.location_smoothing) {
            return Err(Error::InvalidConfig(format!(
                "location_smoothing {} is outside [0, 1]",
                self.location_smoothing
            )));
        }
        Ok(())
    }

    /// Reads a JSON config.
    ///
    /// # Errors
    /// [`Error::File`] or [`Error::Format`], then [`InferConfig::validate`].
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let p = path.as_ref();
        let text = std::fs::read_to_string(p).at(p)?;
        let c: Self = serde_json::from_str(&text).map_err(|e| crate::error::format_err(p, e))?;
        c.validate()?;
        Ok(c)
    }
}

/// A candidate's position on the original DICOM grid, in the RSNA
/// localizer form: the nearest slice's instance (and frame), and the
/// pixel column `x` and row `y` on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DicomPoint {
    /// SOPInstanceUID of the nearest slice.
    pub sop_uid: String,
    /// Frame inside a multi-frame instance.
    pub frame: Option<u32>,
    /// Column (pixel centres at integers).
    pub x: f64,
    /// Row.
    pub y: f64,
}

/// What the members say about patches centred on candidates.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchOutputs {
    /// P(aneurysm in the patch) from the `Aneurysm Present` head.
    pub present: Vec<f64>,
    /// The 13 location probabilities per patch, when a member has a
    /// location head.
    pub locations: Option<Vec<[f64; 13]>>,
    /// Per patch, each location's artery's share of the vessel head's
    /// probabilities around its centre ([`territory`], within
    /// [`CandidateOptions::territory_radius`]), when a member has a vessel
    /// head.
    pub territories: Option<Vec<[f64; 13]>>,
    /// Per patch, what the vessel head says about its centre's
    /// neighbourhood, when a member has a vessel head.
    pub vessel: Option<Vec<VesselFeatures>>,
}

/// Voxels within this distance (in voxels) of a patch's centre make the
/// vessel features' artery probability ([`VesselFeatures`]); a
/// candidate's territory reaches farther
/// ([`CandidateOptions::territory_radius`]).
pub const TERRITORY_RADIUS: f64 = 2.0;

/// The artery a patch's centre lies on, from the vessel head's
/// probabilities `probs` (`[classes, p, p, p]` of one patch): each
/// location's probability summed over the voxels within `radius` voxels of
/// the centre, then normalised over the 13 (background left out; all
/// equal when the neighbourhood is background only).
pub fn territory(probs: &[f32], classes: usize, p: usize, radius: f64) -> [f64; 13] {
    let mut t = [0f64; 13];
    let c = (p / 2) as f64;
    let voxels = p * p * p;
    for k in 0..p {
        for j in 0..p {
            for i in 0..p {
                let d2 = (k as f64 - c).powi(2) + (j as f64 - c).powi(2) + (i as f64 - c).powi(2);
                if d2 > radius * radius {
                    continue;
                }
                let at = (k * p + j) * p + i;
                for label in 1..classes.min(256) {
                    if let Some(l) = Location::from_vessel_label(label as u8) {
                        t[l.index()] += f64::from(probs[label * voxels + at]);
                    }
                }
            }
        }
    }
    let sum: f64 = t.iter().sum();
    if sum > 0.0 {
        t.map(|v| v / sum)
    } else {
        [1.0 / 13.0; 13]
    }
}

/// One detection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// The candidate's score: the rescorer's probability when the
    /// thresholds hold one ([`Thresholds::rescorer`]); else the second
    /// stage's probability when the bundle has one; else with
    /// [`CandidateOptions::rescore`] the geometric mean of `peak` and
    /// `patch_score`, else `peak`.
    pub score: f64,
    /// The probability map's value at the peak.
    pub peak: f64,
    /// The `Aneurysm Present` head's probability on a patch centred here.
    pub patch_score: f64,
    /// The second stage's probability (the candidate classifier of the
    /// bundle, on a patch centred here), when the bundle has one: then it
    /// is the `score`.
    #[serde(default)]
    pub second_stage: Option<f64>,
    /// The rescorer's probability, when the thresholds hold a rescorer:
    /// then it is the `score`.
    #[serde(default)]
    pub rescored: Option<f64>,
    /// What the vessel head says about the candidate's neighbourhood
    /// (artery probability, distance to the artery wall, local artery
    /// radius), with a vessel head.
    #[serde(default)]
    pub vessel: Option<VesselFeatures>,
    /// The sub-voxel centre on the probability map's grid.
    pub voxel: Voxel,
    /// The centre in RAS+ mm.
    pub world: WorldPoint,
    /// The 13 location probabilities (in `train.csv` order): with a
    /// vessel head, the locator's ([`Thresholds::locator`], [`locate`])
    /// when the thresholds hold one, else the `territory`; else from the
    /// location head on a patch centred here; `None` with neither.
    pub locations: Option<[f64; 13]>,
    /// The most probable location.
    pub location: Option<Location>,
    /// With a vessel head, each location's artery's share of the vessel
    /// head's probabilities around the candidate ([`territory`]), the
    /// lateral ones moved to the candidate's side with
    /// [`Sides::Midline`].
    #[serde(default)]
    pub territory: Option<[f64; 13]>,
    /// The artery the candidate sits on (the most probable location of
    /// its `territory`), with a vessel head.
    #[serde(default)]
    pub artery: Option<Location>,
    /// The centre on the original DICOM grid, when the prediction started
    /// from DICOM.
    pub dicom: Option<DicomPoint>,
}

/// The prediction for one scan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanPrediction {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// The modality the series was preprocessed as.
    pub modality: Modality,
    /// P(Aneurysm Present).
    pub aneurysm_present: f64,
    /// P(location), in `train.csv` order: the highest candidate score ×
    /// location probability; `aneurysm_present` for every location when no
    /// model has a location head.
    pub locations: [f64; 13],
    /// The `Aneurysm Present` decision threshold in use.
    pub threshold: f64,
    /// Whether the thresholds were calibrated.
    pub calibrated: bool,
    /// `aneurysm_present >= threshold`.
    pub positive: bool,
    /// Candidates, highest first.
    pub candidates: Vec<Detection>,
    /// The probability map's grid (the preprocessed grid).
    pub grid: Grid,
    /// Seconds spent on this series (preprocessing included when it ran).
    pub seconds: f64,
}

impl ScanPrediction {
    /// The 13 locations then `Aneurysm Present`: a submission row.
    pub fn rsna_row(&self) -> [f64; 14] {
        let mut r = [0.0; 14];
        r[..13].copy_from_slice(&self.locations);
        r[13] = self.aneurysm_present;
        r
    }

    /// What this prediction contributes to a detection benchmark
    /// ([`aneu_metrics::BenchmarkFigures`]), against the series' labels and
    /// its aneurysms (centres in RAS+ mm, radii).
    pub fn outcome(&self, truth: &SeriesLabels, aneurysms: Vec<Lesion>) -> ScanOutcome {
        ScanOutcome {
            present: truth.aneurysm_present,
            locations: truth.locations,
            score: self.aneurysm_present,
            location_scores: self.locations,
            detections: ScanDetections {
                candidates: self
                    .candidates
                    .iter()
                    .map(|c| Candidate {
                        point: c.world.to_array(),
                        score: c.score,
                    })
                    .collect(),
                lesions: aneurysms,
            },
            arteries: None,
        }
    }
}

/// A prediction with its probability map.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// The outputs.
    pub scan: ScanPrediction,
    /// P(aneurysm) per voxel on the preprocessed grid.
    pub probability: Volume<f32>,
    /// The artery label of each voxel on the same grid
    /// (`aneu_io::VESSEL_LABELS`: 0 background, 1 to 13 the arteries of
    /// the 13 locations), with [`InferConfig::arteries`] and a member with
    /// a vessel head: the artery labeller's answer when the thresholds hold
    /// one ([`Thresholds::artery_labeller`], [`crate::label_arteries`]),
    /// else the vessel head's most probable class (the highest of its
    /// logits blended over the windows and passes), its side from the
    /// midline with [`Sides::Midline`].
    pub arteries: Option<Volume<u8>>,
}

struct Member<B: Backend> {
    bundle: ModelBundle,
    model: AnyModel<B>,
}

/// One or more model bundles ready to run.
///
/// ```no_run
/// use aneu_infer::{InferConfig, Predictor};
/// use burn::backend::Flex;
/// let p = Predictor::<Flex>::from_dirs(&["run/bundle"], InferConfig::default(), &Default::default())?;
/// let out = p.predict_dir("series/1.2.3")?;
/// println!("{:.3} {:?}", out.scan.aneurysm_present, out.scan.candidates.first().map(|c| c.world));
/// # Ok::<(), aneu_infer::Error>(())
/// ```
pub struct Predictor<B: Backend> {
    members: Vec<Member<B>>,
    /// The members' second stages (candidate classifiers), if they have.
    second: Vec<Member<B>>,
    config: InferConfig,
    thresholds: Thresholds,
    device: B::Device,
}

fn flip5<B: Backend>(mut x: Tensor<B, 5>, f: [bool; 3]) -> Tensor<B, 5> {
    for (a, on) in f.into_iter().enumerate() {
        if on {
            x = x.flip([2 + a as isize]);
        }
    }
    x
}

/// Flips a batch of inputs `[n, channels, k, j, i]` as training's
/// augmentation does (`aneu_patch::augment`): every channel, the image and
/// its coordinate channels, is flipped along each flipped axis, and a flip
/// of i (left–right) also mirrors the i coordinate channel (channel 3 with
/// the position prior) about the midline, `x → 1 − x`: the window of the
/// mirrored head, whose outputs are then mirrored left ↔ right.
fn flip_input<B: Backend>(x: Tensor<B, 5>, f: [bool; 3]) -> Tensor<B, 5> {
    let x = flip5(x, f);
    let channels = x.dims()[1];
    if !f[2] || channels < 4 {
        return x;
    }
    let i = x.clone().narrow(1, 3, 1).neg().add_scalar(1.0);
    let mut parts = vec![x.clone().narrow(1, 0, 3), i];
    if channels > 4 {
        parts.push(x.narrow(1, 4, channels - 4));
    }
    Tensor::cat(parts, 1)
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default()
}

/// The hash of the running executable's bytes, read once per process;
/// "unknown" when it cannot be read.
fn program_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        std::env::current_exe()
            .and_then(std::fs::read)
            .map_or_else(|_| "unknown".into(), aneu_preproc::stable_hash)
    })
}

impl<B: Backend> Predictor<B> {
    /// Loads the bundles' models. An ensemble's bundles must share one
    /// preprocessing config. The thresholds are the first bundle's.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for no bundle, an invalid config, a window
    /// size a model cannot take, or bundles with different preprocessing;
    /// [`Error::Bundle`] when weights do not load.
    pub fn new(bundles: Vec<ModelBundle>, config: InferConfig, device: &B::Device) -> Result<Self> {
        let mut loaded = Vec::with_capacity(bundles.len());
        for b in bundles {
            let model = b.load_model::<B>(device)?;
            loaded.push((b, model));
        }
        Self::from_models(loaded, config, device)
    }

    /// [`Predictor::new`] with models already in memory, each with the
    /// bundle that describes it (its manifest, model and preprocessing
    /// configs, thresholds). Training uses it to run the model it is
    /// training exactly as inference will (hard-negative mining).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] as [`Predictor::new`].
    pub fn from_models(
        models: Vec<(ModelBundle, AnyModel<B>)>,
        config: InferConfig,
        device: &B::Device,
    ) -> Result<Self> {
        config.validate()?;
        let Some((first, _)) = models.first() else {
            return Err(Error::InvalidConfig("an ensemble needs at least one bundle".into()));
        };
        let hash = first.preprocess.hash()?;
        let thresholds = first.thresholds.clone();
        if let Some(r) = &thresholds.rescorer {
            check_rescorer(r)?;
            if models.iter().all(|(_, m)| m.vessel_classes() == 0) {
                return Err(Error::InvalidConfig(
                    "the thresholds hold a candidate rescorer, which reads the vessel head, but no model has one"
                        .into(),
                ));
            }
        }
        let mut members = Vec::with_capacity(models.len());
        let mut second = Vec::new();
        for (b, model) in models {
            if let Some(s) = &b.second_stage {
                if s.preprocess.hash()? != hash {
                    return Err(Error::InvalidConfig(format!(
                        "the second stage of bundle {} was trained on another preprocessing",
                        b.dir.display()
                    )));
                }
                second.push(Member {
                    model: s.load_model::<B>(device)?,
                    bundle: (**s).clone(),
                });
            }
            if b.preprocess.hash()? != hash {
                return Err(Error::InvalidConfig(format!(
                    "bundle {} was trained on another preprocessing than {}",
                    b.dir.display(),
                    members
                        .first()
                        .map_or(String::new(), |m: &Member<B>| m.bundle.dir.display().to_string())
                )));
            }
            if let Some(r) = config.window.roi.or(thresholds.window_roi) {
                let m = b.model.size_multiple();
                let dense = b.model.has_dense_head();
                if !r.is_multiple_of(m) || (!dense && r != b.manifest.patch_size) {
                    return Err(Error::InvalidConfig(format!(
                        "window {r} does not suit bundle {} (a multiple of {m}{})",
                        b.dir.display(),
                        if dense {
                            String::new()
                        } else {
                            format!(", and equal to its patch {}", b.manifest.patch_size)
                        }
                    )));
                }
            }
            members.push(Member { bundle: b, model });
        }
        Ok(Self {
            members,
            second,
            config,
            thresholds,
            device: device.clone(),
        })
    }

    /// [`Predictor::new`] from bundle folders.
    ///
    /// # Errors
    /// As [`ModelBundle::read`] and [`Predictor::new`].
    pub fn from_dirs(dirs: &[impl AsRef<Path>], config: InferConfig, device: &B::Device) -> Result<Self> {
        let bundles = dirs
            .iter()
            .map(ModelBundle::read)
            .collect::<aneu_bundle::Result<Vec<_>>>()?;
        Self::new(bundles, config, device)
    }

    /// Replaces the thresholds (after a calibration of the ensemble).
    pub fn with_thresholds(mut self, t: Thresholds) -> Self {
        self.thresholds = t;
        self
    }

    /// Replaces the thresholds in place.
    pub fn set_thresholds(&mut self, t: Thresholds) {
        self.thresholds = t;
    }

    /// The thresholds in use.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The sliding-window edge every member runs with: the config's, else
    /// the one the thresholds were calibrated with; `None` leaves each
    /// model at its training patch size.
    pub fn window_roi(&self) -> Option<usize> {
        self.config.window.roi.or(self.thresholds.window_roi)
    }

    /// The test-time augmentation the predictor runs: the config's, else
    /// the one its thresholds were calibrated with ([`Thresholds::tta`]),
    /// else none. Thresholds hold for the scores of the TTA they were
    /// chosen on, as for the window.
    pub fn tta(&self) -> Tta {
        self.config.tta.or(self.thresholds.tta).unwrap_or(Tta::None)
    }

    /// The inference config.
    pub fn config(&self) -> &InferConfig {
        &self.config
    }

    /// The bundles.
    pub fn bundles(&self) -> impl Iterator<Item = &ModelBundle> {
        self.members.iter().map(|m| &m.bundle)
    }

    /// The preprocessing every bundle was trained with.
    pub fn preprocess_config(&self) -> &PreprocessConfig {
        &self.members[0].bundle.preprocess
    }

    /// A stable hash of everything that decides the outputs: the config,
    /// the bundles (manifest and the weights' bytes), the thresholds, and
    /// the program that runs them (the bytes of the running executable, so
    /// that outputs of an older build of aneu are never taken for this
    /// one's; an executable that cannot be read counts as "unknown").
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when one of them has no JSON form: the hash
    /// is never taken of an empty string; [`Error::File`] when a bundle's
    /// weights cannot be read.
    pub fn run_hash(&self) -> Result<String> {
        fn json(what: &str, v: &impl Serialize) -> Result<String> {
            serde_json::to_string(v).map_err(|e| Error::InvalidConfig(format!("the {what} has no JSON form: {e}")))
        }
        let mut parts = json("inference config", &self.config)?;
        for m in self.members.iter().chain(&self.second) {
            parts.push_str(&json("bundle manifest", &m.bundle.manifest)?);
            let path = m.bundle.dir.join("weights.mpk");
            let w = std::fs::read(&path).map_err(|source| Error::File { path, source })?;
            parts.push_str(&aneu_preproc::stable_hash(&w));
        }
        parts.push_str(&json("thresholds", &self.thresholds)?);
        parts.push_str(program_hash());
        Ok(aneu_preproc::stable_hash(&parts))
    }

    /// The member's outputs on a batch of windows, averaged over the TTA
    /// flips: the aneurysm map (or the patch score), and with `classes > 0`
    /// the vessel head's class logits after it, as
    /// [`WindowOutput::Channels`].
    fn run_windows(&self, m: &Member<B>, b: &WindowBatch, series: &str, classes: usize) -> Result<Vec<WindowOutput>> {
        let (n, r) = (b.len(), b.roi);
        let per = r * r * r;
        let x = Tensor::<B, 1>::from_floats(b.data.as_slice(), &self.device).reshape([n, b.channels, r, r, r]);
        let flips = self.tta().flips();
        let dense = m.model.has_dense_head();
        let nonfinite = |what: &str| Error::NonFinite {
            series: series.to_string(),
            what: what.to_string(),
        };
        let mirror = mirrored_classes(classes);
        let mut sum: Vec<f32> = Vec::new();
        let mut vessels = vec![0f32; n * classes * per];
        for f in &flips {
            let out = m.model.forward_patches(flip_input(x.clone(), *f));
            let v = match (dense, out.dense) {
                (true, Some(d)) => to_vec(flip5(sigmoid(d), *f)),
                _ => to_vec(sigmoid(out.logit)),
            };
            if sum.is_empty() {
                sum = v;
            } else {
                sum.iter_mut().zip(&v).for_each(|(a, b)| *a += b);
            }
            if classes > 0 {
                let v = out.vessels.ok_or_else(|| {
                    Error::InvalidConfig("a model with a vessel head returned no vessel output".into())
                })?;
                // the logits: their argmax is the softmax's, and blending
                // them (MONAI blends the network's raw output) spares a
                // softmax over every window
                let logits = to_vec(flip5(v, *f));
                // a flipped i axis swaps left and right arteries
                for (w, window) in logits.chunks(classes * per).enumerate() {
                    for (c, one) in window.chunks(per).enumerate() {
                        let c = if f[2] { mirror[c] } else { c };
                        let dst = &mut vessels[(w * classes + c) * per..][..per];
                        dst.iter_mut().zip(one).for_each(|(a, b)| *a += b);
                    }
                }
            }
        }
        let nf = flips.len() as f32;
        if sum.iter().chain(&vessels).any(|v| !v.is_finite()) {
            return Err(nonfinite("a non-finite probability"));
        }
        (0..n)
            .map(|w| {
                if !dense {
                    return Ok(WindowOutput::Score(sum.get(w).copied().unwrap_or(0.0) / nf));
                }
                let map = &sum[w * per..(w + 1) * per];
                let vs = &vessels[w * classes * per..(w + 1) * classes * per];
                let all: Vec<f32> = map.iter().chain(vs).map(|v| v / nf).collect();
                let out = Array4::from_shape_vec((1 + classes, r, r, r), all)
                    .map_err(|e| Error::InvalidConfig(format!("a window's outputs: {e}")))?;
                Ok(if classes == 0 {
                    WindowOutput::Dense(out.index_axis_move(Axis(0), 0))
                } else {
                    WindowOutput::Channels(out)
                })
            })
            .collect()
    }

    /// The ensemble's probability map on the case's grid (`[k, j, i]`):
    /// each member's sliding-window map (with TTA), averaged.
    ///
    /// # Errors
    /// [`Error::NonFinite`] when a model produces NaN, and sliding-window
    /// errors.
    pub fn probability_map(&self, case: &Case) -> Result<Array3<f32>> {
        Ok(self.maps(case, false)?.0)
    }

    /// Whether predictions carry an artery label map: the config asks for
    /// it ([`InferConfig::arteries`]) and a member has a dense vessel head.
    pub fn makes_arteries(&self) -> bool {
        self.config.arteries && self.members.iter().any(|m| artery_classes(m) > 0)
    }

    /// The vessel heads' class logits on the case's grid
    /// (`[classes, k, j, i]`, class `n` the vessel label `n`), blended over
    /// the windows (with TTA) and averaged over the members that have a
    /// dense vessel head; `None` when none has. They are kept outside the
    /// brain mask ([`SlidingWindow::mask_output`] zeroes only the
    /// probability map), and are 0 where no window ran. The artery map is
    /// made of them ([`Prediction::arteries`]).
    ///
    /// # Errors
    /// As [`Predictor::probability_map`], and [`Error::InvalidConfig`] when
    /// the members' vessel heads have different numbers of classes.
    pub fn vessel_logits(&self, case: &Case) -> Result<Option<Array4<f32>>> {
        Ok(self.maps(case, true)?.1)
    }

    /// The probability map, and with `arteries` the vessel heads' logits
    /// ([`Predictor::vessel_logits`]).
    fn maps(&self, case: &Case, arteries: bool) -> Result<(Array3<f32>, Option<Array4<f32>>)> {
        let mut prob: Option<Array3<f32>> = None;
        let mut vessels: Option<Array4<f32>> = None;
        for m in &self.members {
            let roi = self.window_roi().unwrap_or(m.bundle.manifest.patch_size);
            let classes = if arteries { artery_classes(m) } else { 0 };
            let maps =
                self.config
                    .window
                    .run_channels(case, roi, m.bundle.manifest.position_prior, 1 + classes, |b| {
                        self.run_windows(m, b, &case.id, classes)
                    })?;
            let p = maps.index_axis(Axis(0), 0);
            match &mut prob {
                None => prob = Some(p.to_owned()),
                Some(a) => *a += &p,
            }
            if classes == 0 {
                continue;
            }
            let v = maps.slice(s![1.., .., .., ..]);
            match &mut vessels {
                None => vessels = Some(v.to_owned()),
                Some(a) if a.dim() == v.dim() => *a += &v,
                Some(a) => {
                    return Err(Error::InvalidConfig(format!(
                        "the ensemble's vessel heads differ: {} and {} classes",
                        a.dim().0,
                        v.dim().0
                    )));
                }
            }
        }
        let mut p = prob.ok_or_else(|| Error::InvalidConfig("no model".into()))?;
        p /= self.members.len() as f32;
        let heads = self.members.iter().filter(|m| artery_classes(m) > 0).count();
        if let Some(v) = &mut vessels {
            *v /= heads.max(1) as f32;
        }
        Ok((p, vessels))
    }

    /// The artery label map of the vessel heads' blended `logits` on
    /// `case`'s grid: the artery labeller's ([`label_arteries`], inside the
    /// brain mask and out) when the thresholds hold one
    /// ([`Thresholds::artery_labeller`]) and the mask has a centre; else
    /// each voxel's most probable class, background outside the mask with
    /// [`SlidingWindow::mask_output`], its side from the midline with
    /// [`Sides::Midline`].
    fn artery_labels(&self, logits: &Array4<f32>, case: &Case, centre: Option<WorldPoint>) -> Result<Array3<u8>> {
        let affine = case.image.affine();
        if let (Some(l), Some(c)) = (&self.thresholds.artery_labeller, centre) {
            check_labeller(l)?;
            return Ok(label_arteries(l, logits, affine, c));
        }
        let mut labels = most_probable(logits);
        if self.config.window.mask_output {
            labels.zip_mut_with(&case.mask.data(), |l, &m| *l = if m == 0 { 0 } else { *l });
        }
        if let Some(m) = self.midline(centre) {
            m.relabel(&mut labels, affine);
        }
        Ok(labels)
    }

    /// Runs every member on patches (of its training size) centred on
    /// `centres` (`[k, j, i]`), averaging over members and TTA flips: the
    /// `Aneurysm Present` head's probability per patch, and the 13 location
    /// probabilities (`None` when no member has a location head).
    ///
    /// # Errors
    /// [`Error::NonFinite`].
    pub fn patch_outputs(&self, case: &Case, centres: &[[usize; 3]]) -> Result<PatchOutputs> {
        self.outputs_of(&self.members, case, centres, true)
    }

    /// Whether a member has a second stage.
    pub fn has_second_stage(&self) -> bool {
        !self.second.is_empty()
    }

    /// [`Predictor::patch_outputs`] of the members' second stages (the
    /// candidate classifiers), `None` when no member has one. Their vessel
    /// heads are not read (`territories` and `vessel` are `None`): the
    /// first stage's answer those.
    ///
    /// # Errors
    /// [`Error::NonFinite`].
    pub fn second_stage_outputs(&self, case: &Case, centres: &[[usize; 3]]) -> Result<Option<PatchOutputs>> {
        if self.second.is_empty() {
            return Ok(None);
        }
        self.outputs_of(&self.second, case, centres, false).map(Some)
    }

    fn outputs_of(
        &self,
        members: &[Member<B>],
        case: &Case,
        centres: &[[usize; 3]],
        read_vessels: bool,
    ) -> Result<PatchOutputs> {
        let n = centres.len();
        let mut present = vec![0.0f64; n];
        let mut locs = vec![[0.0f64; 13]; n];
        let mut terr = vec![[0.0f64; 13]; n];
        let mut vessel: Vec<Vec<VesselFeatures>> = vec![Vec::new(); n];
        let (mut present_count, mut loc_count, mut terr_count) = (0usize, 0usize, 0usize);
        if n == 0 {
            return Ok(PatchOutputs {
                present,
                locations: None,
                territories: None,
                vessel: None,
            });
        }
        let [si, sj, sk] = case.image.spacing();
        let bs = self.config.window.batch_size;
        let nonfinite = |what: &str| Error::NonFinite {
            series: case.id.clone(),
            what: what.to_string(),
        };
        for m in members {
            let p = m.bundle.manifest.patch_size;
            let c = if m.bundle.manifest.position_prior { 4 } else { 1 };
            let flips = self.tta().flips();
            for first in (0..n).step_by(bs) {
                let chunk = &centres[first..(first + bs).min(n)];
                let mut data = Vec::new();
                for cen in chunk {
                    data.extend(window_input(case, patch_start(*cen, [p; 3]), p, c == 4));
                }
                let x = Tensor::<B, 1>::from_floats(data.as_slice(), &self.device).reshape([chunk.len(), c, p, p, p]);
                for f in &flips {
                    let out = m.model.forward_patches(flip_input(x.clone(), *f));
                    if let (true, Some(v)) = (read_vessels, out.vessels) {
                        let classes = m.model.vessel_classes();
                        let probs = to_vec(softmax(v, 1));
                        if probs.iter().any(|x| !x.is_finite()) {
                            return Err(nonfinite("a non-finite vessel probability"));
                        }
                        for (k, one) in probs.chunks(classes * p * p * p).enumerate() {
                            vessel[first + k].push(VesselFeatures::of_patch(one, p, [sk, sj, si]));
                            let t = territory(one, classes, p, self.config.candidates.territory_radius);
                            for l in Location::ALL {
                                // a flipped i axis swaps left and right
                                let dst = if f[2] { l.mirrored() } else { l };
                                terr[first + k][dst.index()] += t[l.index()];
                            }
                        }
                    }
                    let pr = to_vec(sigmoid(out.logit));
                    if pr.iter().any(|v| !v.is_finite()) {
                        return Err(nonfinite("a non-finite patch probability"));
                    }
                    for (k, v) in pr.iter().enumerate() {
                        present[first + k] += f64::from(*v);
                    }
                    let Some(l) = out.locations else { continue };
                    let v = to_vec(sigmoid(l));
                    if v.iter().any(|x| !x.is_finite()) {
                        return Err(nonfinite("a non-finite location probability"));
                    }
                    for (k, row) in v.chunks(13).enumerate() {
                        for l in Location::ALL {
                            // a flipped i axis swaps left and right
                            let dst = if f[2] { l.mirrored() } else { l };
                            locs[first + k][dst.index()] += f64::from(row[l.index()]);
                        }
                    }
                }
            }
            present_count += flips.len();
            if m.model.has_location_head() {
                loc_count += flips.len();
            }
            if read_vessels && m.model.vessel_classes() > 0 {
                terr_count += flips.len();
            }
        }
        present.iter_mut().for_each(|v| *v /= present_count.max(1) as f64);
        let mean = |rows: Vec<[f64; 13]>, count: usize| -> Option<Vec<[f64; 13]>> {
            (count > 0).then(|| rows.into_iter().map(|r| r.map(|v| v / count as f64)).collect())
        };
        Ok(PatchOutputs {
            present,
            locations: mean(locs, loc_count),
            territories: mean(terr, terr_count),
            vessel: if terr_count > 0 {
                vessel.iter().map(|v| VesselFeatures::mean(v)).collect()
            } else {
                None
            },
        })
    }

    /// The probability map and the candidates on it, highest score first:
    /// the sliding window, [`find_peaks`], each peak's patch outputs
    /// (rescoring and locations), the second stage's probability when the
    /// bundles have one (it becomes the candidate's score), and its DICOM
    /// position when `series` is given. This is what
    /// [`Predictor::predict_case`] starts from, and what training mines
    /// hard negatives and second-stage candidates from.
    ///
    /// # Errors
    /// As [`Predictor::probability_map`] and [`Predictor::patch_outputs`].
    pub fn detect(&self, case: &Case, series: Option<&DicomSeries>) -> Result<(Array3<f32>, Vec<Detection>)> {
        let map = self.probability_map(case)?;
        let candidates = self.candidates_on(case, &map, mask_centre(&case.mask), series)?;
        Ok((map, candidates))
    }

    /// The midline that gives the lateral arteries their side, through the
    /// brain mask's `centre`, when the config asks for it
    /// ([`InferConfig::sides`]) and the mask is not empty.
    fn midline(&self, centre: Option<WorldPoint>) -> Option<Midline> {
        match self.config.sides {
            Sides::Midline => centre.map(|c| Midline { x_mm: c.x }),
            Sides::Network => None,
        }
    }

    /// The candidates on `map`, the case's probability map: what
    /// [`Predictor::detect`] does after the sliding window. `centre` is
    /// the brain mask's ([`mask_centre`]): with [`Sides::Midline`] each
    /// candidate's territory is folded onto its side of the plane through
    /// it, and the locator measures a candidate's position from it (with
    /// an empty mask, the locations are the territory's).
    fn candidates_on(
        &self,
        case: &Case,
        map: &Array3<f32>,
        centre: Option<WorldPoint>,
        series: Option<&DicomSeries>,
    ) -> Result<Vec<Detection>> {
        let midline = self.midline(centre);
        let locator = self.thresholds.locator.as_ref();
        if let Some(l) = locator {
            check_locator(l)?;
        }
        let affine = *case.image.affine();
        let peaks = find_peaks(map.view(), &affine, &self.config.candidates);
        let centres: Vec<[usize; 3]> = peaks.iter().map(|p| p.voxel).collect();
        let po = self.patch_outputs(case, &centres)?;
        let second = self.second_stage_outputs(case, &centres)?.map(|o| o.present);
        // the vessel head's territories, when a member has one, else the
        // location head's answer
        let territorial = po.territories.is_some();
        if locator.is_some() && !territorial && !peaks.is_empty() {
            return Err(Error::InvalidConfig(
                "the candidate locator reads the vessel head, which no model has".into(),
            ));
        }
        let locs = po.territories.or(po.locations);
        let rescore = self.config.candidates.rescore;
        let mut candidates: Vec<Detection> = peaks
            .iter()
            .enumerate()
            .map(|(n, p)| {
                let world = affine.voxel_to_world(p.centroid);
                let l = locs.as_ref().and_then(|v| v.get(n)).copied();
                let l = l.map(|l| midline.map_or(l, |m| m.fold(l, world)));
                let territory = l.filter(|_| territorial);
                let located = match (locator, territory, centre) {
                    (Some(loc), Some(t), Some(c)) => Some(locate(loc, &t, world, c)),
                    _ => l,
                };
                let peak = f64::from(p.score);
                let patch = po.present.get(n).copied().unwrap_or(0.0);
                let second_stage = second.as_ref().and_then(|s| s.get(n).copied());
                let first = if rescore { (peak * patch).sqrt() } else { peak };
                Detection {
                    score: second_stage.unwrap_or(first),
                    peak,
                    patch_score: patch,
                    second_stage,
                    rescored: None,
                    vessel: po.vessel.as_ref().and_then(|v| v.get(n)).copied(),
                    voxel: p.centroid,
                    world,
                    location: located.map(|l| Location::ALL[argmax(&l)]),
                    artery: territory.map(|t| Location::ALL[argmax(&t)]),
                    locations: located,
                    territory,
                    dicom: series.and_then(|s| world_to_dicom(s, world)),
                }
            })
            .collect::<Vec<_>>();
        if let Some(r) = &self.thresholds.rescorer {
            check_rescorer(r)?;
            for c in &mut candidates {
                let x = candidate_features(c, c.score).ok_or_else(|| {
                    Error::InvalidConfig("the candidate rescorer reads the vessel head, which no model has".into())
                })?;
                let s = r.probability(&x);
                c.rescored = Some(s);
                c.score = s;
            }
        }
        candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(candidates)
    }

    /// Predicts a preprocessed case: map, candidates, locations and the
    /// scan outputs. `series` (the DICOM series the case came from) adds
    /// the DICOM coordinates of each candidate.
    ///
    /// # Errors
    /// As [`Predictor::probability_map`].
    pub fn predict_case(&self, case: &Case, modality: Modality, series: Option<&DicomSeries>) -> Result<Prediction> {
        let t0 = Instant::now();
        let (map, logits) = self.maps(case, self.config.arteries)?;
        let affine = *case.image.affine();
        let centre = mask_centre(&case.mask);
        let arteries = logits.map(|v| self.artery_labels(&v, case, centre)).transpose()?;
        let candidates = self.candidates_on(case, &map, centre, series)?;
        let present = aggregate(self.config.aggregator, &map, &case.mask, &candidates);
        let locations = scan_locations(&candidates, present, self.config.location_smoothing);
        let scan = ScanPrediction {
            series_uid: case.id.clone(),
            modality,
            aneurysm_present: present,
            locations,
            threshold: self.thresholds.present,
            calibrated: self.thresholds.calibrated,
            positive: present >= self.thresholds.present,
            candidates,
            grid: Grid {
                affine,
                size: case.image.size(),
            },
            seconds: t0.elapsed().as_secs_f64(),
        };
        let probability = Volume::new(map, affine)?;
        let arteries = arteries.map(|a| Volume::new(a, affine)).transpose()?;
        Ok(Prediction {
            scan,
            probability,
            arteries,
        })
    }

    /// Predicts a series that is already preprocessed (with this bundle's
    /// config).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when its config hash is not the bundle's;
    /// case and model errors.
    pub fn predict_preprocessed(&self, p: Preprocessed, series: Option<&DicomSeries>) -> Result<Prediction> {
        let want = self.preprocess_config().hash()?;
        if p.meta.config_hash != want {
            return Err(Error::InvalidConfig(format!(
                "series {} was preprocessed with config {}, the bundle needs {want}",
                p.meta.series_uid, p.meta.config_hash
            )));
        }
        let case = Case::new(p.meta.series_uid.clone(), p.image, p.mask, vec![])?;
        self.predict_case(&case, p.meta.modality, series)
    }

    /// Preprocesses a DICOM series with the bundle's config, then
    /// predicts it. `modality` defaults to [`Modality::guess`].
    ///
    /// # Errors
    /// Preprocessing, case and model errors.
    pub fn predict_series(&self, series: &DicomSeries, modality: Option<Modality>) -> Result<Prediction> {
        let t0 = Instant::now();
        let modality = modality.unwrap_or_else(|| Modality::guess(&series.meta));
        let p = preprocess_series(series, modality, &[], None, self.preprocess_config())?;
        let mut out = self.predict_preprocessed(p, Some(series))?;
        out.scan.seconds = t0.elapsed().as_secs_f64();
        Ok(out)
    }

    /// Reads the series in `dir` (DICOM files, or one Enhanced multi-frame
    /// file) and predicts it.
    ///
    /// # Errors
    /// Reading errors, then as [`Predictor::predict_series`].
    pub fn predict_dir(&self, dir: impl AsRef<Path>) -> Result<Prediction> {
        let s = DicomSeries::read(dir)?;
        self.predict_series(&s, None)
    }
}

/// The vessel-head classes a member blends into an artery map: its vessel
/// classes when it has a dense head (a patch classifier's head has no
/// map to blend), else 0.
fn artery_classes<B: Backend>(m: &Member<B>) -> usize {
    if m.model.has_dense_head() {
        m.model.vessel_classes()
    } else {
        0
    }
}

/// The class each of `classes` vessel-head classes becomes in a left–right
/// mirror image: the other side's artery of a lateral location, the same
/// class otherwise (background, the midline arteries).
fn mirrored_classes(classes: usize) -> Vec<usize> {
    (0..classes)
        .map(|c| {
            u8::try_from(c)
                .ok()
                .and_then(Location::from_vessel_label)
                .map_or(c, |l| usize::from(l.mirrored().vessel_label()))
        })
        .collect()
}

fn argmax(v: &[f64; 13]) -> usize {
    (0..13).fold(0, |b, n| if v[n] > v[b] { n } else { b })
}

/// A scan's 13 location probabilities from its candidates: for each
/// location, the highest over the candidates with location probabilities
/// of the candidate's score × its probability of that location, pulled
/// towards the uniform 1/13 by `smoothing` (`(1 − smoothing) · q + smoothing
/// / 13`, [`InferConfig::location_smoothing`]). With no such candidate
/// (a model without a location head or locator), `present` for every
/// location.
///
/// ```
/// use aneu_infer::scan_locations;
/// assert_eq!(scan_locations(&[], 0.3, 0.5), [0.3; 13]);
/// ```
pub fn scan_locations(candidates: &[Detection], present: f64, smoothing: f64) -> [f64; 13] {
    if !candidates.iter().any(|c| c.locations.is_some()) {
        return [present; 13];
    }
    std::array::from_fn(|l| {
        candidates
            .iter()
            .filter_map(|c| {
                c.locations
                    .map(|q| c.score * ((1.0 - smoothing) * q[l] + smoothing / 13.0))
            })
            .fold(0.0, f64::max)
    })
}

/// The scan probability from the map (inside the mask) and the candidates.
pub fn aggregate(a: Aggregator, map: &Array3<f32>, mask: &Volume<u8>, candidates: &[Detection]) -> f64 {
    let mview = mask.data();
    let inside = || map.iter().zip(mview.iter()).filter(|(_, m)| **m != 0).map(|(v, _)| *v);
    let top = |k: usize| candidates.iter().take(k).map(|c| c.score);
    match a {
        Aggregator::Max => match candidates.first() {
            Some(_) => top(usize::MAX).fold(0.0, f64::max),
            None => f64::from(inside().fold(0.0f32, f32::max)),
        },
        Aggregator::Mean => {
            let (s, n) = inside().fold((0.0f64, 0usize), |(s, n), v| (s + f64::from(v), n + 1));
            if n == 0 { 0.0 } else { s / n as f64 }
        }
        Aggregator::P95 => {
            let mut v: Vec<f32> = inside().collect();
            if v.is_empty() {
                return 0.0;
            }
            let r = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            let (_, x, _) = v.select_nth_unstable_by(r, f32::total_cmp);
            f64::from(*x)
        }
        Aggregator::TopKMean { k } => top(k).sum::<f64>() / k as f64,
        Aggregator::NoisyOr { k } => 1.0 - top(k).map(|s| 1.0 - s.clamp(0.0, 1.0)).product::<f64>(),
    }
}

/// Maps a world point to the RSNA localizer form on a DICOM series: the
/// nearest slice along the series' k axis, and the pixel `(x, y)` on it
/// through that slice's own geometry (the inverse of
/// [`DicomSeries::localizer_to_world`] up to the distance to the slice's
/// plane). `None` for a point more than half a slice outside the series.
pub fn world_to_dicom(series: &DicomSeries, w: WorldPoint) -> Option<DicomPoint> {
    let v = series.volume.world_to_voxel(w);
    let entries = series.slices.entries();
    let nk = entries.len();
    if nk == 0 || !v.k.is_finite() || v.k < -0.5 || v.k > nk as f64 - 0.5 {
        return None;
    }
    let k = (v.k.round().max(0.0) as usize).min(nk - 1);
    let e = entries.iter().find(|e| e.k == k)?;
    let lps = w.to_lps();
    let d: Vec<f64> = (0..3).map(|a| lps[a] - e.position_lps[a]).collect();
    let o = &e.orientation_lps;
    let x = (d[0] * o[0] + d[1] * o[1] + d[2] * o[2]) / e.pixel_spacing[1];
    let y = (d[0] * o[3] + d[1] * o[4] + d[2] * o[5]) / e.pixel_spacing[0];
    Some(DicomPoint {
        sop_uid: e.sop_uid.clone(),
        frame: e.frame,
        x,
        y,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aneu_io::Affine;

    fn det(s: f64) -> Detection {
        Detection {
            score: s,
            peak: s,
            patch_score: s,
            second_stage: None,
            rescored: None,
            vessel: None,
            voxel: Voxel::new(0.0, 0.0, 0.0),
            world: WorldPoint::new(0.0, 0.0, 0.0),
            locations: None,
            location: None,
            artery: None,
            territory: None,
            dicom: None,
        }
    }

    /// The territory is the artery that labels the patch's centre, with
    /// the probabilities of the voxels near it only; background alone
    /// gives all locations alike.
    #[test]
    fn territory_reads_the_centre() {
        let (p, classes) = (5usize, 14usize);
        let voxels = p * p * p;
        let mut probs = vec![0f32; classes * voxels];
        // everywhere background, except: left MCA at the centre, right MCA
        // in a corner (outside the radius)
        probs[..voxels].fill(1.0);
        let centre = (2 * p + 2) * p + 2;
        let (left, right) = (
            usize::from(Location::LeftMca.vessel_label()),
            usize::from(Location::RightMca.vessel_label()),
        );
        probs[centre] = 0.2;
        probs[left * voxels + centre] = 0.8;
        probs[0] = 0.0;
        probs[right * voxels] = 1.0;
        let t = territory(&probs, classes, p, TERRITORY_RADIUS);
        assert!((t[Location::LeftMca.index()] - 1.0).abs() < 1e-9, "{t:?}");
        assert_eq!(t[Location::RightMca.index()], 0.0);
        // a reach over the whole patch counts the corner too
        let wide = territory(&probs, classes, p, 2.0 * p as f64);
        assert!((wide[Location::LeftMca.index()] - 0.8 / 1.8).abs() < 1e-6, "{wide:?}");
        assert!((wide[Location::RightMca.index()] - 1.0 / 1.8).abs() < 1e-6, "{wide:?}");
        let none = territory(&vec![0f32; classes * voxels], classes, p, TERRITORY_RADIUS);
        assert!(none.iter().all(|v| (v - 1.0 / 13.0).abs() < 1e-12));
    }

    /// Each location takes the highest score × smoothed probability over
    /// the candidates with locations: with no smoothing, a location the
    /// locator rules out gets 0; with smoothing λ, at least the best
    /// candidate's score × λ / 13; with λ = 1, that for every location.
    #[test]
    fn scan_locations_take_the_best_smoothed_candidate() {
        let mut strong = det(0.8);
        let mut q = [0.0; 13];
        q[Location::LeftMca.index()] = 1.0;
        strong.locations = Some(q);
        let mut weak = det(0.4);
        let mut q = [0.0; 13];
        q[Location::AcomA.index()] = 0.5;
        q[Location::BasilarTip.index()] = 0.5;
        weak.locations = Some(q);
        let c = [strong, weak, det(0.9)]; // the last has no locations
        let (mca, acom, basilar, pcom) = (
            Location::LeftMca.index(),
            Location::AcomA.index(),
            Location::BasilarTip.index(),
            Location::LeftPcomA.index(),
        );
        let raw = scan_locations(&c, 0.9, 0.0);
        assert_eq!((raw[mca], raw[acom], raw[basilar], raw[pcom]), (0.8, 0.2, 0.2, 0.0));
        let half = scan_locations(&c, 0.9, 0.5);
        let floor = 0.8 * 0.5 / 13.0;
        assert!((half[mca] - 0.8 * (0.5 + 0.5 / 13.0)).abs() < 1e-12);
        assert!((half[acom] - 0.4 * (0.25 + 0.5 / 13.0)).abs() < 1e-12);
        assert!((half[pcom] - floor).abs() < 1e-12);
        assert!(
            scan_locations(&c, 0.9, 1.0)
                .iter()
                .all(|v| (v - 0.8 / 13.0).abs() < 1e-12)
        );
        // no candidate with locations: the scan's probability everywhere
        assert_eq!(scan_locations(&[det(0.7)], 0.7, 0.5), [0.7; 13]);
    }

    #[test]
    fn aggregators_match_their_definitions() {
        let map = Array3::from_shape_fn((1, 1, 20), |(_, _, i)| i as f32 / 20.0);
        let mut mask = Volume::new(Array3::from_elem((1, 1, 20), 1u8), Affine::identity()).unwrap();
        mask.data_mut()[[0, 0, 19]] = 0;
        let c = [det(0.9), det(0.5), det(0.2)];
        assert!((aggregate(Aggregator::Max, &map, &mask, &c) - 0.9).abs() < 1e-6);
        assert!((aggregate(Aggregator::Max, &map, &mask, &c[1..]) - 0.5).abs() < 1e-6);
        assert!((aggregate(Aggregator::Max, &map, &mask, &[]) - 0.9).abs() < 1e-6);
        assert!((aggregate(Aggregator::Mean, &map, &mask, &c) - 0.45).abs() < 1e-6);
        // 19 values 0, 0.05, …, 0.9: the 95th percentile by nearest rank is the 19th
        assert!((aggregate(Aggregator::P95, &map, &mask, &c) - 0.9).abs() < 1e-6);
        assert!((aggregate(Aggregator::TopKMean { k: 2 }, &map, &mask, &c) - 0.7).abs() < 1e-12);
        assert!((aggregate(Aggregator::TopKMean { k: 4 }, &map, &mask, &c) - 0.4).abs() < 1e-12);
        let nor = 1.0 - 0.1 * 0.5 * 0.8;
        assert!((aggregate(Aggregator::NoisyOr { k: 5 }, &map, &mask, &c) - nor).abs() < 1e-12);
        assert_eq!(aggregate(Aggregator::NoisyOr { k: 5 }, &map, &mask, &[]), 0.0);
    }

    /// The mirror of a class is the other side's artery for the lateral
    /// locations and the class itself otherwise; mirroring twice is the
    /// identity.
    #[test]
    fn mirrored_classes_swap_the_sides() {
        let m = mirrored_classes(14);
        let label = |l: Location| usize::from(l.vessel_label());
        assert_eq!(m[label(Location::LeftMca)], label(Location::RightMca));
        assert_eq!(m[label(Location::RightPcomA)], label(Location::LeftPcomA));
        assert_eq!(m[label(Location::AcomA)], label(Location::AcomA));
        assert_eq!(m[0], 0);
        assert!((0..14).all(|c| m[m[c]] == c));
        assert_eq!((0..14).filter(|&c| m[c] != c).count(), 10);
    }

    /// A TTA flip of i gives the network exactly the input that training's
    /// left-right flip makes of the same patch (image and coordinates); the
    /// flips of k and j flip every channel.
    #[test]
    fn tta_flips_are_training_flips() {
        use aneu_patch::augment::{RandFlip, RandTransform};
        use aneu_patch::{Patch, PatchSource, PatchSpec};
        use burn::backend::Flex;
        use rand::SeedableRng;
        let n = 4;
        let image = ndarray::Array3::from_shape_fn((n, n, n), |(k, j, i)| (k * 16 + j * 4 + i) as f32);
        let patch = Patch {
            dense: image.clone(),
            image,
            label: 0.0,
            locations: [0.0; 13],
            position: [[0.1, 0.4], [0.2, 0.5], [0.05, 0.35]],
            vessels: None,
            spec: PatchSpec {
                case: 0,
                centre: aneu_io::VoxelIndex::new(0, 0, 0),
                source: PatchSource::Positive,
            },
        };
        let input = |p: &Patch| -> Vec<f32> { p.image.iter().copied().chain(p.position_channels()).collect() };
        let device = Default::default();
        let x = Tensor::<Flex, 1>::from_floats(input(&patch).as_slice(), &device).reshape([1, 4, n, n, n]);
        for axis in 0..3 {
            let mut augmented = patch.clone();
            RandFlip { axis, p: 1.0 }.apply(&mut augmented, &mut rand::rngs::StdRng::seed_from_u64(0));
            let mut f = [false; 3];
            f[axis] = true;
            let got = to_vec(flip_input(x.clone(), f));
            let want = input(&augmented);
            assert!(
                got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
                "axis {axis}: {got:?} against {want:?}"
            );
        }
    }

    #[test]
    fn tta_flip_sets() {
        assert_eq!(Tta::None.flips().len(), 1);
        assert_eq!(Tta::FlipLr.flips(), vec![[false; 3], [false, false, true]]);
        let f = Tta::Flips.flips();
        assert_eq!(f.len(), 8);
        assert_eq!(f.iter().collect::<std::collections::HashSet<_>>().len(), 8);
    }
}

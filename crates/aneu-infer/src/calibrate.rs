//! Threshold calibration on validation scans.

use std::path::Path;

use aneu_bundle::{Locator, Rescorer, Thresholds};
use aneu_io::{Location, WorldPoint};
use aneu_metrics::{f_beta_threshold, threshold_for_sensitivity, youden_threshold};
use aneu_patch::Case;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::labeller::{LABELLER_FEATURES, labeller_class, labeller_classes, vessel_voxels, voxel_features};
use crate::locate::{LOCATOR_CLASSES, LOCATOR_FEATURES, fit_softmax, locator_class, locator_features};
use crate::predict::{Detection, Predictor, ScanPrediction};
use crate::rescore::{FEATURE_NAMES, RescorerOptions, candidate_features, fit_logistic};
use crate::sides::mask_centre;
use crate::{Error, Result};

/// How a threshold is chosen from validation scores.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ThresholdMethod {
    /// The maximum of sensitivity + specificity − 1.
    Youden,
    /// The maximum of F2 (recall weighted four times precision).
    F2,
    /// The highest threshold reaching this sensitivity.
    Sensitivity {
        /// The target in (0, 1].
        target: f64,
    },
}

impl ThresholdMethod {
    fn name(self) -> String {
        match self {
            ThresholdMethod::Youden => "youden".into(),
            ThresholdMethod::F2 => "f2".into(),
            ThresholdMethod::Sensitivity { target } => format!("sensitivity {target}"),
        }
    }

    fn pick(self, labels: &[f64], scores: &[f64]) -> aneu_metrics::Result<f64> {
        Ok(match self {
            ThresholdMethod::Youden => youden_threshold(labels, scores)?.threshold,
            ThresholdMethod::F2 => f_beta_threshold(labels, scores, 2.0)?.threshold,
            ThresholdMethod::Sensitivity { target } => threshold_for_sensitivity(labels, scores, target)?.threshold,
        })
    }
}

/// One validation scan: its truth (Aneurysm Present, then the 13
/// locations) and the prediction.
pub type Labelled<'a> = (bool, [bool; 13], &'a ScanPrediction);

/// Thresholds for `Aneurysm Present` and each location from labelled
/// predictions. A location with one class only in the validation scans
/// keeps the present threshold.
///
/// ```
/// use aneu_infer::{ThresholdMethod, calibrate_thresholds};
/// # use aneu_infer::ScanPrediction;
/// # use aneu_io::{Affine, GridSize, Modality};
/// # fn pred(p: f64) -> ScanPrediction { ScanPrediction {
/// #   series_uid: "s".into(), modality: Modality::Cta, aneurysm_present: p, locations: [p; 13],
/// #   threshold: 0.5, calibrated: false, positive: false, candidates: vec![], seconds: 0.0,
/// #   grid: aneu_preproc::Grid { affine: Affine::identity(), size: GridSize::new(1, 1, 1) } } }
/// let (a, b, c) = (pred(0.2), pred(0.3), pred(0.8));
/// let v = [(false, [false; 13], &a), (false, [false; 13], &b), (true, [false; 13], &c)];
/// let t = calibrate_thresholds(&v, ThresholdMethod::Youden)?;
/// assert!(t.calibrated && t.present > 0.3 && t.present <= 0.8);
/// # Ok::<(), aneu_infer::Error>(())
/// ```
///
/// # Errors
/// [`Error::Metrics`] when the scans hold one class of `Aneurysm Present`
/// only, or a score is not finite.
pub fn calibrate_thresholds(scans: &[Labelled<'_>], method: ThresholdMethod) -> Result<Thresholds> {
    let labels: Vec<f64> = scans.iter().map(|s| f64::from(u8::from(s.0))).collect();
    let scores: Vec<f64> = scans.iter().map(|s| s.2.aneurysm_present).collect();
    let present = method.pick(&labels, &scores)?;
    let locations = (0..13)
        .map(|l| {
            let ll: Vec<f64> = scans.iter().map(|s| f64::from(u8::from(s.1[l]))).collect();
            let ls: Vec<f64> = scans.iter().map(|s| s.2.locations[l]).collect();
            match method.pick(&ll, &ls) {
                Ok(t) => Ok(t),
                Err(aneu_metrics::Error::SingleClass { .. }) => Ok(present),
                Err(e) => Err(Error::Metrics(e)),
            }
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(Thresholds {
        calibrated: true,
        method: Some(method.name()),
        present,
        locations: Some(locations),
        window_roi: None,
        tta: None,
        rescorer: None,
        locator: None,
        artery_labeller: None,
    })
}

/// Calibrates the predictor's thresholds on the validation series of its
/// first bundle's split (its second stage's, for a two-stage bundle), read
/// from `preprocessed` (the folder training read), and returns them; the
/// predictor then uses them. Validation series that are not in that folder
/// (a split spanning two datasets) are left out with a warning that counts
/// them. The thresholds keep the predictor's rescorer, locator and artery
/// labeller, if it has them (they hold for their outputs). They record the window edge and
/// the test-time augmentation they were chosen with
/// ([`Thresholds::window_roi`], [`Thresholds::tta`]), which inference then
/// uses by default. Store them with
/// [`aneu_bundle::ModelBundle::write_thresholds`].
///
/// # Errors
/// [`Error::InvalidConfig`] when the split has no validation series, or
/// none in `preprocessed`;
/// reading and model errors; as [`calibrate_thresholds`].
pub fn calibrate_on_validation<B: Backend>(
    predictor: &mut Predictor<B>,
    preprocessed: impl AsRef<Path>,
    method: ThresholdMethod,
) -> Result<Thresholds> {
    let dir = preprocessed.as_ref();
    // a two-stage bundle: its second stage's split extends the first
    // stage's, and its validation scans are unseen by both stages
    let val: Vec<String> = predictor
        .bundles()
        .next()
        .map(|b| b.second_stage.as_deref().map_or(&b.split, |s| &s.split).val.clone())
        .unwrap_or_default();
    if val.is_empty() {
        return Err(Error::InvalidConfig(
            "the bundle's split has no validation series".into(),
        ));
    }
    // a split may span several datasets (a second stage trained on fresh
    // scans): calibrate on those in this folder, and say what is left out
    let (val, elsewhere): (Vec<String>, Vec<String>) = val.into_iter().partition(|u| dir.join(u).is_dir());
    if val.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "none of the bundle's {} validation series is in {}",
            elsewhere.len(),
            dir.display()
        )));
    }
    if !elsewhere.is_empty() {
        tracing::warn!(
            used = val.len(),
            elsewhere = elsewhere.len(),
            "validation series of the split that are not in {}: calibrating on the others",
            dir.display()
        );
    }
    calibrate_on_series(predictor, dir, &val, method)
}

/// [`calibrate_on_validation`] on the named series of `preprocessed`
/// instead of the split's validation series: for scans that neither stage
/// trained on, such as a fresh set of phantoms. The thresholds keep the
/// predictor's rescorer, locator and artery labeller, if it has them (they
/// hold for their outputs).
///
/// # Errors
/// [`Error::InvalidConfig`] for no series; reading and model errors
/// (naming the series); as [`calibrate_thresholds`].
pub fn calibrate_on_series<B: Backend>(
    predictor: &mut Predictor<B>,
    preprocessed: impl AsRef<Path>,
    series: &[String],
    method: ThresholdMethod,
) -> Result<Thresholds> {
    if series.is_empty() {
        return Err(Error::InvalidConfig("no series to calibrate on".into()));
    }
    let dir = preprocessed.as_ref();
    let mut preds = Vec::with_capacity(series.len());
    let mut truth = Vec::with_capacity(series.len());
    for uid in series {
        let p = aneu_preproc::read_preprocessed(dir.join(uid))?;
        let present = p
            .meta
            .labels
            .as_ref()
            .map_or(!p.meta.annotations.is_empty(), |l| l.aneurysm_present);
        let locs = p.meta.labels.as_ref().map_or([false; 13], |l| l.locations);
        let out = predictor.predict_preprocessed(p, None).map_err(|e| Error::Series {
            series: uid.clone(),
            source: Box::new(e),
        })?;
        truth.push((present, locs));
        preds.push(out.scan);
    }
    let labelled: Vec<Labelled<'_>> = truth.iter().zip(&preds).map(|((a, b), p)| (*a, *b, p)).collect();
    let mut t = calibrate_thresholds(&labelled, method)?;
    t.window_roi = predictor.window_roi();
    t.tta = Some(predictor.tta());
    t.rescorer = predictor.thresholds().rescorer.clone();
    t.locator = predictor.thresholds().locator.clone();
    t.artery_labeller = predictor.thresholds().artery_labeller.clone();
    predictor.set_thresholds(t.clone());
    Ok(t)
}

/// Fits a candidate [`Rescorer`] on the named series of `preprocessed`
/// (their localizers the truth): the predictor, without a rescorer, runs
/// over each; every candidate is labelled a hit when it lies within
/// [`RescorerOptions::hit_radius_mm`] of an aneurysm, and its
/// [`FEATURE_NAMES`] vector goes into [`fit_logistic`]. The predictor
/// then uses the rescorer; its thresholds are **not** recalibrated for
/// the new scores, so run [`calibrate_on_series`] (or
/// [`calibrate_on_validation`]) next. Fit it on scans neither stage
/// trained on: on their own training scans the stages' scores are
/// overconfident. On an error the predictor keeps its thresholds.
///
/// # Errors
/// [`Error::InvalidConfig`] for no series, a model without a vessel head
/// (the features need one), or candidates of one class only; reading and
/// model errors (naming the series).
pub fn fit_rescorer<B: Backend>(
    predictor: &mut Predictor<B>,
    preprocessed: impl AsRef<Path>,
    series: &[String],
    opts: &RescorerOptions,
) -> Result<Rescorer> {
    if series.is_empty() {
        return Err(Error::InvalidConfig("no series to fit the rescorer on".into()));
    }
    let before = predictor.thresholds().clone();
    let mut unscored = before.clone();
    unscored.rescorer = None;
    predictor.set_thresholds(unscored.clone());
    match labelled_features(predictor, preprocessed.as_ref(), series, opts)
        .and_then(|(x, y)| fit_logistic(&FEATURE_NAMES, &x, &y, opts.l2))
    {
        Ok(r) => {
            unscored.rescorer = Some(r.clone());
            predictor.set_thresholds(unscored);
            Ok(r)
        }
        Err(e) => {
            predictor.set_thresholds(before);
            Err(e)
        }
    }
}

/// Fits a candidate [`Locator`] on the named series of `preprocessed`
/// (their localizers the truth): the predictor runs over each; every
/// candidate within [`RescorerOptions::hit_radius_mm`] of an aneurysm is
/// labelled with the artery of the nearest one's location
/// ([`locator_class`]), and its [`LOCATOR_FEATURES`] vector (its
/// territory and its offset from the brain mask's centre) goes into
/// [`fit_softmax`] with the L2 penalty [`RescorerOptions::l2`]. The
/// predictor then names the candidates' locations with it; as after
/// [`fit_rescorer`], recalibrate the thresholds next (the location
/// thresholds hold for the locator's probabilities). Fit it on scans the
/// networks did not train on. On an error the predictor keeps its
/// thresholds. A series with an empty mask (no centre to measure from) is
/// left out with a warning naming it.
///
/// # Errors
/// [`Error::InvalidConfig`] for no series, a model without a vessel head
/// (the territories need one), or hits on fewer than two arteries; a
/// localizer whose location is not one of the 13; reading and model
/// errors (naming the series).
pub fn fit_locator<B: Backend>(
    predictor: &mut Predictor<B>,
    preprocessed: impl AsRef<Path>,
    series: &[String],
    opts: &RescorerOptions,
) -> Result<Locator> {
    if series.is_empty() {
        return Err(Error::InvalidConfig("no series to fit the locator on".into()));
    }
    let labelled = labelled_candidates(predictor, preprocessed.as_ref(), series)?;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (uid, s) in series.iter().zip(&labelled) {
        let Some(centre) = s.centre else {
            // no brain mask, no position: the series cannot teach the
            // locator, and inference gives it the territory's locations
            tracing::warn!(series = %uid, "an empty mask: left out of the locator's fit");
            continue;
        };
        for c in &s.candidates {
            let nearest = s
                .aneurysms
                .iter()
                .map(|(w, l)| (w.distance(&c.world), *l))
                .filter(|(d, _)| *d <= opts.hit_radius_mm)
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let Some((_, location)) = nearest else { continue };
            let t = c.territory.ok_or_else(|| {
                Error::InvalidConfig("the locator reads the vessel head, which no model of the bundle has".into())
            })?;
            x.push(locator_features(&t, c.world, centre).to_vec());
            y.push(locator_class(location));
        }
    }
    let classes = LOCATOR_CLASSES.map(Location::name);
    let l = fit_softmax(&LOCATOR_FEATURES, &classes, &x, &y, opts.l2)?;
    let mut t = predictor.thresholds().clone();
    t.locator = Some(l.clone());
    predictor.set_thresholds(t);
    Ok(l)
}

/// How many vessel voxels of each series an artery labeller's fit reads
/// ([`fit_artery_labeller`]): evenly spread over the series' vessel
/// voxels in index order, all of them when there are fewer.
pub const LABELLER_VOXELS_PER_SERIES: usize = 400;

/// Fits an artery labeller (docs: [`crate::label_arteries`]) on the named
/// series of `preprocessed`, their vessel segmentations the truth: the
/// predictor's vessel heads run over each ([`Predictor::vessel_logits`]);
/// up to [`LABELLER_VOXELS_PER_SERIES`] of its vessel voxels (those whose
/// most probable class is not background) are labelled with the
/// segmentation's artery there ([`labeller_class`]: background, or the
/// artery, either side), and their [`LABELLER_FEATURES`] vectors go into
/// [`fit_softmax`] with the L2 penalty [`RescorerOptions::l2`]. The
/// predictor then makes its artery maps with it. Thresholds do not depend
/// on it. A series without a segmentation or with an empty mask (no
/// centre to measure from) is left out with a warning naming it.
///
/// # Errors
/// [`Error::InvalidConfig`] for no series, a model without a dense vessel
/// head, a segmentation on another grid than its image, or rows of fewer
/// than two classes (no segmented series); reading and model errors
/// (naming the series).
pub fn fit_artery_labeller<B: Backend>(
    predictor: &mut Predictor<B>,
    preprocessed: impl AsRef<Path>,
    series: &[String],
    opts: &RescorerOptions,
) -> Result<Locator> {
    if series.is_empty() {
        return Err(Error::InvalidConfig("no series to fit the artery labeller on".into()));
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for uid in series {
        let series_err = |e: Error| Error::Series {
            series: uid.clone(),
            source: Box::new(e),
        };
        let p = aneu_preproc::read_preprocessed(preprocessed.as_ref().join(uid))?;
        let Some(truth) = p.vessels else {
            tracing::warn!(series = %uid, "no vessel segmentation: left out of the artery labeller's fit");
            continue;
        };
        // read_preprocessed checked the grids; a mismatch is an error, not
        // an index out of bounds
        if truth.size() != p.image.size() {
            return Err(series_err(Error::InvalidConfig(
                "its vessel segmentation lies on another grid than its image".into(),
            )));
        }
        let affine = *p.image.affine();
        let case = Case::new(p.meta.series_uid, p.image, p.mask, vec![]).map_err(|e| series_err(e.into()))?;
        let Some(centre) = mask_centre(&case.mask) else {
            tracing::warn!(series = %uid, "an empty mask: left out of the artery labeller's fit");
            continue;
        };
        let logits = predictor.vessel_logits(&case).map_err(series_err)?.ok_or_else(|| {
            Error::InvalidConfig("the artery labeller reads the vessel head, which no model of the bundle has".into())
        })?;
        let voxels = vessel_voxels(&logits);
        let step = voxels.len().div_ceil(LABELLER_VOXELS_PER_SERIES).max(1);
        for at in voxels.into_iter().step_by(step) {
            x.push(voxel_features(&logits, at, &affine, centre).to_vec());
            y.push(labeller_class(truth.data()[at]));
        }
    }
    let l = fit_softmax(&LABELLER_FEATURES, &labeller_classes(), &x, &y, opts.l2)?;
    let mut t = predictor.thresholds().clone();
    t.artery_labeller = Some(l.clone());
    predictor.set_thresholds(t);
    Ok(l)
}

/// One series' candidates, with the truth they are labelled against.
struct SeriesCandidates {
    /// The candidates ([`Predictor::detect`]).
    candidates: Vec<Detection>,
    /// Each localizer's point and location.
    aneurysms: Vec<(WorldPoint, Location)>,
    /// The centre of the series' mask ([`mask_centre`]).
    centre: Option<WorldPoint>,
}

/// The predictor's candidates on each named series of `dir`, with the
/// series' localizers.
fn labelled_candidates<B: Backend>(
    predictor: &Predictor<B>,
    dir: &Path,
    series: &[String],
) -> Result<Vec<SeriesCandidates>> {
    series
        .iter()
        .map(|uid| {
            let series_err = |e: Error| Error::Series {
                series: uid.clone(),
                source: Box::new(e),
            };
            let p = aneu_preproc::read_preprocessed(dir.join(uid))?;
            let aneurysms = p
                .meta
                .annotations
                .iter()
                .map(|a| {
                    let l = a.location.parse::<Location>().map_err(Error::InvalidConfig);
                    l.map(|l| (a.world, l)).map_err(series_err)
                })
                .collect::<Result<Vec<_>>>()?;
            let case = Case::new(p.meta.series_uid, p.image, p.mask, vec![]).map_err(|e| series_err(e.into()))?;
            let centre = mask_centre(&case.mask);
            let (_, candidates) = predictor.detect(&case, None).map_err(series_err)?;
            Ok(SeriesCandidates {
                candidates,
                aneurysms,
                centre,
            })
        })
        .collect()
}

/// Every candidate's [`FEATURE_NAMES`] vector on the named series, and
/// whether it hits an aneurysm ([`fit_rescorer`]).
fn labelled_features<B: Backend>(
    predictor: &Predictor<B>,
    dir: &Path,
    series: &[String],
    opts: &RescorerOptions,
) -> Result<(Vec<Vec<f64>>, Vec<bool>)> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for s in labelled_candidates(predictor, dir, series)? {
        for c in &s.candidates {
            let f = candidate_features(c, c.score).ok_or_else(|| {
                Error::InvalidConfig("the rescorer reads the vessel head, which no model of the bundle has".into())
            })?;
            x.push(f.to_vec());
            y.push(
                s.aneurysms
                    .iter()
                    .any(|(t, _)| t.distance(&c.world) <= opts.hit_radius_mm),
            );
        }
    }
    Ok((x, y))
}

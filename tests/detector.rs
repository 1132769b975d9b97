//! The guard of the shipped detector (`models/unet-vessels-mra-cta`): on
//! fresh phantoms from a seed that no training and no benchmark used, it
//! must still find aneurysms and rank scans.
//!
//! The shipped model runs flip TTA by default (its calibration recorded
//! it), so the guard does too; the figures without TTA are in brackets.
//! The first bound is on the FROC sensitivity at 1 false positive per
//! scan, which cannot be met by luck: a candidate hits an aneurysm only
//! within its radius (2–6 mm) of the centre, so a broken model or chain
//! (random or misplaced candidates) hits next to nothing. The model's
//! benchmark figure is 0.61 [0.50, 0.71] (120 scans;
//! models/unet-vessels-mra-cta/README.md; 0.60 without TTA); on the
//! guard's 24 scans (22 aneurysms) it is 0.77 (17 hits; 0.68 without TTA,
//! 0.64 before the rescorer), and the bound, 0.45, asks for 10: below the
//! benchmark's interval, for the spread of a small set, and far above a
//! broken chain's zero.
//! The second bound is on the scan AUC: 0.87 [0.80, 0.93] on the
//! benchmark (0.81 without TTA), 0.90 on the guard's 24 scans (15
//! positive; 0.95 without TTA, 0.83 before the rescorer); the bound, 0.65,
//! lies below the benchmark's interval. Alone it could be met by a model
//! that ranks at random (about one time in ten on 24 scans), so it guards
//! against a model that ranks scans worse, together with the first bound.
//! The third bound is on the median localisation error of the hits, which
//! the candidates' plateau refinement (`candidates.refine_mm`) sets: 0.64 mm
//! [0.56, 0.82] on the benchmark (0.75 without TTA), 0.57 mm [0.49, 1.24]
//! on the guard's scans (0.91 without TTA), where the refinement before it
//! gave 1.59 and 1.68 mm. The bound, 1.5 mm, lies above both intervals and
//! fails if candidates go back to wherever the map's maximum fell.
//! The last two bounds are on the vessel head's artery map against the
//! phantoms' vessel segmentations, which the shipped artery labeller
//! names: the vessel Dice (any artery against background; 0.75 [0.74,
//! 0.76] on the benchmark, 0.75 on the guard's scans; 0.73 on both without
//! the labeller) and the artery Dice (the mean over the arteries a scan
//! holds): 0.57 [0.56, 0.58] on the benchmark, 0.57 [0.55, 0.59] on the
//! guard's scans; without the labeller,
//! with the sides from the midline, 0.43 [0.42, 0.44] and 0.42 [0.41,
//! 0.44]; with the network's sides 0.25 on both. A map on a transposed or
//! shifted grid loses the first; one without the labeller, or with its
//! sides swapped, loses the second (10 of the 13 arteries are lateral):
//! its bound, 0.48, lies below both intervals and above 0.44.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use aneu::benchmark::{BenchmarkConfig, run_benchmark};
use aneu::infer::{InferConfig, SlidingWindow};
use aneu::io::Modality;
use aneu::models::burn::backend::Flex;

/// Lowest FROC sensitivity at 1 false positive per scan.
const MIN_SENSITIVITY_AT_1FP: f64 = 0.45;
/// Lowest scan AUC.
const MIN_SCAN_AUC: f64 = 0.65;
/// Highest median localisation error of the hits (mm).
const MAX_MEDIAN_ERROR_MM: f64 = 1.5;
/// Lowest vessel Dice of the artery map.
const MIN_VESSEL_DICE: f64 = 0.6;
/// Lowest artery Dice of the artery map.
const MIN_ARTERY_DICE: f64 = 0.48;

#[test]
fn the_shipped_detector_detects_on_fresh_phantoms() {
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/unet-vessels-mra-cta");
    let out = tempfile::tempdir().unwrap();
    let config = BenchmarkConfig {
        n: 12,
        // the guard's own seeds: not a training seed (303 and 404; 101
        // for the models before), not the benchmark's (9 000 001
        // onwards), not the demo's (2024)
        seed: 7_700_001,
        // more aneurysms for the sensitivity: about 18 positive scans
        positive_rate: 0.75,
        modalities: vec![Modality::Mra, Modality::Cta],
        infer: InferConfig {
            window: SlidingWindow::default().with_roi(48).with_overlap(0.25),
            ..Default::default()
        },
        ..Default::default()
    };
    let r = run_benchmark::<Flex>(&[bundle], out.path(), &config, &Default::default(), &|_| {}).unwrap();
    println!("{}", r.to_markdown());
    let m = &r.models[0];
    assert!(m.failed.is_empty(), "{:?}", m.failed);
    let all = &m.rows.last().unwrap().figures;
    assert_eq!(all.scans, 24);
    let auc = all.scan_auc.as_ref().expect("positive and negative scans").estimate;
    assert!(auc >= MIN_SCAN_AUC, "scan AUC {auc:.3} < {MIN_SCAN_AUC}");
    assert!(all.aneurysms >= 10, "{} aneurysms", all.aneurysms);
    let s = all.sensitivity(1.0).expect("aneurysms").estimate;
    assert!(
        s >= MIN_SENSITIVITY_AT_1FP,
        "sensitivity at 1 FP per scan {s:.2} < {MIN_SENSITIVITY_AT_1FP}"
    );
    let e = all.median_localisation_error_mm.expect("hits").estimate;
    assert!(e <= MAX_MEDIAN_ERROR_MM, "median localisation error {e:.2} mm");
    assert_eq!(
        all.segmented, 24,
        "every phantom has a segmentation and the bundle a vessel head"
    );
    let v = all.vessel_dice.expect("segmented scans").estimate;
    assert!(v >= MIN_VESSEL_DICE, "vessel Dice {v:.3} < {MIN_VESSEL_DICE}");
    let a = all.artery_dice.expect("segmented scans").estimate;
    assert!(a >= MIN_ARTERY_DICE, "artery Dice {a:.3} < {MIN_ARTERY_DICE}");
}

/// The shipped bundle's predictor with `config`, on 48³ windows at overlap
/// 0.25 (those of its calibration and benchmark).
fn shipped(config: InferConfig) -> aneu::infer::Predictor<Flex> {
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/unet-vessels-mra-cta");
    let config = InferConfig {
        window: SlidingWindow::default().with_roi(48).with_overlap(0.25),
        ..config
    };
    aneu::infer::Predictor::<Flex>::from_dirs(&[&bundle], config, &Default::default()).unwrap()
}

/// Phantoms of `config`, preprocessed with `p`'s config: the folder that
/// holds them (removed when dropped), the preprocessed folder and its
/// series, every one of them preprocessed.
fn preprocessed_phantoms(
    config: &aneu::phantom::PhantomConfig,
    p: &aneu::infer::Predictor<Flex>,
) -> (tempfile::TempDir, std::path::PathBuf, Vec<String>) {
    use aneu::preproc::{Shard, preprocess_dataset};
    let d = tempfile::tempdir().unwrap();
    let (raw, pre) = (d.path().join("raw"), d.path().join("pre"));
    aneu::phantom::generate(config, &raw).unwrap();
    let s = preprocess_dataset(&raw, &pre, p.preprocess_config(), Shard::default(), &|_| {}).unwrap();
    assert_eq!(s.failed, 0);
    let series: Vec<String> = aneu::preproc::list_preprocessed(&pre)
        .unwrap()
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(series.len(), config.n);
    (d, pre, series)
}

/// The candidate rescorer and locator on the shipped bundle, fitted on
/// fresh phantoms. The rescorer, fitted on every candidate the detector
/// proposes there, reads the features inference computes, and once fitted
/// the predictor scores every candidate with it (the vessel features each
/// candidate carries, through the fitted logistic function). The locator,
/// fitted on the candidates that hit an aneurysm, then names every
/// candidate's location: its 13 probabilities are the locator's on the
/// candidate's territory and its offset from the brain mask's centre, put
/// on the candidate's side of the midline, and the scan's locations follow
/// from them (pulled towards 1/13 by the config's `location_smoothing`);
/// on its own hits, it names at least as many locations right as the
/// territory does. A calibration keeps both; a failed fit leaves
/// the predictor as it was.
#[test]
fn a_fitted_rescorer_and_locator_take_over_the_candidates() {
    use aneu::infer::{
        FEATURE_NAMES, LOCATOR_CLASSES, LOCATOR_FEATURES, RescorerOptions, ThresholdMethod, calibrate_on_series,
        candidate_features, fit_locator, fit_rescorer, locate, mask_centre,
    };
    use aneu::io::Location;
    use aneu::phantom::{PhantomConfig, SizePreset};

    let mut p = shipped(InferConfig::default());
    // the rescorer test's own seed (see the guard's list above)
    let (_d, pre, series) = preprocessed_phantoms(
        &PhantomConfig::new(6, 7_800_001, SizePreset::Small)
            .with_positive_rate(0.75)
            .with_modalities(&[Modality::Mra, Modality::Cta]),
        &p,
    );
    let r = fit_rescorer(&mut p, &pre, &series, &RescorerOptions::default()).unwrap();
    assert_eq!(r.features, FEATURE_NAMES.map(String::from).to_vec());
    assert!(r.positives >= 1 && r.positives < r.fitted_on, "{r:?}");
    assert_eq!(p.thresholds().rescorer.as_ref(), Some(&r));
    let l = fit_locator(&mut p, &pre, &series, &RescorerOptions::default()).unwrap();
    assert_eq!(l.features, LOCATOR_FEATURES.map(String::from).to_vec());
    assert_eq!(l.classes, LOCATOR_CLASSES.map(|c| c.name().to_string()).to_vec());
    assert!(l.fitted_on >= 2, "{l:?}");
    assert_eq!(p.thresholds().locator.as_ref(), Some(&l));
    assert_eq!(p.thresholds().rescorer.as_ref(), Some(&r));
    let mut seen = 0;
    let (mut hits, mut by_locator, mut by_territory) = (0, 0, 0);
    for uid in &series {
        let pp = aneu::preproc::read_preprocessed(pre.join(uid)).unwrap();
        let centre = mask_centre(&pp.mask).unwrap();
        let truth: Vec<(aneu::io::WorldPoint, Location)> = pp
            .meta
            .annotations
            .iter()
            .map(|a| (a.world, a.location.parse().unwrap()))
            .collect();
        let out = p.predict_preprocessed(pp, None).unwrap();
        for c in &out.scan.candidates {
            let t = c.territory.expect("a vessel head gives every candidate its territory");
            let q = c.locations.unwrap();
            assert_eq!(q, locate(&l, &t, c.world, centre));
            assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{q:?}");
            let right = c.world.x > centre.x;
            for loc in Location::ALL.into_iter().filter(|l| l.is_lateral()) {
                // the other side's artery gets nothing
                if loc.on_side(right) != loc {
                    assert_eq!(q[loc.index()], 0.0, "{loc:?} on the other side");
                }
            }
            // the first of the most probable, as inference takes it
            let best = |v: &[f64; 13]| Location::ALL[(0..13).fold(0, |b, n| if v[n] > v[b] { n } else { b })];
            assert_eq!(c.location, Some(best(&q)));
            assert_eq!(c.artery, Some(best(&t)));
            if let Some((_, at)) = truth.iter().find(|(w, _)| w.distance(&c.world) <= 3.0) {
                hits += 1;
                by_locator += usize::from(best(&q) == *at);
                by_territory += usize::from(best(&t) == *at);
            }
            let v = c
                .vessel
                .expect("a vessel head gives every candidate its vessel features");
            assert!(
                (0.0..=1.0).contains(&v.artery_probability) && v.vessel_radius_mm >= 0.0,
                "{v:?}"
            );
            // the score before rescoring is the second stage's
            let x = candidate_features(c, c.second_stage.unwrap()).unwrap();
            assert_eq!(c.rescored, Some(c.score));
            assert!((c.score - r.probability(&x)).abs() < 1e-12);
            seen += 1;
        }
        if let Some(top) = out.scan.candidates.first() {
            assert_eq!(out.scan.aneurysm_present, top.score);
        }
        // the scan's locations from the candidates', each pulled towards
        // 1/13 by the config's smoothing (a scan without candidates
        // reports Aneurysm Present for each)
        let smoothing = p.config().location_smoothing;
        for loc in (0..13).filter(|_| !out.scan.candidates.is_empty()) {
            let m = out
                .scan
                .candidates
                .iter()
                .map(|c| c.score * ((1.0 - smoothing) * c.locations.unwrap()[loc] + smoothing / 13.0))
                .fold(0.0, f64::max);
            assert_eq!(out.scan.locations[loc], m);
            assert!(m >= out.scan.aneurysm_present * smoothing / 13.0);
        }
    }
    assert_eq!(seen, r.fitted_on, "the candidates it was fitted on, rescored");
    assert_eq!(hits, l.fitted_on, "the hits it was fitted on, located");
    assert!(
        by_locator >= by_territory,
        "the locator names {by_locator} of {hits} hits right, the territory {by_territory}"
    );
    let t = calibrate_on_series(&mut p, &pre, &series, ThresholdMethod::Youden).unwrap();
    assert_eq!(t.rescorer.as_ref(), Some(&r));
    assert_eq!(t.locator.as_ref(), Some(&l));
    // a series that is not there: an error naming it, and the predictor
    // keeps its rescorer
    let e = fit_rescorer(&mut p, &pre, &["9.9.9.missing".into()], &RescorerOptions::default()).unwrap_err();
    assert!(e.to_string().contains("9.9.9.missing"), "{e}");
    assert_eq!(p.thresholds().rescorer.as_ref(), Some(&r));
    let e = fit_locator(&mut p, &pre, &["9.9.9.missing".into()], &RescorerOptions::default()).unwrap_err();
    assert!(e.to_string().contains("9.9.9.missing"), "{e}");
    assert_eq!(p.thresholds().locator.as_ref(), Some(&l));
}

/// The artery labeller on the shipped bundle, fitted on fresh phantoms'
/// vessel segmentations: it reads the features and names the classes
/// inference computes, once fitted the predictor makes its artery maps
/// with it (each map is `label_arteries` of the vessel head's blended
/// logits), and on the series it was fitted on those maps score a higher
/// artery Dice than the vessel head's own labels (with the midline's
/// sides). A series that is not there is an error naming it, and the
/// predictor keeps its labeller.
#[test]
fn a_fitted_artery_labeller_makes_the_artery_map() {
    use aneu::infer::{
        LABELLER_FEATURES, Predictor, RescorerOptions, fit_artery_labeller, label_arteries, labeller_classes,
        mask_centre,
    };
    use aneu::metrics::LabelOverlap;
    use aneu::patch::Case;
    use aneu::phantom::{PhantomConfig, SizePreset};
    use aneu::preproc::read_preprocessed;

    let mut p = shipped(InferConfig {
        arteries: true,
        tta: Some(aneu::infer::Tta::None),
        ..Default::default()
    });
    let mut t = p.thresholds().clone();
    t.artery_labeller = None;
    p.set_thresholds(t);
    // this test's own seed (not a training, benchmark or guard seed)
    let (_d, pre, series) = preprocessed_phantoms(
        &PhantomConfig::new(4, 7_600_001, SizePreset::Small).with_modalities(&[Modality::Mra, Modality::Cta]),
        &p,
    );
    // the mean artery Dice of the predictor's maps over the series
    let artery_dice = |p: &Predictor<Flex>| -> f64 {
        let dice: f64 = series
            .iter()
            .map(|uid| {
                let pp = read_preprocessed(pre.join(uid)).unwrap();
                let truth = pp.vessels.clone().expect("phantoms have vessel labels");
                let map = p.predict_preprocessed(pp, None).unwrap().arteries.unwrap();
                LabelOverlap::of(truth.as_slice(), map.as_slice())
                    .unwrap()
                    .mean_dice()
                    .unwrap()
            })
            .sum();
        dice / series.len() as f64
    };
    let before = artery_dice(&p);
    let l = fit_artery_labeller(&mut p, &pre, &series, &RescorerOptions::default()).unwrap();
    assert_eq!(l.features, LABELLER_FEATURES.map(String::from).to_vec());
    assert_eq!(l.classes, labeller_classes().map(String::from).to_vec());
    assert!(l.fitted_on > 400 && l.fitted_on <= 4 * 400, "{}", l.fitted_on);
    assert_eq!(p.thresholds().artery_labeller.as_ref(), Some(&l));
    let after = artery_dice(&p);
    assert!(
        after > before,
        "artery Dice {after:.3} with the labeller, {before:.3} without"
    );
    let pp = read_preprocessed(pre.join(&series[0])).unwrap();
    let case = Case::new(pp.meta.series_uid.clone(), pp.image.clone(), pp.mask.clone(), vec![]).unwrap();
    let logits = p.vessel_logits(&case).unwrap().unwrap();
    let want = label_arteries(&l, &logits, pp.image.affine(), mask_centre(&pp.mask).unwrap());
    let got = p.predict_preprocessed(pp, None).unwrap().arteries.unwrap();
    assert_eq!(got.data(), want.view());
    let e = fit_artery_labeller(&mut p, &pre, &["9.9.9.missing".into()], &RescorerOptions::default()).unwrap_err();
    assert!(e.to_string().contains("9.9.9.missing"), "{e}");
    assert_eq!(p.thresholds().artery_labeller.as_ref(), Some(&l));
}

/// The artery map of the shipped bundle: asking for it changes neither
/// the probability map nor the candidates; it lies on the probability
/// map's grid with labels 0 to 13; and left–right flip TTA, whose maps are
/// flipped back, finds the same vessels and the same midline arteries as
/// the plain map (a flip not undone would move every vessel). The network
/// of this model was trained with an augmentation that hid the side and
/// names left and right at chance (docs/benchmarks.md), so the lateral
/// arteries take their side from the brain mask's midline
/// (`Sides::Midline`, the default): against the phantom's reference
/// labels, not one voxel of either ICA or MCA may be named as its other
/// side's artery (with the network's sides, 870 of the left infraclinoid
/// ICA's are; a midline on the wrong side, or a flipped sign, names them
/// all so); the unit test `mirrored_classes_swap_the_sides` checks the
/// network's mirror.
#[test]
fn the_artery_map_survives_mirroring() {
    use aneu::infer::{Predictor, Tta};
    use aneu::io::Location;
    use aneu::metrics::LabelOverlap;
    use aneu::phantom::{PhantomConfig, SizePreset, generate};

    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/unet-vessels-mra-cta");
    let d = tempfile::tempdir().unwrap();
    // this test's own seed (not a training, benchmark or guard seed)
    generate(
        &PhantomConfig::new(1, 7_900_001, SizePreset::Small).with_modalities(&[Modality::Mra]),
        d.path(),
    )
    .unwrap();
    let series = std::fs::read_dir(d.path().join("series"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let config = |arteries: bool, tta: Tta| InferConfig {
        window: SlidingWindow::default().with_roi(48).with_overlap(0.25),
        arteries,
        tta: Some(tta),
        ..Default::default()
    };
    let predict = |c: InferConfig| {
        Predictor::<Flex>::from_dirs(&[&bundle], c, &Default::default())
            .unwrap()
            .predict_dir(&series)
            .unwrap()
    };
    let plain = predict(config(false, Tta::None));
    let with = predict(config(true, Tta::None));
    assert!(plain.arteries.is_none());
    assert_eq!(with.probability, plain.probability);
    assert_eq!(with.scan.candidates, plain.scan.candidates);
    let a = with.arteries.unwrap();
    assert_eq!(
        (a.affine(), a.size()),
        (plain.probability.affine(), plain.probability.size())
    );
    assert!(a.as_slice().iter().all(|&l| l <= 13));
    assert!(
        a.as_slice().iter().filter(|&&l| l != 0).count() > 1000,
        "the head labels arteries"
    );
    let ds = aneu::io::RsnaDataset::open(d.path()).unwrap();
    let uid = ds.series_uids().next().unwrap().to_string();
    let reference = ds.read_vessel_labels(&uid).unwrap().unwrap();
    let reference = aneu::preproc::labels_on_grid(&reference, a.affine(), a.size()).unwrap();
    let truth = LabelOverlap::of(reference.as_slice(), a.as_slice()).unwrap();
    let mut named = 0;
    for artery in [
        Location::LeftInfraclinoidIca,
        Location::RightInfraclinoidIca,
        Location::LeftSupraclinoidIca,
        Location::RightSupraclinoidIca,
        Location::LeftMca,
        Location::RightMca,
    ] {
        let row = &truth.confusion[&artery.vessel_label()];
        let other = row.get(&artery.mirrored().vessel_label()).copied().unwrap_or(0);
        assert_eq!(other, 0, "{artery}: {other} voxels named as the other side: {row:?}");
        named += row.get(&artery.vessel_label()).copied().unwrap_or(0);
    }
    assert!(named > 200, "{named} ICA and MCA voxels named right");
    let mirrored = predict(config(true, Tta::FlipLr)).arteries.unwrap();
    let o = LabelOverlap::of(a.as_slice(), mirrored.as_slice()).unwrap();
    let vessels = o.foreground_dice().unwrap();
    assert!(vessels > 0.9, "plain and TTA vessels agree on Dice {vessels:.3}: {o:?}");
    for midline in [Location::OtherPosterior, Location::BasilarTip] {
        let d = o.dice(midline.vessel_label()).unwrap();
        assert!(d > 0.8, "{midline:?}: plain and TTA agree on Dice {d:.3}: {o:?}");
    }
}

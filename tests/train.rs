//! aneu-train end to end on preprocessed phantoms, on Flex: learning,
//! determinism, resumption, hard negatives, bundles and bad configs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aneu::bundle::{BundleManifest, ModelBundle, Thresholds};
use aneu::infer::Predictor;
use aneu::models::burn::backend::{Autodiff, Flex};
use aneu::phantom::{PhantomConfig, SizePreset, generate};
use aneu::preproc::{PreprocessConfig, Shard, preprocess_dataset};
use aneu::train::*;

type A = Autodiff<Flex>;

/// Twenty `small` phantoms (60 % positive, MRA and CTA), preprocessed
/// once for all tests of this binary.
fn dataset() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        let pre = dir.path().join("pre");
        generate(
            &PhantomConfig::new(20, 2024, SizePreset::Small)
                .with_positive_rate(0.6)
                .with_modalities(&[aneu::io::Modality::Cta, aneu::io::Modality::Mra]),
            &raw,
        )
        .unwrap();
        let s = preprocess_dataset(&raw, &pre, &PreprocessConfig::default(), Shard::default(), &|_| {}).unwrap();
        assert_eq!(s.failed, 0);
        (dir, pre)
    })
    .1
}

/// The phantoms' ground truth gives each finding its aneurysm's radius:
/// per series, the findings' radii are the truth's radii; a folder
/// without the truth and a finding that marks no aneurysm are typed
/// errors that name the file or the series, and change nothing.
#[test]
fn phantom_truth_gives_the_findings_their_size() {
    let root = dataset().parent().unwrap().join("raw");
    let (mut cases, _) = load_cases(dataset()).unwrap();
    assert!(cases.iter().flat_map(|c| &c.findings).all(|f| f.radius_mm.is_none()));
    give_phantom_radii(&mut cases, &root).unwrap();
    let mut sized = 0;
    for c in &cases {
        let truth = aneu::phantom::read_truth(&root, &c.id).unwrap();
        let sorted = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v
        };
        let got = sorted(c.findings.iter().map(|f| f.radius_mm.unwrap()).collect());
        let want = sorted(truth.aneurysms.iter().map(|a| a.radius_mm).collect());
        assert_eq!(got, want, "series {}", c.id);
        sized += got.len();
    }
    assert!(sized >= 10, "{sized} aneurysms");

    let (mut fresh, _) = load_cases(dataset()).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let e = give_phantom_radii(&mut fresh, empty.path()).unwrap_err();
    assert!(
        matches!(e, Error::Phantom(_)) && e.to_string().contains("truth.json"),
        "{e}"
    );
    let n = fresh.iter().position(|c| !c.findings.is_empty()).unwrap();
    fresh[n].findings[0].voxel.i += 10.0 / fresh[n].image.spacing()[0];
    let e = give_phantom_radii(&mut fresh, &root).unwrap_err();
    assert!(
        matches!(e, Error::Data(_)) && e.to_string().contains(&fresh[n].id),
        "{e}"
    );
    assert!(fresh.iter().flat_map(|c| &c.findings).all(|f| f.radius_mm.is_none()));

    // size weighting without sizes would weigh nothing: refused before training
    let mut c = config("ci_tiny.json");
    c.sampler.size_weighting = Some(aneu::patch::SizeWeighting {
        reference_mm: 3.0,
        max_factor: 4.0,
    });
    let out = tempfile::tempdir().unwrap();
    let e = train::<A>(
        dataset(),
        &c,
        out.path(),
        &Default::default(),
        &TrainOptions::default(),
        &|_| {},
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::Data(_)) && e.to_string().contains("phantom_truth"),
        "{e}"
    );
}

fn config(name: &str) -> TrainConfig {
    TrainConfig::from_json_file(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs").join(name)).unwrap()
}

/// `configs/ci_tiny.json` reaches a patch-level validation AUC of at least
/// 0.90 (the CI budget is five minutes on two cores), and leaves a loadable
/// bundle, `metrics.csv` and `metrics.png`.
#[test]
fn ci_tiny_learns_on_phantoms() {
    let out = tempfile::tempdir().unwrap();
    let cfg = config("ci_tiny.json");
    let t = std::time::Instant::now();
    let r = train::<A>(
        dataset(),
        &cfg,
        out.path(),
        &Default::default(),
        &TrainOptions::default(),
        &|e| {
            println!(
                "epoch {} loss {:.4} val loss {:.4} AUC {:?} F2 {:.3} ({:.1} s, {} patches)",
                e.epoch, e.train_loss, e.val_loss, e.val_auc, e.val_f2, e.seconds, e.patches
            )
        },
    )
    .unwrap();
    println!("trained in {:.1} s", t.elapsed().as_secs_f64());
    assert!(r.finished);
    let best = &r.history[r.best_epoch - 1];
    assert!(best.val_auc.unwrap() >= 0.90, "best val AUC {:?}", best.val_auc);
    let bundle = ModelBundle::read(r.bundle.as_ref().unwrap()).unwrap();
    assert_eq!(bundle.manifest.best_epoch, r.best_epoch);
    assert_eq!(TrainConfig::from_bundle(&bundle).unwrap(), cfg);
    assert_eq!(bundle.preprocess, PreprocessConfig::default());
    assert!(!bundle.thresholds.calibrated);
    bundle.load_model::<Flex>(&Default::default()).unwrap();
    let csv = std::fs::read_to_string(out.path().join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), r.history.len() + 1);
    let png = image::open(out.path().join("metrics.png")).unwrap();
    assert_eq!(png.width(), 800);
}

fn short(cfg: &TrainConfig) -> TrainConfig {
    let mut c = cfg.clone();
    c.epochs = 3;
    c.sampler.negatives_per_case = 4;
    c.sampler.positives_per_finding = 2;
    c.optimizer.accumulation = 2;
    c.schedule = Schedule::CosineWarmup {
        warmup_epochs: 1,
        min_lr: 1e-5,
    };
    c
}

/// The same seed gives the same loss curve; a run interrupted after one
/// epoch and resumed ends with the same weights (byte for byte) and the
/// same history as an uninterrupted run.
#[test]
fn deterministic_and_resumable() {
    let cfg = short(&config("ci_tiny.json"));
    let dev = Default::default();
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let ra = train::<A>(dataset(), &cfg, a.path(), &dev, &TrainOptions::default(), &|_| {}).unwrap();
    let rb = train::<A>(dataset(), &cfg, b.path(), &dev, &TrainOptions::default(), &|_| {}).unwrap();
    let curve = |r: &TrainReport| r.history.iter().map(|e| (e.train_loss, e.val_loss)).collect::<Vec<_>>();
    assert_eq!(curve(&ra), curve(&rb));
    // interrupted after one epoch, then resumed
    let first = TrainOptions {
        resume: false,
        max_epochs_this_call: Some(1),
    };
    let r1 = train::<A>(dataset(), &cfg, c.path(), &dev, &first, &|_| {}).unwrap();
    assert!(!r1.finished && r1.bundle.is_none() && r1.history.len() == 1);
    let rest = TrainOptions {
        resume: true,
        max_epochs_this_call: None,
    };
    let rc = train::<A>(dataset(), &cfg, c.path(), &dev, &rest, &|_| {}).unwrap();
    assert!(rc.finished);
    assert_eq!(curve(&rc), curve(&ra));
    // the weights files hold random parameter ids, so compare what they compute
    let x = aneu::models::with_backend_rng(|| {
        aneu::models::burn::tensor::Tensor::<Flex, 5>::random(
            [2, 1, 16, 16, 16],
            aneu::models::burn::tensor::Distribution::Default,
            &dev,
        )
    });
    let logits = |p: PathBuf| {
        use aneu::models::PatchModel;
        let m = aneu::models::load_model::<Flex>(&cfg.model, p, &dev).unwrap();
        m.forward_patches(x.clone()).logit.into_data().to_vec::<f32>().unwrap()
    };
    assert!(
        logits(c.path().join("checkpoint/model")) == logits(a.path().join("checkpoint/model")),
        "final weights differ"
    );
    assert!(
        logits(c.path().join("bundle/weights")) == logits(a.path().join("bundle/weights")),
        "best weights differ"
    );
}

/// A hard-negative round adds false positives to the pool, each beyond
/// the exclusion radius of every aneurysm, within a voxel of the brain
/// mask (a candidate's centre, rounded) and about the candidates' NMS
/// distance from the others (less the rounding), with a dense U-Net, the position prior and
/// mining windows twice the patch's size.
#[test]
fn hard_negative_rounds_fill_the_pool() {
    let mut cfg = short(&config("ci_tiny.json"));
    cfg.model = aneu::models::ModelConfig::UNet3d(
        aneu::models::UNet3dConfig::new()
            .with_in_channels(4)
            .with_depth(3)
            .with_base_filters(4),
    );
    cfg.position_prior = true;
    cfg.loss.dense_weight = 1.0;
    cfg.loss.location_weight = 0.5;
    cfg.sampler.pools.hard = 1.0;
    cfg.hard_negatives = HardNegativeConfig {
        rounds: 1,
        per_case: 3,
        min_score: 0.0,
        overlap: 0.0,
        window: Some(32),
    };
    let out = tempfile::tempdir().unwrap();
    let r = train::<A>(
        dataset(),
        &cfg,
        out.path(),
        &Default::default(),
        &TrainOptions::default(),
        &|_| {},
    )
    .unwrap();
    let mined_at = cfg.epochs / 2;
    let added = r.history[mined_at - 1].hard_negatives;
    assert!(added > 0, "no hard negatives mined");
    // the pool persists in the checkpoint, away from every aneurysm
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("checkpoint/state.json")).unwrap()).unwrap();
    let (cases, _) = load_cases(dataset()).unwrap();
    let mut checked = 0;
    for entry in state["hard_negatives"].as_array().unwrap() {
        let id = entry[0].as_str().unwrap();
        let case = cases.iter().find(|c| c.id == id).unwrap();
        let sp = case.image.spacing();
        let points: Vec<Vec<f64>> = entry[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect())
            .collect();
        assert!(points.len() <= cfg.hard_negatives.per_case);
        let mm = |a: &[f64], b: &[f64]| {
            (((a[0] - b[0]) * sp[2]).powi(2) + ((a[1] - b[1]) * sp[1]).powi(2) + ((a[2] - b[2]) * sp[0]).powi(2)).sqrt()
        };
        // candidates are NMS-separated; rounding their centres to voxels
        // moves each by at most half a voxel diagonal
        let diagonal = sp.iter().map(|s| s * s).sum::<f64>().sqrt();
        let nms = mining_config(&cfg).candidates.nms_mm - diagonal;
        for (n, p) in points.iter().enumerate() {
            let near_mask = (0..27).any(|d: usize| {
                let o = [d / 9, d / 3 % 3, d % 3].map(|x| x as f64 - 1.0);
                let [k, j, i] = std::array::from_fn(|a| (p[a] + o[a]).max(0.0) as usize);
                case.mask
                    .get(aneu::io::VoxelIndex::new(i, j, k))
                    .is_some_and(|&m| m > 0)
            });
            assert!(near_mask, "hard negative {p:?} outside the mask");
            for q in &points[..n] {
                assert!(mm(p, q) >= nms, "{p:?} and {q:?} closer than the NMS distance");
            }
            for f in &case.findings {
                let d = mm(p, &f.voxel.to_kji());
                assert!(
                    d >= cfg.sampler.exclusion_radius_mm,
                    "hard negative {d:.1} mm from an aneurysm"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, added);
    // later epochs drew from the pool
    assert!(r.history.last().unwrap().patches > 0);
}

/// Mining takes exactly what inference proposes: on a scan, the points a
/// hard-negative round adds are the predictor's own candidates (the same
/// predictor `train` builds, [`mining_config`]), rounded to voxels, less
/// those within the exclusion radius of an aneurysm. An aneurysm placed on
/// the top candidate removes it from the mined points and nothing else.
#[test]
fn mining_takes_the_predictors_candidates() {
    let mut cfg = short(&config("ci_tiny.json"));
    cfg.model = aneu::models::ModelConfig::UNet3d(aneu::models::UNet3dConfig::new().with_depth(3).with_base_filters(4));
    cfg.position_prior = false;
    cfg.hard_negatives = HardNegativeConfig {
        rounds: 1,
        per_case: 100,
        min_score: 0.0,
        overlap: 0.25,
        window: Some(32),
    };
    let (cases, _) = load_cases(dataset()).unwrap();
    let mut case = cases.into_iter().next().unwrap();
    case.hard_negatives.clear();
    let device = Default::default();
    let model = cfg.model.init_seeded::<Flex>(11, &device).unwrap();
    let bundle = ModelBundle {
        dir: "in-memory".into(),
        manifest: BundleManifest::new(&cfg.model, cfg.sampler.patch_size, false, 0, Metric::Auc, 0.0),
        model: cfg.model.clone(),
        preprocess: PreprocessConfig::default(),
        train: serde_json::Value::Null,
        split: Split::default(),
        thresholds: Thresholds::default(),
        second_stage: None,
    };
    let predictor = Predictor::from_models(vec![(bundle, model)], mining_config(&cfg), &device).unwrap();
    let (_, candidates) = predictor.detect(&case, None).unwrap();
    assert!(candidates.len() >= 3, "{} candidates", candidates.len());
    let rounded = |v: aneu::io::Voxel| {
        aneu::io::VoxelIndex::new(v.i.round() as usize, v.j.round() as usize, v.k.round() as usize)
    };
    let sp = case.image.spacing();
    let beyond = |c: &aneu::infer::Detection, case: &aneu::patch::Case| {
        let r = rounded(c.voxel);
        case.findings.iter().all(|f| {
            let d = ((r.i as f64 - f.voxel.i) * sp[0])
                .hypot((r.j as f64 - f.voxel.j) * sp[1])
                .hypot((r.k as f64 - f.voxel.k) * sp[2]);
            d >= cfg.sampler.exclusion_radius_mm
        })
    };
    let mine = |case: &aneu::patch::Case| {
        let mut cs = vec![case.clone()];
        let n = mine_hard_negatives(&predictor, &mut cs, &cfg).unwrap();
        assert_eq!(n, cs[0].hard_negatives.len());
        cs.remove(0).hard_negatives
    };
    let expected: Vec<_> = candidates
        .iter()
        .filter(|c| beyond(c, &case))
        .map(|c| rounded(c.voxel))
        .collect();
    assert_eq!(mine(&case), expected);
    // an aneurysm on the top candidate: that one goes, the others stay
    let mut with = case.clone();
    with.findings.push(aneu::patch::Finding {
        voxel: candidates[0].voxel,
        location: None,
        radius_mm: None,
    });
    let expected: Vec<_> = candidates
        .iter()
        .filter(|c| beyond(c, &with))
        .map(|c| rounded(c.voxel))
        .collect();
    assert!(!expected.contains(&rounded(candidates[0].voxel)));
    assert_eq!(mine(&with), expected);
}

/// A second stage (`second_stage_of`): its split is the first stage's,
/// its hard-negative pool holds the first stage's candidates before the
/// first epoch, and the two-stage detector (`ModelBundle::combine`) keeps
/// the first stage's candidates where they are and scores each with the
/// second stage's probability on a patch centred on its peak: the same
/// value as the second stage run alone on `find_peaks`' centres. The
/// scan's `Aneurysm Present` is then the highest second-stage score.
#[test]
fn a_second_stage_rescores_the_first_stages_candidates() {
    use aneu::infer::find_peaks;
    let mut first = short(&config("ci_tiny.json"));
    first.epochs = 2;
    first.model =
        aneu::models::ModelConfig::UNet3d(aneu::models::UNet3dConfig::new().with_depth(3).with_base_filters(4));
    let out = tempfile::tempdir().unwrap();
    let dev = Default::default();
    let r1 = train::<A>(
        dataset(),
        &first,
        out.path().join("one"),
        &dev,
        &TrainOptions::default(),
        &|_| {},
    )
    .unwrap();
    let b1 = r1.bundle.unwrap();

    let mut second = short(&config("ci_tiny.json"));
    second.epochs = 2;
    second.model =
        aneu::models::ModelConfig::Simple3dCnn(aneu::models::Simple3dCnnConfig::new().with_channels([4, 8, 8]));
    second.sampler.patch_size = 16;
    second.sampler.pools.hard = 2.0;
    second.split.seed += 1; // ignored: the first stage's split is used
    second.hard_negatives = HardNegativeConfig {
        rounds: 0,
        per_case: 4,
        min_score: 0.0,
        overlap: 0.0,
        window: Some(32),
    };
    second.second_stage_of = Some(b1.clone());
    let r2 = train::<A>(
        dataset(),
        &second,
        out.path().join("two"),
        &dev,
        &TrainOptions::default(),
        &|_| {},
    )
    .unwrap();
    assert!(r2.history[0].hard_negatives > 0, "the first stage proposed nothing");
    let (s1, s2) = (
        ModelBundle::read(&b1).unwrap(),
        ModelBundle::read(r2.bundle.as_ref().unwrap()).unwrap(),
    );
    assert_eq!(s1.split, s2.split);

    let both = ModelBundle::combine(&b1, r2.bundle.as_ref().unwrap(), out.path().join("detector")).unwrap();
    assert!(both.second_stage.is_some());
    let cfg = first_stage_config(&second);
    let two = Predictor::<Flex>::from_dirs(&[&both.dir], cfg.clone(), &dev).unwrap();
    let one = Predictor::<Flex>::from_dirs(&[&b1], cfg.clone(), &dev).unwrap();
    // patch outputs take no window: the second stage alone runs at its patch
    let alone = Predictor::<Flex>::from_dirs(&[r2.bundle.as_ref().unwrap()], Default::default(), &dev).unwrap();
    assert!(two.has_second_stage() && !one.has_second_stage());
    let (cases, _) = load_cases(dataset()).unwrap();
    let case = cases.iter().find(|c| c.is_positive()).unwrap();
    let (map, with) = two.detect(case, None).unwrap();
    let (_, without) = one.detect(case, None).unwrap();
    assert!(!with.is_empty());
    let peaks = find_peaks(map.view(), case.image.affine(), &cfg.candidates);
    let centres: Vec<[usize; 3]> = peaks.iter().map(|p| p.voxel).collect();
    let expected = alone.patch_outputs(case, &centres).unwrap().present;
    for c in &with {
        let p = c.second_stage.expect("a second-stage score");
        assert_eq!(c.score, p);
        let n = peaks
            .iter()
            .position(|q| case.image.affine().voxel_to_world(q.centroid) == c.world)
            .unwrap();
        assert!((p - expected[n]).abs() < 1e-6, "{p} vs {}", expected[n]);
        assert!(without.iter().any(|d| d.world == c.world && d.second_stage.is_none()));
    }
    assert_eq!(with.len(), without.len());
    let pred = two.predict_case(case, aneu::io::Modality::Mra, None).unwrap();
    assert_eq!(
        pred.scan.aneurysm_present,
        with.iter().map(|c| c.score).fold(0.0, f64::max)
    );

    // rounds of mining with the model being trained make no second stage
    let mut bad = second.clone();
    bad.hard_negatives.rounds = 1;
    assert!(bad.validate().is_err());
}

/// A U-Net with a vessel head trains on the phantoms' vessel labels (every
/// preprocessed phantom has them), reporting the validation vessel Dice;
/// at inference each candidate gets the artery it sits on, its location
/// probabilities being the territory's.
#[test]
fn a_vessel_head_learns_the_arteries() {
    let mut cfg = short(&config("ci_tiny.json"));
    cfg.epochs = 2;
    cfg.model = vessel_unet(3, 8);
    cfg.loss.vessel_weight = 1.0;
    cfg.optimizer.lr = 3e-3;
    let out = tempfile::tempdir().unwrap();
    let dev = Default::default();
    let r = train::<A>(dataset(), &cfg, out.path(), &dev, &TrainOptions::default(), &|e| {
        println!(
            "epoch {} loss {:.4} vessel Dice {:?}",
            e.epoch, e.train_loss, e.val_vessel_dice
        )
    })
    .unwrap();
    // (a few epochs of a small net do not segment the arteries yet; that
    // the head learns is aneu-train's unit test, how well the benchmark's)
    for e in &r.history {
        let d = e
            .val_vessel_dice
            .expect("a vessel Dice with labelled validation patches");
        assert!((0.0..=1.0).contains(&d), "{d}");
    }
    let csv = std::fs::read_to_string(out.path().join("metrics.csv")).unwrap();
    assert!(csv.lines().next().unwrap().ends_with("val_vessel_dice"), "{csv}");

    let bundle = r.bundle.unwrap();
    let predictor = Predictor::<Flex>::from_dirs(&[&bundle], Default::default(), &dev).unwrap();
    let (cases, _) = load_cases(dataset()).unwrap();
    let case = cases.iter().find(|c| c.is_positive()).unwrap();
    let (_, found) = predictor.detect(case, None).unwrap();
    assert!(!found.is_empty());
    for c in &found {
        let l = c.locations.expect("territory probabilities");
        assert!((l.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{l:?}");
        assert_eq!(c.artery, c.location);
        assert!(c.artery.is_some());
    }
}

/// A vessel-pretrained network (every aneurysm weight 0, the vessel
/// weight alone) is where a fine-tuning run with `init_from` starts: with
/// a learning rate too small to move the weights, the fine-tuned bundle's
/// map equals the pretrained one's, where a run from random weights would
/// not. A bundle of another architecture is refused before training.
#[test]
fn fine_tuning_starts_from_the_pretrained_weights() {
    let mut pre = short(&config("ci_tiny.json"));
    pre.epochs = 1;
    pre.model = vessel_unet(2, 4);
    pre.loss.present_weight = 0.0;
    pre.loss.location_weight = 0.0;
    pre.loss.dense_weight = 0.0;
    pre.loss.vessel_weight = 1.0;
    pre.early_stopping.metric = aneu::bundle::Metric::Loss;
    pre.optimizer.lr = 3e-3;
    let dir = tempfile::tempdir().unwrap();
    let dev = Default::default();
    let quiet = |_: &EpochRecord| {};
    let opts = TrainOptions::default();
    let a = train::<A>(dataset(), &pre, dir.path().join("pre"), &dev, &opts, &quiet).unwrap();
    let pretrained = a.bundle.unwrap();

    let mut tune = pre.clone();
    tune.loss.present_weight = 1.0;
    tune.loss.dense_weight = 1.0;
    tune.loss.vessel_weight = 0.3;
    tune.optimizer.lr = 1e-12;
    tune.schedule = Schedule::Constant;
    tune.early_stopping.metric = aneu::bundle::Metric::Auc;
    tune.seed = 99;
    tune.init_from = Some(pretrained.clone());
    let b = train::<A>(dataset(), &tune, dir.path().join("tune"), &dev, &opts, &quiet).unwrap();
    let (cases, _) = load_cases(dataset()).unwrap();
    let map = |bundle: &Path| {
        let p = Predictor::<Flex>::from_dirs(&[bundle], Default::default(), &dev).unwrap();
        p.detect(&cases[0], None).unwrap().0
    };
    let (m_pre, m_tuned) = (map(&pretrained), map(&b.bundle.unwrap()));
    let diff = (&m_pre - &m_tuned).mapv(f32::abs).fold(0f32, |m, v| m.max(*v));
    assert!(diff < 1e-4, "the fine-tuned map is {diff} from the pretrained one");
    // the check can fail: from random weights (seed 99) the map differs
    tune.init_from = None;
    let c = train::<A>(dataset(), &tune, dir.path().join("fresh"), &dev, &opts, &quiet).unwrap();
    let m_fresh = map(&c.bundle.unwrap());
    let diff = (&m_pre - &m_fresh).mapv(f32::abs).fold(0f32, |m, v| m.max(*v));
    assert!(diff > 1e-2, "{diff}");

    // another architecture: a typed error naming the bundle, no training
    let mut other = tune.clone();
    other.model = vessel_unet(2, 8);
    other.init_from = Some(pretrained.clone());
    let e = train::<A>(dataset(), &other, dir.path().join("other"), &dev, &opts, &quiet).unwrap_err();
    assert!(
        matches!(e, Error::InvalidConfig(_)) && e.to_string().contains("init_from"),
        "{e}"
    );
    assert!(!dir.path().join("other").join("bundle").exists());
}

/// A `UNet3d` of `depth` levels from `filters` filters with the 14-class
/// vessel head.
fn vessel_unet(depth: usize, filters: usize) -> aneu::models::ModelConfig {
    aneu::models::ModelConfig::UNet3d(
        aneu::models::UNet3dConfig::new()
            .with_depth(depth)
            .with_base_filters(filters)
            .with_vessel_classes(Some(14)),
    )
}

/// Malformed or inconsistent configs fail before any training.
#[test]
fn bad_configs_fail_early() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let e = TrainConfig::from_json_file(write("a.json", r#"{"model": {"ResNet3d": {}}}"#)).unwrap_err();
    assert!(
        matches!(e, Error::Format { .. }) && e.to_string().contains("a.json"),
        "{e}"
    );
    let e = TrainConfig::from_json_file(write("b.json", r#"{"epocs": 3}"#)).unwrap_err();
    assert!(e.to_string().contains("epocs"), "{e}");
    let e = TrainConfig::from_json_file(write("c.json", r#"{"sampler": {"positives_per_finding": 0}}"#)).unwrap_err();
    assert!(
        matches!(e, Error::InvalidConfig(_)) && e.to_string().contains("positives"),
        "{e}"
    );
    let e =
        TrainConfig::from_json_file(write("d.json", r#"{"sampler": {"patch_size": 30, "jitter": 2}}"#)).unwrap_err();
    assert!(e.to_string().contains("multiple of 4"), "{e}");
    let e = TrainConfig::from_json_file(write("e.json", r#"{"position_prior": true}"#)).unwrap_err();
    assert!(e.to_string().contains("input channels"), "{e}");
    let e = TrainConfig::from_json_file(write("f.json", r#"{"loss": {"dense_weight": 1.0}}"#)).unwrap_err();
    assert!(e.to_string().contains("UNet3d"), "{e}");
    // augmentation parameters are checked before anything trains
    for bad in [
        r#"{"type": "low_resolution", "p": 0.5, "factor": [0.5, 2.0], "axes": [0]}"#,
        r#"{"type": "low_resolution", "p": 0.5, "factor": [1.5, 2.0], "axes": [3]}"#,
        r#"{"type": "gaussian_blur", "p": 1.5, "sigma": [0.5, 1.0]}"#,
        r#"{"type": "gamma", "p": 0.5, "gamma": [1.5, 0.7]}"#,
    ] {
        let text = format!(r#"{{"augment": [{bad}]}}"#);
        let e = TrainConfig::from_json_file(write("h.json", &text)).unwrap_err();
        assert!(
            matches!(e, Error::InvalidConfig(_)) && e.to_string().contains("augment[0]"),
            "{bad}: {e}"
        );
    }
    // a vessel weight needs a vessel head of RSNA's 14 classes
    let unet = |classes: usize, weight: f64| {
        let mut c = config("ci_dense.json");
        let aneu::models::ModelConfig::UNet3d(m) = &mut c.model else {
            panic!("ci_dense is a UNet3d")
        };
        m.vessel_classes = Some(classes);
        c.loss.vessel_weight = weight;
        c.validate()
    };
    assert!(unet(14, 1.0).is_ok());
    for (classes, weight) in [(0, 1.0), (5, 1.0), (5, 0.0)] {
        let e = unet(classes, weight).unwrap_err();
        assert!(e.to_string().contains("14 classes"), "{classes} {weight}: {e}");
    }
    assert!(TrainConfig::from_json_file(dir.path().join("missing.json")).is_err());
    // mining windows: never below the patch, and larger only with a dense head
    let mine = |window: usize| {
        let text = format!(r#"{{"epochs": 4, "hard_negatives": {{"rounds": 1, "window": {window}}}}}"#);
        TrainConfig::from_json_file(write("g.json", &text))
    };
    assert!(mine(32).is_ok());
    for w in [16, 64] {
        let e = mine(w).unwrap_err();
        assert!(e.to_string().contains("hard_negatives.window"), "{e}");
    }
    // a patch larger than every volume is refused before training
    let mut big = config("ci_tiny.json");
    big.sampler.patch_size = 512;
    big.sampler.jitter = 4;
    let e = train::<A>(
        dataset(),
        &big,
        dir.path().join("run"),
        &Default::default(),
        &TrainOptions::default(),
        &|_| panic!("trained"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("exceeds the volume"), "{e}");
    // every shipped config is valid
    for name in [
        "ci_tiny.json",
        "ci_dense.json",
        "seed_model5.json",
        "unet_dense.json",
        "detector.json",
        "detector_vessels.json",
        "second_stage.json",
    ] {
        config(name).validate().unwrap();
    }
}

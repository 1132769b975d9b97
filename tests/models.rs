//! aneu-models: output shapes, parameter counts, learnability on phantom
//! patches, and weight round trips, on the Flex CPU backend.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aneu::io::{Location, RsnaDataset};
use aneu::models::burn::backend::{Autodiff, Flex};
use aneu::models::burn::module::{AutodiffModule, Module};
use aneu::models::burn::optim::{AdamConfig, GradientsParams, Optimizer};
use aneu::models::burn::prelude::*;
use aneu::models::burn::tensor::activation::relu;
use aneu::models::*;
use aneu::patch::{Case, Finding, Patch, PatchSampler, PatchSource, SamplerConfig};
use aneu::phantom::{PhantomConfig, SizePreset, generate};
use aneu::preproc::{PreprocessConfig, preprocess_series};
use rand::SeedableRng;

type B = Flex;
type A = Autodiff<Flex>;

fn configs(in_channels: usize) -> Vec<(&'static str, ModelConfig)> {
    vec![
        (
            "Simple3dCnn",
            ModelConfig::Simple3dCnn(Simple3dCnnConfig::new().with_in_channels(in_channels)),
        ),
        (
            "TinyUNet3d(8)",
            ModelConfig::TinyUNet3d(TinyUNet3dConfig::new().with_in_channels(in_channels)),
        ),
        (
            "UNet3d(depth 4, 16, instance)",
            ModelConfig::UNet3d(UNet3dConfig::new().with_in_channels(in_channels)),
        ),
        (
            "UNet3d(depth 3, 8, group 4, residual)",
            ModelConfig::UNet3d(
                UNet3dConfig::new()
                    .with_in_channels(in_channels)
                    .with_depth(3)
                    .with_base_filters(8)
                    .with_norm(NormKind::Group(4))
                    .with_residual(true),
            ),
        ),
    ]
}

/// Forward passes at 16³, 32³ and 48³: one logit per patch; the U-Net's
/// dense map at full resolution and 13 location logits; parameter counts
/// printed for the docs.
#[test]
fn output_shapes_at_three_patch_sizes() {
    let device = Default::default();
    for (name, cfg) in configs(1).into_iter().chain([(
        "UNet3d(depth 5, batch)",
        ModelConfig::UNet3d(
            UNet3dConfig::new()
                .with_depth(5)
                .with_base_filters(4)
                .with_norm(NormKind::Batch),
        ),
    )]) {
        let model = cfg.init::<B>(&device).unwrap();
        println!("{name}: {} parameters", model.num_params());
        // the config and the built model agree on their heads
        assert_eq!(cfg.has_dense_head(), model.has_dense_head(), "{name}");
        assert_eq!(cfg.has_location_head(), model.has_location_head(), "{name}");
        for n in [16usize, 32, 48] {
            if cfg.validate_for_patch(n).is_err() {
                assert_eq!(n % cfg.size_multiple(), 0, "{name} refused {n}");
                continue;
            }
            let out = model.forward_patches(with_backend_rng(|| {
                Tensor::<B, 5>::random(
                    [2, 1, n, n, n],
                    aneu::models::burn::tensor::Distribution::Normal(0.0, 1.0),
                    &device,
                )
            }));
            assert_eq!(out.logit.dims(), [2, 1], "{name} at {n}");
            if model.has_dense_head() {
                assert_eq!(out.dense.unwrap().dims(), [2, 1, n, n, n], "{name} at {n}");
                assert_eq!(out.locations.unwrap().dims(), [2, 13]);
            } else {
                assert!(out.dense.is_none() && out.locations.is_none());
            }
        }
    }
    // a patch that is not a multiple of the depth's stride is refused
    let cfg = ModelConfig::UNet3d(UNet3dConfig::new().with_depth(4));
    assert!(cfg.validate_for_patch(20).is_err());
    assert!(cfg.validate_for_patch(24).is_ok());
    let bad = ModelConfig::UNet3d(UNet3dConfig::new().with_norm(NormKind::Group(3)));
    assert!(matches!(bad.init::<B>(&device), Err(Error::InvalidConfig(_))));
}

/// Eight fixed 16³ patches from preprocessed tiny MRA phantoms: four on an
/// aneurysm, four uniform negatives.
fn phantom_patches() -> Vec<Patch> {
    let dir = tempfile::tempdir().unwrap();
    generate(
        &PhantomConfig::new(3, 11, SizePreset::Tiny)
            .with_positive_rate(1.0)
            .with_modalities(&[aneu::io::Modality::Mra]),
        dir.path(),
    )
    .unwrap();
    let ds = RsnaDataset::open(dir.path()).unwrap();
    let cfg = PreprocessConfig::default();
    let mut cases = Vec::new();
    for uid in ds.series_uids().map(str::to_owned).collect::<Vec<_>>() {
        let labels = ds.labels(&uid).unwrap();
        let series = ds.read_series(&uid).unwrap();
        let p = preprocess_series(&series, labels.modality, ds.localizers(&uid), Some(labels), &cfg).unwrap();
        let findings = p
            .meta
            .annotations
            .iter()
            .map(|a| Finding {
                voxel: a.voxel,
                location: a.location.parse::<Location>().ok(),
                radius_mm: None,
            })
            .collect();
        cases.push(Case::new(uid, p.image, p.mask, findings).unwrap());
    }
    let sampler = PatchSampler::new(
        SamplerConfig::default()
            .with_patch_size(16)
            .with_jitter(2)
            .with_positives_per_finding(2)
            .with_negatives_per_case(4)
            .with_exclusion_radius_mm(20.0),
    )
    .unwrap();
    let specs = sampler.plan_epoch(&cases, &mut rand::rngs::StdRng::seed_from_u64(3));
    let pos: Vec<_> = specs
        .iter()
        .filter(|s| s.source == PatchSource::Positive)
        .take(4)
        .collect();
    let neg: Vec<_> = specs
        .iter()
        .filter(|s| s.source != PatchSource::Positive)
        .take(4)
        .collect();
    assert_eq!((pos.len(), neg.len()), (4, 4));
    pos.into_iter().chain(neg).map(|s| sampler.extract(&cases, s)).collect()
}

fn batch<Bk: Backend>(patches: &[Patch], device: &Bk::Device) -> (Tensor<Bk, 5>, Tensor<Bk, 2>, Tensor<Bk, 5>) {
    let n = patches.len();
    let s = patches[0].image.dim().0;
    let img: Vec<f32> = patches.iter().flat_map(|p| p.image.iter().copied()).collect();
    let den: Vec<f32> = patches.iter().flat_map(|p| p.dense.iter().copied()).collect();
    let lab: Vec<f32> = patches.iter().map(|p| p.label).collect();
    (
        Tensor::<Bk, 1>::from_floats(img.as_slice(), device).reshape([n, 1, s, s, s]),
        Tensor::<Bk, 1>::from_floats(lab.as_slice(), device).reshape([n, 1]),
        Tensor::<Bk, 1>::from_floats(den.as_slice(), device).reshape([n, 1, s, s, s]),
    )
}

/// Mean binary cross-entropy with logits, in the stable form
/// `max(x, 0) − x·y + log(1 + e^−|x|)`.
fn bce<const D: usize>(x: Tensor<A, D>, y: Tensor<A, D>) -> Tensor<A, 1> {
    (relu(x.clone()) - x.clone() * y + x.abs().neg().exp().log1p()).mean()
}

/// Trains each model on the eight patches with Adam from the weights of
/// `seed`, until its loss (BCE, plus BCE of the dense map for the U-Net)
/// is below 0.05 or `MAX_STEPS` have passed. Returns (name, loss, steps).
fn learn_eight_patches(
    x: &Tensor<A, 5>,
    y: &Tensor<A, 2>,
    dense: &Tensor<A, 5>,
    seed: u64,
) -> Vec<(String, f32, usize)> {
    const MAX_STEPS: usize = 300;
    let device = x.device();
    let mut models = configs(1);
    models[2] = (
        "UNet3d(depth 3, 8, instance)",
        ModelConfig::UNet3d(UNet3dConfig::new().with_depth(3).with_base_filters(8)),
    );
    let mut out = Vec::new();
    for (name, cfg) in models {
        let mut model = cfg.init_seeded::<A>(seed, &device).unwrap();
        let mut opt = AdamConfig::new().init();
        let mut last = f32::INFINITY;
        let mut steps = 0;
        for step in 1..=MAX_STEPS {
            let out = model.forward_patches(x.clone());
            let mut loss = bce(out.logit, y.clone());
            if let Some(d) = out.dense {
                loss = loss + bce(d, dense.clone());
            }
            last = loss.clone().into_scalar();
            steps = step;
            if last < 0.05 {
                break;
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(LEARNING_RATE, model, grads);
        }
        println!("seed {seed}: {name}: loss {last:.4} after {steps} steps");
        out.push((name.to_string(), last, steps));
    }
    out
}

/// Adam's step size in the learning test. From each of the seeds 0–9
/// every model reaches the target within 106 of the 300 steps
/// (docs/training.md). Before the unnormalised networks were He-initialised
/// the TinyUNet3d failed from 2 of them at this rate (seed 9 lost every
/// ReLU and sat at ln 2), and no other rate or warm-up did better.
const LEARNING_RATE: f64 = 1e-2;

/// Every model drives its training loss below 0.05 on the eight patches
/// within 300 Adam steps (the U-Net's loss includes its dense map). The
/// U-Nets are the small variants, to keep the test short on two cores.
/// The weights are those of a seed (`init_seeded`), so the outcome does
/// not depend on what the other tests of this binary do meanwhile.
/// It runs from seeds 5 and 9 (9 left the TinyUNet3d at ln 2 under Burn's
/// default initialisation); `ANEU_LEARN_SEEDS=0-9` runs it from ten.
#[test]
fn every_model_learns_eight_phantom_patches() {
    let patches = phantom_patches();
    let device = Default::default();
    let (x, y, dense) = batch::<A>(&patches, &device);
    let seeds: Vec<u64> = match std::env::var("ANEU_LEARN_SEEDS") {
        Ok(r) => {
            let (a, b) = r.split_once('-').unwrap_or((r.as_str(), r.as_str()));
            (a.parse().unwrap()..=b.parse().unwrap()).collect()
        }
        Err(_) => vec![5, 9],
    };
    let mut failed = Vec::new();
    for seed in seeds {
        for (name, loss, steps) in learn_eight_patches(&x, &y, &dense, seed) {
            if loss.is_nan() || loss >= 0.05 {
                failed.push(format!("seed {seed}: {name}: loss {loss} after {steps} steps"));
            }
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// Every float parameter of a model, in visiting order, as bits.
fn parameter_bits<Bk: Backend>(model: &AnyModel<Bk>) -> Vec<u32> {
    struct Collect(Vec<u32>);
    impl<Bk: Backend> aneu::models::burn::module::ModuleVisitor<Bk> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &aneu::models::burn::module::Param<Tensor<Bk, D>>) {
            let v = p.val().into_data().convert::<f32>().to_vec::<f32>().unwrap();
            self.0.extend(v.iter().map(|f| f.to_bits()));
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

/// Eight threads initialise the same config with the same seed at the
/// same time, while others initialise unseeded models and draw random
/// tensors: all eight get bit-identical weights, equal to those of a
/// lone initialisation. (With the pattern this replaced, `seed` and then
/// a lazy `init` on each thread, the weights differed between threads.)
#[test]
fn seeded_initialisation_is_the_same_on_every_thread() {
    let device: aneu::models::burn::tensor::Device<B> = Default::default();
    let cfg = ModelConfig::UNet3d(UNet3dConfig::new().with_depth(3).with_base_filters(8));
    let alone = parameter_bits(&cfg.init_seeded::<B>(42, &device).unwrap());
    let other = ModelConfig::TinyUNet3d(TinyUNet3dConfig::new());
    let results: Vec<Vec<u32>> = std::thread::scope(|s| {
        let noise: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..20 {
                        let _ = other.init::<B>(&device).unwrap();
                        let _ = with_backend_rng(|| {
                            Tensor::<B, 1>::random([1000], aneu::models::burn::tensor::Distribution::Default, &device)
                        });
                    }
                })
            })
            .collect();
        let seeded: Vec<_> = (0..8)
            .map(|_| s.spawn(|| parameter_bits(&cfg.init_seeded::<B>(42, &device).unwrap())))
            .collect();
        for n in noise {
            n.join().unwrap();
        }
        seeded.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(!alone.is_empty());
    for (n, r) in results.iter().enumerate() {
        assert!(r == &alone, "thread {n} got other weights than a lone initialisation");
    }
    // another seed gives other weights
    assert_ne!(parameter_bits(&cfg.init_seeded::<B>(43, &device).unwrap()), alone);
}

/// Saved weights load into a fresh model and reproduce its outputs
/// exactly; a missing or foreign file is a typed error naming the file.
#[test]
fn weights_round_trip_exactly() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let x = with_backend_rng(|| {
        Tensor::<B, 5>::random(
            [2, 1, 16, 16, 16],
            aneu::models::burn::tensor::Distribution::Default,
            &device,
        )
    });
    for (n, (name, cfg)) in configs(1).into_iter().enumerate() {
        let model = cfg.init::<A>(&device).unwrap().valid();
        let path = dir.path().join(format!("m{n}"));
        save_weights(model.clone(), &path).unwrap();
        let loaded = load_model::<B>(&cfg, &path, &device).unwrap();
        let a = model.forward_patches(x.clone());
        let b = loaded.forward_patches(x.clone());
        assert_eq!(a.logit.into_data(), b.logit.into_data(), "{name}");
        if let (Some(a), Some(b)) = (a.dense, b.dense) {
            assert_eq!(a.into_data(), b.into_data(), "{name}");
        }
    }
    let cnn = &configs(1)[0].1;
    let e = load_model::<B>(cnn, dir.path().join("missing"), &device).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
    // the TinyUNet's weights do not fit the simple CNN, nor depth 3 weights a depth 4 U-Net
    let e = load_model::<B>(cnn, dir.path().join("m1"), &device).unwrap_err();
    assert!(matches!(e, Error::WeightsMismatch { .. }), "{e}");
    let e = load_model::<B>(&configs(1)[2].1, dir.path().join("m3"), &device).unwrap_err();
    assert!(matches!(e, Error::WeightsMismatch { .. }), "{e}");
    // a truncated file
    let bytes = std::fs::read(dir.path().join("m0.mpk")).unwrap();
    std::fs::write(dir.path().join("cut.mpk"), &bytes[..bytes.len() / 2]).unwrap();
    let e = load_model::<B>(cnn, dir.path().join("cut"), &device).unwrap_err();
    assert!(e.to_string().contains("cut"), "{e}");
}

/// The position skip lets the U-Net tell where a patch lies. Sixteen 8³
/// patches hold the same noise and differ only in their coordinate
/// channels, constant over each patch (i from 0.05 to 0.95); the target
/// is the side, i > 0.5. With the skip the loss falls below 0.05 within
/// 200 Adam steps. (Without it, the network reads the position from the
/// zero padding at the borders, which 8³ patches are mostly made of, and
/// learns this too; docs/benchmarks.md measures the skip on real
/// patches.) A config without the three coordinate channels is
/// refused, and a config written before the field existed reads as one
/// without the skip.
#[test]
fn the_position_skip_shows_the_side() {
    let device = Default::default();
    let (n, s) = (16usize, 8usize);
    let per = s * s * s;
    let noise: Vec<f32> = (0..per).map(|v| ((v * 7919 % 101) as f32 / 50.0) - 1.0).collect();
    let mut x = Vec::with_capacity(n * 4 * per);
    let mut y = Vec::with_capacity(n);
    for p in 0..n {
        let i = 0.05 + 0.9 * p as f32 / (n - 1) as f32;
        x.extend(&noise);
        for c in [0.5, 0.5, i] {
            x.extend(std::iter::repeat_n(c, per));
        }
        y.push(f32::from(u8::from(i > 0.5)));
    }
    let x = Tensor::<A, 1>::from_floats(x.as_slice(), &device).reshape([n, 4, s, s, s]);
    let y = Tensor::<A, 1>::from_floats(y.as_slice(), &device).reshape([n, 1]);
    let cfg = UNet3dConfig::new()
        .with_in_channels(4)
        .with_depth(3)
        .with_base_filters(4)
        .with_position_skip(Some(8));
    let mut model = ModelConfig::UNet3d(cfg.clone()).init_seeded::<A>(3, &device).unwrap();
    let mut opt = AdamConfig::new().init();
    let mut last = f32::INFINITY;
    for _ in 0..200 {
        let loss = bce(model.forward_patches(x.clone()).logit, y.clone());
        last = loss.clone().into_scalar();
        if last < 0.05 {
            break;
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = opt.step(LEARNING_RATE, model, grads);
    }
    assert!(last < 0.05, "loss {last} after 200 steps");

    let one_channel = ModelConfig::UNet3d(cfg.with_in_channels(1));
    assert!(matches!(one_channel.init::<B>(&device), Err(Error::InvalidConfig(_))));
    // the shipped model's network, as its model.json gives it
    let old: UNet3dConfig = serde_json::from_str(
        r#"{"in_channels": 4, "depth": 3, "base_filters": 8, "max_filters": 32, "norm": "instance",
            "residual": false, "head_hidden": 16, "vessel_classes": 14}"#,
    )
    .unwrap();
    assert_eq!(old.skip_width(), 0);
}

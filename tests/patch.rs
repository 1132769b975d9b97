//! aneu-patch: sampler, grid and augmentation properties (proptest), and
//! the sampler on preprocessed phantoms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aneu::io::{Affine, Location, Volume, Voxel};
use aneu::patch::augment::{
    Compose, RandAffine, RandBiasField, RandFlip, RandGamma, RandGaussianNoise, RandRot90, RandScaleShift,
    RandTransform, Transform,
};
use aneu::patch::*;
use ndarray::Array3;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A synthetic case: a ball-shaped brain mask of radius `r` in an `n`³
/// volume with spacing `sp`, bright "vessels" along two lines, and the
/// given findings.
fn case(n: usize, r: f64, sp: f64, findings: Vec<Finding>) -> Case {
    let c = (n as f64 - 1.0) / 2.0;
    let inside = |k: usize, j: usize, i: usize| {
        ((k as f64 - c).powi(2) + (j as f64 - c).powi(2) + (i as f64 - c).powi(2)).sqrt() <= r
    };
    let img = Array3::from_shape_fn((n, n, n), |(k, j, i)| {
        let vessel = ((k as f64 - c).powi(2) + (j as f64 - c - 3.0).powi(2)).sqrt() <= 1.2
            || ((k as f64 - c + 4.0).powi(2) + (i as f64 - c).powi(2)).sqrt() <= 1.2;
        let base = if inside(k, j, i) { 1.0 } else { 0.0 };
        base + if vessel && inside(k, j, i) { 5.0 } else { 0.0 } + ((k * 31 + j * 17 + i * 7) % 11) as f32 * 0.01
    });
    let a = Affine::from_parts([[sp, 0.0, 0.0], [0.0, sp, 0.0], [0.0, 0.0, sp]], [0.0; 3]).unwrap();
    let image = Volume::new(img, a).unwrap();
    let mask = Volume::new(
        Array3::from_shape_fn((n, n, n), |(k, j, i)| u8::from(inside(k, j, i))),
        a,
    )
    .unwrap();
    Case::new("synthetic", image, mask, findings).unwrap()
}

fn finding(i: f64, j: f64, k: f64, loc: Option<Location>) -> Finding {
    Finding {
        voxel: Voxel::new(i, j, k),
        location: loc,
        radius_mm: Some(2.5),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Positives contain their aneurysm (label 1, location set, dense
    /// target non-zero at the centre); negatives keep the exclusion radius
    /// and, for the uniform and vessel pools, the brain fraction; the pools
    /// get exactly their share.
    #[test]
    fn sampler_properties(
        seed in 0u64..1000,
        patch in prop::sample::select(vec![8usize, 12, 16]),
        fi in 14.0f64..26.0, fj in 14.0f64..26.0, fk in 14.0f64..26.0,
        w in prop::array::uniform3(0.0f64..3.0),
        negatives in 0usize..12,
        excl in 2.0f64..10.0,
        frac in 0.3f64..0.9,
    ) {
        let mut c = case(40, 17.0, 1.0, vec![finding(fi, fj, fk, Some(Location::BasilarTip))]);
        c.hard_negatives = vec![aneu::io::VoxelIndex::new(8, 20, 20), aneu::io::VoxelIndex::new(30, 20, 20)];
        let cfg = SamplerConfig::default()
            .with_patch_size(patch)
            .with_jitter(patch / 2 - 1)
            .with_negatives_per_case(negatives)
            .with_exclusion_radius_mm(excl)
            .with_min_brain_fraction(frac)
            .with_pools(PoolRatios { uniform: w[0], vessel: w[1], hard: w[2] });
        let sampler = PatchSampler::new(cfg.clone()).unwrap();
        sampler.prepare(&mut c);
        let cases = vec![c];
        let mut rng = StdRng::seed_from_u64(seed);
        let (specs, summary) = sampler.plan_epoch_with_summary(&cases, &mut rng);
        prop_assert_eq!(summary.positives, cfg.positives_per_finding);
        let want = sampler.allocate(negatives, [true, !cases[0].vessel_candidates().is_empty(), true]);
        // every pool filled, or the shortfall says why not
        let got = summary.negatives;
        prop_assert_eq!(got.iter().sum::<usize>() + summary.shortfall, negatives);
        for a in 0..3 {
            prop_assert!(got[a] <= want[a]);
        }
        if summary.shortfall == 0 {
            prop_assert_eq!(got, want);
        }
        let f = &cases[0].findings[0];
        for s in &specs {
            let p = sampler.extract(&cases, s);
            prop_assert_eq!(p.image.dim(), (patch, patch, patch));
            let ctr = s.centre.to_kji();
            match s.source {
                PatchSource::Positive => {
                    prop_assert_eq!(p.label, 1.0);
                    prop_assert_eq!(p.location_list(), vec![Location::BasilarTip]);
                    let start = patch_start(ctr, [patch; 3]);
                    let local = [f.voxel.k.round() as i64 - start[0], f.voxel.j.round() as i64 - start[1], f.voxel.i.round() as i64 - start[2]];
                    prop_assert!(p.dense[[local[0] as usize, local[1] as usize, local[2] as usize]] > 0.0);
                }
                src => {
                    let d = ((ctr[0] as f64 - f.voxel.k).powi(2) + (ctr[1] as f64 - f.voxel.j).powi(2) + (ctr[2] as f64 - f.voxel.i).powi(2)).sqrt();
                    prop_assert!(d >= excl, "{:?} centre {:?} is {} mm from the aneurysm", src, ctr, d);
                    if src != PatchSource::Hard {
                        let fr = mask_fraction(cases[0].mask.data(), patch_start(ctr, [patch; 3]), [patch; 3]);
                        prop_assert!(fr >= frac, "{:?} brain fraction {}", src, fr);
                    }
                }
            }
        }
        // the same seed plans the same epoch
        let again = sampler.plan_epoch(&cases, &mut StdRng::seed_from_u64(seed));
        prop_assert_eq!(again, specs);
    }

    /// Tiles cover every voxel, stay inside (or start at 0 on short axes),
    /// and the last one ends at the border.
    #[test]
    fn grid_tiles_cover_the_volume(
        dims in prop::array::uniform3(1usize..70),
        patch in prop::array::uniform3(1usize..33),
        overlap in 0.0f64..0.9,
    ) {
        let g = PatchGrid::new(aneu::io::GridSize::new(dims[2], dims[1], dims[0]), patch, overlap).unwrap();
        for a in 0..3 {
            let s = &g.starts()[a];
            prop_assert_eq!(s[0], 0);
            let last = *s.last().unwrap();
            if dims[a] >= patch[a] {
                prop_assert_eq!(last + patch[a], dims[a]);
            } else {
                prop_assert_eq!(s.len(), 1);
            }
            // consecutive windows overlap or touch, and steps do not exceed patch·(1 − overlap) rounded up
            for w in s.windows(2) {
                prop_assert!(w[1] > w[0]);
                prop_assert!(w[1] - w[0] <= ((patch[a] as f64 * (1.0 - overlap)).max(1.0)).ceil() as usize);
            }
        }
        let mut covered = Array3::<u8>::zeros((dims[0], dims[1], dims[2]));
        for t in g.tiles() {
            for k in t.start[0]..(t.start[0] + patch[0]).min(dims[0]) {
                for j in t.start[1]..(t.start[1] + patch[1]).min(dims[1]) {
                    for i in t.start[2]..(t.start[2] + patch[2]).min(dims[2]) {
                        covered[[k, j, i]] = 1;
                    }
                }
            }
        }
        prop_assert!(covered.iter().all(|v| *v == 1));
        prop_assert_eq!(g.tiles().count(), g.len());
    }

    /// Geometric transforms move image and dense target together (a copy
    /// of the image as the dense target stays equal to the image), flips
    /// of axis 2 and half turns swap left and right labels, intensity
    /// transforms leave the dense target and labels alone.
    #[test]
    fn augmentation_keeps_image_target_and_labels_aligned(seed in 0u64..10_000, n in 4usize..12) {
        let image = Array3::from_shape_fn((n, n, n), |(k, j, i)| ((k * 131 + j * 37 + i * 11) % 97) as f32 / 97.0);
        let mut locations = [0.0f32; 13];
        locations[Location::LeftMca.index()] = 1.0;
        locations[Location::AcomA.index()] = 1.0;
        let base = Patch {
            dense: image.clone(),
            image,
            label: 1.0,
            locations,
            position: [[0.1, 0.4], [0.2, 0.6], [0.3, 0.8]],
            vessels: None,
            spec: PatchSpec { case: 0, centre: aneu::io::VoxelIndex::new(0, 0, 0), source: PatchSource::Positive },
        };
        let mut rng = StdRng::seed_from_u64(seed);
        // geometric
        let geo = Compose(vec![
            Transform::Flip(RandFlip { axis: 0, p: 0.5 }),
            Transform::Flip(RandFlip { axis: 1, p: 0.5 }),
            Transform::Flip(RandFlip { axis: 2, p: 0.5 }),
            Transform::Rot90(RandRot90 { p: 0.7, quarter_turns: true }),
            Transform::Affine(RandAffine { p: 0.5, max_rotation_deg: 15.0, scale: [0.85, 1.15] }),
        ]);
        let mut p = base.clone();
        geo.apply(&mut p, &mut rng);
        prop_assert_eq!(&p.image, &p.dense);
        prop_assert_eq!(p.label, 1.0);
        let left = p.locations[Location::LeftMca.index()] == 1.0;
        let right = p.locations[Location::RightMca.index()] == 1.0;
        prop_assert!(left != right, "exactly one side");
        prop_assert_eq!(p.locations[Location::AcomA.index()], 1.0);
        prop_assert_eq!(p.locations.iter().sum::<f32>(), 2.0);
        // position ranges are permuted, reversed or mirrored, never stretched
        let mut widths: Vec<f32> = p.position.iter().map(|r| (r[1] - r[0]).abs()).collect();
        widths.sort_by(f32::total_cmp);
        for (w, want) in widths.iter().zip([0.3, 0.4, 0.5]) {
            prop_assert!((w - want).abs() < 1e-6, "{:?}", p.position);
        }
        prop_assert!(p.position.iter().flatten().all(|v| (0.0..=1.0).contains(v)));
        // intensity
        let int = Compose(vec![
            Transform::ScaleShift(RandScaleShift { p: 1.0, scale: [0.5, 2.0], shift: [-1.0, 1.0] }),
            Transform::Gamma(RandGamma { p: 1.0, gamma: [0.5, 2.0] }),
            Transform::GaussianNoise(RandGaussianNoise { p: 1.0, max_std: 0.2 }),
            Transform::BiasField(RandBiasField { p: 1.0, max_coefficient: 0.5 }),
        ]);
        let mut q = base.clone();
        int.apply(&mut q, &mut rng);
        prop_assert_eq!(&q.dense, &base.dense);
        prop_assert_eq!(q.locations, base.locations);
        prop_assert!(q.image.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn a_certain_left_right_flip_swaps_sides_and_mirrors_the_array() {
    let image = Array3::from_shape_fn((2, 2, 3), |(k, j, i)| (k * 6 + j * 3 + i) as f32);
    let mut locations = [0.0f32; 13];
    locations[Location::RightPcomA.index()] = 1.0;
    // vessel labels: right PComm in the first column, AComm in the second,
    // background in the third
    let labels = [Location::RightPcomA.vessel_label(), Location::AcomA.vessel_label(), 0];
    let vessels = Array3::from_shape_fn((2, 2, 3), |(_, _, i)| labels[i]);
    let mut p = Patch {
        dense: image.mapv(|v| v * 2.0),
        image: image.clone(),
        label: 1.0,
        locations,
        position: [[0.0, 1.0]; 3],
        vessels: Some(vessels),
        spec: PatchSpec {
            case: 0,
            centre: aneu::io::VoxelIndex::new(0, 0, 0),
            source: PatchSource::Positive,
        },
    };
    RandFlip { axis: 2, p: 1.0 }.apply(&mut p, &mut StdRng::seed_from_u64(0));
    assert_eq!(p.location_list(), vec![Location::LeftPcomA]);
    for ((k, j, i), v) in p.image.indexed_iter() {
        assert_eq!(*v, image[[k, j, 2 - i]]);
        assert_eq!(p.dense[[k, j, i]], 2.0 * image[[k, j, 2 - i]]);
    }
    // the patch of the mirrored head: the i range mirrors about the
    // midline (the whole head's [0, 1] stays [0, 1])
    assert_eq!(p.position[2], [0.0, 1.0]);
    // the labels move with the voxels, and the right PComm becomes the left
    let flipped = p.vessels.as_ref().unwrap();
    for ((_, _, i), v) in flipped.indexed_iter() {
        let want = [0, Location::AcomA.vessel_label(), Location::LeftPcomA.vessel_label()][i];
        assert_eq!(*v, want, "column {i}");
    }
}

/// Whatever flips and half turns do, every left artery voxel keeps an `i`
/// coordinate channel value below the midline's 0.5 and every right one
/// above it (`i` runs left → right), as in an unaugmented head: the
/// coordinate a network sees tells it the side the labels give. Patches in
/// the left half, the right half and across the midline. (Reversing the
/// `i` range with a left-right flip while mirroring the labels broke this,
/// and so did keeping it: a patch of the left half then held right labels.)
#[test]
fn the_i_coordinate_and_the_sides_of_the_labels_agree() {
    let n = 6;
    let (left, right) = (Location::LeftMca.vessel_label(), Location::RightMca.vessel_label());
    let geo = Compose(vec![
        Transform::Flip(RandFlip { axis: 0, p: 0.5 }),
        Transform::Flip(RandFlip { axis: 1, p: 0.5 }),
        Transform::Flip(RandFlip { axis: 2, p: 0.5 }),
        Transform::Rot90(RandRot90 {
            p: 0.5,
            quarter_turns: false,
        }),
    ]);
    // (i range, label of the low-i half, label of the high-i half), each
    // on its anatomical side; the labels fill the rows j < 3
    let patches = [
        ([0.05f32, 0.45], left, left),
        ([0.55, 0.95], right, right),
        ([0.2, 0.8], left, right),
    ];
    for (range, low, high) in patches {
        let vessels = Array3::from_shape_fn((n, n, n), |(_, j, i)| match (j < 3, i < 3) {
            (true, true) => low,
            (true, false) => high,
            _ => 0,
        });
        let base = Patch {
            image: vessels.mapv(f32::from),
            dense: vessels.mapv(f32::from),
            label: 1.0,
            locations: [0.0; 13],
            position: [[0.1, 0.4], [0.2, 0.5], range],
            vessels: Some(vessels),
            spec: PatchSpec {
                case: 0,
                centre: aneu::io::VoxelIndex::new(0, 0, 0),
                source: PatchSource::Positive,
            },
        };
        let mut mirrored = 0;
        for seed in 0..64 {
            let mut p = base.clone();
            geo.apply(&mut p, &mut StdRng::seed_from_u64(seed));
            let v = p.vessels.as_ref().unwrap();
            let coords = p.position_channels();
            let i_channel = &coords[2 * n * n * n..];
            let mut labelled = 0;
            for (l, c) in v.iter().zip(i_channel) {
                if *l == left {
                    assert!(*c < 0.5, "seed {seed}, range {range:?}: a left label at i = {c}");
                } else if *l == right {
                    assert!(*c > 0.5, "seed {seed}, range {range:?}: a right label at i = {c}");
                } else {
                    continue;
                }
                labelled += 1;
            }
            assert_eq!(labelled, n * 3 * n, "seed {seed}: no label is lost");
            mirrored += usize::from(p.position[2] != range);
        }
        assert!(mirrored > 16, "the left-right flips ran ({mirrored} of 64)");
    }
}

#[test]
fn augmentation_configs_round_trip_through_json() {
    let c = Compose::standard();
    let json = serde_json::to_string(&c).unwrap();
    assert!(json.contains(r#""type":"flip""#), "{json}");
    let back: Compose = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    let cfg = SamplerConfig::default();
    let back: SamplerConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
    // partial JSON fills the defaults
    let partial: SamplerConfig = serde_json::from_str(r#"{"patch_size": 48, "pools": {"hard": 0}}"#).unwrap();
    assert_eq!(partial.patch_size, 48);
    assert_eq!(partial.pools.uniform, 1.0);
    assert_eq!(partial.pools.hard, 0.0);
}

#[test]
fn bad_cases_and_configs_are_typed_errors() {
    let a = Affine::identity();
    let img = Volume::new(Array3::<f32>::zeros((4, 4, 4)), a).unwrap();
    let small = Volume::new(Array3::<u8>::ones((4, 4, 3)), a).unwrap();
    let e = Case::new("s1", img.clone(), small, vec![]).unwrap_err();
    assert!(e.to_string().contains("s1") && e.to_string().contains("size"), "{e}");
    let mut nan = img.clone();
    nan.data_mut()[[1, 2, 3]] = f32::NAN;
    let e = Case::new("s2", nan, img.map(|_| 1u8), vec![]).unwrap_err();
    assert!(e.to_string().contains("non-finite"), "{e}");
    let e = Case::new("s3", img.clone(), img.map(|_| 0u8), vec![]).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let e = Case::new("s4", img.clone(), img.map(|_| 1u8), vec![finding(9.0, 1.0, 1.0, None)]).unwrap_err();
    assert!(e.to_string().contains("outside"), "{e}");
    for bad in [
        SamplerConfig::default().with_patch_size(16).with_jitter(8),
        SamplerConfig::default().with_min_brain_fraction(1.5),
        SamplerConfig::default().with_pools(PoolRatios {
            uniform: -1.0,
            vessel: 0.0,
            hard: 0.0,
        }),
        SamplerConfig::default().with_patch_size(2),
        SamplerConfig::default().with_size_weighting(SizeWeighting {
            reference_mm: 3.0,
            max_factor: 0.5,
        }),
        SamplerConfig::default().with_size_weighting(SizeWeighting {
            reference_mm: f64::NAN,
            max_factor: 2.0,
        }),
    ] {
        assert!(matches!(PatchSampler::new(bad), Err(Error::InvalidConfig(_))));
    }
    assert!(PatchGrid::new(aneu::io::GridSize::new(4, 4, 4), [2; 3], 1.0).is_err());
}

/// With size weighting a small aneurysm gets more positive patches than a
/// large one, as many as the formula says, each holding its own aneurysm;
/// an aneurysm of unknown radius counts as `default_radius_mm`.
#[test]
fn size_weighting_gives_small_aneurysms_more_positives() {
    let with_radius = |i: f64, r: Option<f64>| Finding {
        voxel: Voxel::new(i, 20.0, 20.0),
        location: None,
        radius_mm: r,
    };
    let mut c = case(
        40,
        17.0,
        1.0,
        vec![
            with_radius(12.0, Some(1.0)),
            with_radius(28.0, Some(4.0)),
            with_radius(20.0, None),
        ],
    );
    let w = SizeWeighting {
        reference_mm: 3.0,
        max_factor: 3.0,
    };
    let cfg = SamplerConfig::default()
        .with_patch_size(8)
        .with_jitter(2)
        .with_positives_per_finding(4)
        .with_negatives_per_case(0)
        .with_size_weighting(w);
    let sampler = PatchSampler::new(cfg.clone()).unwrap();
    sampler.prepare(&mut c);
    let cases = vec![c];
    let (specs, summary) = sampler.plan_epoch_with_summary(&cases, &mut StdRng::seed_from_u64(5));
    // radius 1: (3/1)² = 9, capped at 3 → 12; radius 4: below 1 → 4;
    // unknown: the default 3 mm → 4
    assert_eq!(summary.positives, 12 + 4 + 4);
    let near = |x: f64| {
        specs
            .iter()
            .filter(|s| (s.centre.to_kji()[2] as f64 - x).abs() <= 2.0)
            .count()
    };
    assert_eq!([near(12.0), near(28.0), near(20.0)], [12, 4, 4]);
    assert_eq!(cfg.positives_for(Some(1.5)), 12);
    assert_eq!(cfg.positives_for(Some(2.0)), 9);
    let json = serde_json::to_string(&cfg).unwrap();
    assert_eq!(serde_json::from_str::<SamplerConfig>(&json).unwrap(), cfg);
    assert!(
        !serde_json::to_string(&SamplerConfig::default())
            .unwrap()
            .contains("size_weighting")
    );
}

/// The vessel pool lands on the bright lines of the synthetic case, and
/// the dense target of anisotropic spacing is measured in mm.
#[test]
fn vessel_pool_follows_the_vessels() {
    let mut c = case(40, 17.0, 1.0, vec![]);
    let sampler = PatchSampler::new(SamplerConfig::default().with_patch_size(8).with_jitter(2)).unwrap();
    sampler.prepare(&mut c);
    let v = c.vessel_candidates();
    assert!(v.len() > 20, "{}", v.len());
    let ctr = 19.5;
    for p in v {
        let on_a = ((p.k as f64 - ctr).powi(2) + (p.j as f64 - ctr - 3.0).powi(2)).sqrt() <= 2.0;
        let on_b = ((p.k as f64 - ctr + 4.0).powi(2) + (p.i as f64 - ctr).powi(2)).sqrt() <= 2.0;
        assert!(on_a || on_b, "{p:?} is on no vessel");
    }
}

//! aneu-preproc against SimpleITK (`ref_resample.py` outputs in
//! `tests/data/ref/resample`), analytic normalisation cases, properties.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aneu::io::{Affine, Volume, read_nifti};
use aneu::preproc::*;
use ndarray::Array3;
use proptest::prelude::*;

/// Dice of two binary masks given voxel by voxel, with the voxel counts of
/// each and of their intersection.
fn overlap(x: impl Iterator<Item = bool>, y: impl Iterator<Item = bool>) -> (f64, usize, usize, usize) {
    let (mut inter, mut a, mut b) = (0usize, 0usize, 0usize);
    for (x, y) in x.zip(y) {
        inter += usize::from(x && y);
        a += usize::from(x);
        b += usize::from(y);
    }
    (2.0 * inter as f64 / (a + b) as f64, a, b, inter)
}

fn data(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// Identical output grids; linear within 1e-3 of the input range, nearest
/// exact, B-spline within 1e-2 of the range.
#[test]
fn resampling_matches_simpleitk() {
    for (input, name, spacing) in [
        ("nifti/nibabel_anatomical.nii", "anatomical_1.5", 1.5),
        ("nifti/dipy_aniso_vox.nii.gz", "aniso_3", 3.0),
        ("nifti/qform_only_oblique.nii.gz", "oblique_0.7", 0.7),
    ] {
        let vol = read_nifti(data(input)).unwrap();
        let (lo, hi) = vol
            .as_slice()
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let range = f64::from(hi - lo);
        for (interp, key, tol) in [
            (Interpolator::Linear, "linear", 1e-3),
            (Interpolator::Nearest, "nearest", 0.0),
            (Interpolator::BSpline, "bspline", 1e-2),
        ] {
            let ours = resample_with_options(
                &vol,
                &ResampleOptions::default()
                    .with_isotropic(spacing)
                    .with_interpolator(interp),
            )
            .unwrap();
            let theirs = read_nifti(data(&format!("ref/resample/{name}_{key}.nii.gz"))).unwrap();
            assert_eq!(ours.size(), theirs.size(), "{name} {key}");
            assert!(
                ours.affine().max_abs_diff(theirs.affine()) < 1e-4,
                "{name} {key}: grids differ"
            );
            let mut worst: f64 = 0.0;
            let mut ties = 0;
            for ((k, j, i), a) in ours.data().indexed_iter() {
                let b = theirs.data()[[k, j, i]];
                let d = f64::from((a - b).abs());
                if interp == Interpolator::Nearest && d > 0.0 {
                    // SimpleITK takes this file's geometry from the qform, aneu from the
                    // sform (as nibabel); they differ by ~1e-8 voxel, which decides
                    // half-voxel ties (within 1e-4 voxel) either way. Only ties may differ.
                    let c = vol.world_to_voxel(ours.voxel_to_world(aneu::io::Voxel::new(i as f64, j as f64, k as f64)));
                    let tie = [c.i, c.j, c.k].iter().any(|x| (x - x.floor() - 0.5).abs() < 1e-4);
                    assert!(tie, "{name} nearest: voxel ({i}, {j}, {k}) differs off a tie: {c:?}");
                    ties += 1;
                    continue;
                }
                worst = worst.max(d);
            }
            assert!(worst <= tol * range, "{name} {key}: max |Δ| = {worst} (range {range})");
            if name != "aniso_3" {
                assert_eq!(ties, 0, "{name} {key}");
            }
        }
    }
}

fn random_volume(seed: u64, n: (usize, usize, usize), sp: [f64; 3]) -> Volume<f32> {
    let mut x = seed;
    let d = Array3::from_shape_fn(n, |_| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((x >> 40) % 1000) as f32
    });
    let a = Affine::from_parts(
        [[-sp[0], 0.0, 0.0], [0.0, sp[1], 0.0], [0.0, 0.0, sp[2]]],
        [3.0, -2.0, 1.0],
    )
    .unwrap();
    Volume::new(d, a).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Resampling to the input's own spacing is the identity: exact for
    /// linear and nearest, and the interpolating B-spline reproduces the
    /// samples.
    #[test]
    fn same_spacing_is_identity(seed in any::<u64>(), n in (2usize..9, 2usize..9, 2usize..9),
                                sp in prop::array::uniform3(0.5f64..3.0)) {
        let v = random_volume(seed, n, sp);
        for interp in [Interpolator::Linear, Interpolator::Nearest, Interpolator::BSpline] {
            let r = resample_with_options(&v, &ResampleOptions::default().with_spacing(sp).with_interpolator(interp)).unwrap();
            prop_assert_eq!(r.size(), v.size());
            let tol = match interp { Interpolator::BSpline => 1e-2, Interpolator::Linear => 1e-6 * 1000.0, Interpolator::Nearest => 0.0 };
            for (a, b) in r.as_slice().iter().zip(v.as_slice()) {
                prop_assert!((a - b).abs() <= tol, "{:?}: {} vs {}", interp, a, b);
            }
        }
    }

    /// Every output voxel keeps its world position on SimpleITK's grid:
    /// same origin and direction.
    #[test]
    fn output_grid_rule(seed in any::<u64>(), n in (2usize..9, 2usize..9, 2usize..9),
                        sp in prop::array::uniform3(0.5f64..3.0), new in 0.4f64..2.5) {
        let v = random_volume(seed, n, sp);
        let r = resample_with_options(&v, &ResampleOptions::default().with_isotropic(new)).unwrap();
        prop_assert!(r.origin().distance(&v.origin()) < 1e-9);
        let (dv, dr) = (v.direction(), r.direction());
        for i in 0..3 { for j in 0..3 { prop_assert!((dv[i][j] - dr[i][j]).abs() < 1e-12); } }
        let want = [n.2, n.1, n.0].iter().zip(sp).map(|(&n, s)| ((n as f64 * s / new).round_ties_even() as usize).max(1)).collect::<Vec<_>>();
        prop_assert_eq!(r.size().to_ijk().to_vec(), want);
    }
}

fn vol(values: &[f32]) -> Volume<f32> {
    Volume::new(
        Array3::from_shape_vec((1, 1, values.len()), values.to_vec()).unwrap(),
        Affine::identity(),
    )
    .unwrap()
}

#[test]
fn normalisations_by_hand() {
    let v = vol(&[1.0, 2.0, 3.0, 4.0, 10.0]);
    let z = normalize(&v, Normalization::ZScore, None).unwrap();
    let (mean, std) = (4.0f64, ((9.0f64 + 4.0 + 1.0 + 0.0 + 36.0) / 5.0).sqrt());
    for (a, b) in z.as_slice().iter().zip([1.0, 2.0, 3.0, 4.0, 10.0]) {
        assert!((f64::from(*a) - (b - mean) / std).abs() < 1e-6);
    }
    // median 3, q25 2, q75 4 → IQR 2
    let r = normalize(&v, Normalization::RobustZ, None).unwrap();
    assert_eq!(r.as_slice(), &[-1.0, -0.5, 0.0, 0.5, 3.5]);
    let m = normalize(&v, Normalization::MinMax, None).unwrap();
    assert_eq!(m.as_slice(), &[0.0, 1.0 / 9.0, 2.0 / 9.0, 3.0 / 9.0, 1.0]);
    // 25th and 75th percentiles: 2 and 4
    let p = normalize(&v, Normalization::Percentile { lo: 25.0, hi: 75.0 }, None).unwrap();
    assert_eq!(p.as_slice(), &[0.0, 0.0, 0.5, 1.0, 1.0]);
    let w = normalize(
        &vol(&[0.0, 300.0, 600.0, 1000.0]),
        Normalization::Window(CtWindow::ANGIO),
        None,
    )
    .unwrap();
    assert_eq!(w.as_slice(), &[0.0, 0.5, 1.0, 1.0]);
    assert_eq!(CtWindow::preset("brain"), Some(CtWindow::BRAIN));
    // statistics inside a mask
    let mask = Volume::new(
        Array3::from_shape_vec((1, 1, 5), vec![1u8, 1, 1, 0, 0]).unwrap(),
        Affine::identity(),
    )
    .unwrap();
    let mm = normalize(&v, Normalization::MinMax, Some(&mask)).unwrap();
    assert_eq!(mm.as_slice(), &[0.0, 0.5, 1.0, 1.0, 1.0]);
}

#[test]
fn normalisation_errors() {
    let v = vol(&[1.0, 1.0]);
    assert!(matches!(
        normalize(&v, Normalization::ZScore, None),
        Err(Error::Degenerate(_))
    ));
    let empty = Volume::new(
        Array3::from_shape_vec((1, 1, 2), vec![0u8, 0]).unwrap(),
        Affine::identity(),
    )
    .unwrap();
    assert!(matches!(
        normalize(&vol(&[1.0, 2.0]), Normalization::MinMax, Some(&empty)),
        Err(Error::InvalidMask(_))
    ));
    assert!(matches!(
        normalize(&vol(&[1.0, f32::NAN]), Normalization::MinMax, None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        normalize(
            &vol(&[1.0, 2.0]),
            Normalization::Percentile { lo: 80.0, hi: 20.0 },
            None
        ),
        Err(Error::InvalidArgument(_))
    ));
    let bad = ResampleOptions::default().with_isotropic(0.0);
    assert!(resample_with_options(&vol(&[1.0, 2.0]), &bad).is_err());
}

mod pipeline {
    use std::path::{Path, PathBuf};

    use aneu::phantom::{PhantomConfig, SizePreset, generate, read_truth};
    use aneu::preproc::{PreprocessConfig, Shard, preprocess_dataset};

    fn phantoms(dir: &Path, n: usize, seed: u64) -> PathBuf {
        let root = dir.join("rsna");
        generate(
            &PhantomConfig::new(n, seed, SizePreset::Tiny).with_label_maps(false),
            &root,
        )
        .unwrap();
        root
    }

    fn nifti_files(out: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(out).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                for f in ["image.nii.gz", "mask.nii.gz", "meta.json"] {
                    v.push((p.strip_prefix(out).unwrap().join(f), std::fs::read(p.join(f)).unwrap()));
                }
            }
        }
        v.sort();
        v
    }

    /// The same labels on another grid: axes i and k swapped and the new k
    /// flipped, the affine changed to match, so every label keeps its
    /// world position: voxel (i', j', k') holds voxel (n_i − 1 − k', j', i').
    fn transposed_flipped(v: &aneu::io::Volume<u8>) -> aneu::io::Volume<u8> {
        let [ni, nj, nk] = v.size().to_ijk();
        let data = ndarray::Array3::from_shape_fn((ni, nj, nk), |(kp, jp, ip)| v.data()[[ip, jp, ni - 1 - kp]]);
        let m = v.affine().linear();
        let o = v.origin().to_array();
        let linear: [[f64; 3]; 3] = std::array::from_fn(|r| [m[r][2], m[r][1], -m[r][0]]);
        let origin: [f64; 3] = std::array::from_fn(|r| o[r] + m[r][0] * (ni - 1) as f64);
        aneu::io::Volume::new(data, aneu::io::Affine::from_parts(linear, origin).unwrap()).unwrap()
    }

    /// Share of the voxels labelled in either map that carry the same label
    /// in both.
    fn agreement(a: &aneu::io::Volume<u8>, b: &aneu::io::Volume<u8>) -> f64 {
        let (mut same, mut any) = (0usize, 0usize);
        for (x, y) in a.as_slice().iter().zip(b.as_slice()) {
            if *x != 0 || *y != 0 {
                any += 1;
                same += usize::from(x == y);
            }
        }
        same as f64 / any.max(1) as f64
    }

    /// RSNA's `segmentations/<uid>/<uid>_cowseg.nii` reaches the
    /// preprocessed grid in world space (nearest neighbour): a label map
    /// stored on a transposed, flipped grid gives the labels of the
    /// original, and each aneurysm's centre carries its location's label;
    /// a label map with a value that is no label, a folder without the
    /// file and a segmentation of a series the dataset lacks are each
    /// listed with their reason, and every series is still preprocessed.
    #[test]
    fn vessel_segmentations_reach_the_output_grid() {
        use aneu::io::{Location, RsnaDataset, read_vessel_labels, write_nifti};
        use aneu::preproc::{VesselLabelSource, labels_on_grid, read_preprocessed};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rsna");
        generate(
            &PhantomConfig::new(6, 31, SizePreset::Tiny).with_positive_rate(1.0),
            &root,
        )
        .unwrap();
        let uids: Vec<String> = RsnaDataset::open(&root)
            .unwrap()
            .series_uids()
            .map(String::from)
            .collect();
        let seg = |uid: &str| {
            root.join("segmentations")
                .join(uid)
                .join(format!("{uid}_cowseg.nii.gz"))
        };
        let original = read_vessel_labels(seg(&uids[0])).unwrap();
        write_nifti(&transposed_flipped(&original), seg(&uids[0])).unwrap();
        let mut bad = read_vessel_labels(seg(&uids[1])).unwrap();
        bad.data_mut()[[1, 2, 3]] = 99;
        write_nifti(&bad, seg(&uids[1])).unwrap();
        std::fs::remove_file(seg(&uids[2])).unwrap();
        let orphan = root.join("segmentations").join("1.2.3");
        std::fs::create_dir_all(&orphan).unwrap();
        write_nifti(&original, orphan.join("1.2.3_cowseg.nii")).unwrap();

        let out = dir.path().join("out");
        // the head mask (the labels are the subject here, and a tiny
        // phantom's skull stripping may find no intracranial compartment)
        let mut cfg = PreprocessConfig::default();
        for steps in [&mut cfg.cta, &mut cfg.mra, &mut cfg.t1post, &mut cfg.t2] {
            steps.mask = aneu::preproc::MaskMethod::Head;
        }
        let s = preprocess_dataset(&root, &out, &cfg, Shard::default(), &|_| {}).unwrap();
        let errors = std::fs::read_to_string(out.join("errors.csv")).unwrap();
        assert_eq!((s.done, s.failed), (6, 0), "{s:?} {errors}");
        let warnings = std::fs::read_to_string(out.join("warnings.csv")).unwrap();

        let mut centres = 0;
        for uid in [&uids[0], &uids[3], &uids[4], &uids[5]] {
            let p = read_preprocessed(out.join(uid)).unwrap();
            assert!(matches!(p.meta.vessel_labels, VesselLabelSource::File { .. }), "{uid}");
            let v = p.vessels.as_ref().unwrap();
            for a in &read_truth(&root, uid).unwrap().aneurysms {
                if a.radius_mm < 1.5 {
                    continue;
                }
                let c = p.image.world_to_voxel(a.centre_world);
                let at = c.nearest_index(v.size()).and_then(|i| v.get(i).copied());
                let location: Location = a.location.parse().unwrap();
                assert_eq!(at, Some(location.vessel_label()), "{uid}: {}", a.location);
                centres += 1;
            }
        }
        assert!(centres >= 3, "only {centres} aneurysm centres checked");
        // the transposed, flipped file gives the original's labels
        let p0 = read_preprocessed(out.join(&uids[0])).unwrap();
        let direct = labels_on_grid(&original, p0.image.affine(), p0.image.size()).unwrap();
        let e = agreement(p0.vessels.as_ref().unwrap(), &direct);
        assert!(e > 0.999, "agreement {e}");
        // and a flip the affine does not follow would not
        let mut flipped = original.clone();
        let [ni, _, _] = original.size().to_ijk();
        for ((k, j, i), x) in flipped.data_mut().indexed_iter_mut() {
            *x = original.data()[[k, j, ni - 1 - i]];
        }
        let wrong = labels_on_grid(&flipped, p0.image.affine(), p0.image.size()).unwrap();
        assert!(agreement(&wrong, &direct) < 0.5);

        let p1 = read_preprocessed(out.join(&uids[1])).unwrap();
        assert!(p1.vessels.is_none());
        let VesselLabelSource::Failed { reason, .. } = &p1.meta.vessel_labels else {
            panic!("{:?}", p1.meta.vessel_labels)
        };
        assert!(
            reason.contains("_cowseg.nii") && reason.contains("value 99"),
            "{reason}"
        );
        assert!(
            warnings.contains(&uids[1]) && warnings.contains("value 99"),
            "{warnings}"
        );
        let p2 = read_preprocessed(out.join(&uids[2])).unwrap();
        assert_eq!(p2.meta.vessel_labels, VesselLabelSource::None);
        assert!(warnings.contains(&format!("no {}_cowseg.nii", uids[2])), "{warnings}");
        assert!(
            warnings.contains("1.2.3") && warnings.contains("no such series"),
            "{warnings}"
        );
    }

    /// Every series is written with its annotations on the output grid;
    /// a second run skips them all and changes no byte.
    #[test]
    fn dataset_run_writes_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let root = phantoms(dir.path(), 6, 31);
        let out = dir.path().join("out");
        let cfg = PreprocessConfig::default();
        let s = preprocess_dataset(&root, &out, &cfg, Shard::default(), &|_| {}).unwrap();
        let errors = std::fs::read_to_string(out.join("errors.csv")).unwrap();
        assert_eq!((s.done, s.skipped, s.failed), (6, 0, 0), "{errors}");
        let first = nifti_files(&out);
        assert_eq!(first.len(), 18);
        for (p, bytes) in &first {
            if p.ends_with("meta.json") {
                let m: serde_json::Value = serde_json::from_slice(bytes).unwrap();
                let uid = m["series_uid"].as_str().unwrap();
                let truth = read_truth(&root, uid).unwrap();
                let spacing = m["after"]["affine"][0][0].as_f64().unwrap().abs();
                assert!((spacing - 1.0).abs() < 1e-9);
                for (a, t) in m["annotations"].as_array().unwrap().iter().zip(&truth.aneurysms) {
                    let w = &a["world"];
                    let d = ((w["x"].as_f64().unwrap() - t.centre_world.x).powi(2)
                        + (w["y"].as_f64().unwrap() - t.centre_world.y).powi(2)
                        + (w["z"].as_f64().unwrap() - t.centre_world.z).powi(2))
                    .sqrt();
                    // the localizer sits on the nearest slice: within half a slice
                    assert!(d <= 0.5 * truth.affine.spacing()[2] + 1e-6, "{uid}: {d} mm");
                }
            }
        }
        let index = std::fs::read_to_string(out.join("index.csv")).unwrap();
        assert_eq!(index.lines().count(), 7);
        // read_stored: the series on its sidecar's grid, for its own config
        // hash and modality only
        let (meta_path, bytes) = first.iter().find(|(p, _)| p.ends_with("meta.json")).unwrap();
        let uid = meta_path.parent().unwrap().to_str().unwrap();
        let meta: aneu::preproc::PreprocessMeta = serde_json::from_slice(bytes).unwrap();
        let stored = aneu::preproc::read_stored(&out, uid, &cfg.hash().unwrap(), meta.modality)
            .unwrap()
            .unwrap();
        assert_eq!(*stored.image.affine(), meta.after.affine);
        assert_eq!(
            stored.image.data(),
            aneu::preproc::read_preprocessed(out.join(uid)).unwrap().image.data()
        );
        let other = if meta.modality == aneu::io::Modality::Cta {
            aneu::io::Modality::Mra
        } else {
            aneu::io::Modality::Cta
        };
        assert!(
            aneu::preproc::read_stored(&out, uid, &cfg.hash().unwrap(), other)
                .unwrap()
                .is_none()
        );
        assert!(
            aneu::preproc::read_stored(&out, uid, "0000000000000000", meta.modality)
                .unwrap()
                .is_none()
        );
        assert!(
            aneu::preproc::read_stored(&out, "no.such.series", &cfg.hash().unwrap(), meta.modality)
                .unwrap()
                .is_none()
        );
        let s = preprocess_dataset(&root, &out, &cfg, Shard::default(), &|_| {}).unwrap();
        assert_eq!((s.done, s.skipped, s.failed), (0, 6, 0));
        assert_eq!(nifti_files(&out), first);
        // a series written by a release before the version salt (its hash is
        // that of the config's JSON alone) is done again, to the same bytes
        let (meta_path, bytes) = first.iter().find(|(p, _)| p.ends_with("meta.json")).unwrap();
        let mut meta: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let unsalted = aneu::preproc::stable_hash(serde_json::to_string(&cfg).unwrap());
        assert_ne!(meta["config_hash"], serde_json::json!(unsalted));
        meta["config_hash"] = serde_json::json!(unsalted);
        std::fs::write(out.join(meta_path), serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
        let s = preprocess_dataset(&root, &out, &cfg, Shard::default(), &|_| {}).unwrap();
        assert_eq!((s.done, s.skipped, s.failed), (1, 5, 0));
        assert_eq!(nifti_files(&out), first);
        // shards partition the series
        let o2 = dir.path().join("sharded");
        let a = preprocess_dataset(&root, &o2, &cfg, "0/2".parse().unwrap(), &|_| {}).unwrap();
        let b = preprocess_dataset(&root, &o2, &cfg, "1/2".parse().unwrap(), &|_| {}).unwrap();
        assert_eq!((a.done, b.done), (3, 3));
        assert_eq!(nifti_files(&o2), first);
    }

    /// An external mask (`<dir>/<uid>.nii.gz`, here the ground-truth
    /// cavity) is carried onto the image grid exactly: with reorientation
    /// only, the output mask is the truth on the canonical grid.
    #[test]
    fn external_masks_are_used() {
        use aneu::preproc::MaskMethod;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rsna");
        generate(&PhantomConfig::new(3, 34, SizePreset::Tiny), &root).unwrap();
        let masks = dir.path().join("masks");
        std::fs::create_dir_all(&masks).unwrap();
        for e in std::fs::read_dir(root.join("ground_truth")).unwrap() {
            let p = e.unwrap().path();
            let uid = p.file_name().unwrap().to_str().unwrap().to_string();
            std::fs::copy(p.join("brain.nii.gz"), masks.join(format!("{uid}.nii.gz"))).unwrap();
        }
        let mut cfg = PreprocessConfig::default();
        for s in [&mut cfg.cta, &mut cfg.mra, &mut cfg.t1post, &mut cfg.t2] {
            s.mask = MaskMethod::External { dir: masks.clone() };
            s.resample = None;
            s.n4 = None;
        }
        let out = dir.path().join("out");
        let s = preprocess_dataset(&root, &out, &cfg, Shard::default(), &|_| {}).unwrap();
        assert_eq!(
            (s.done, s.failed),
            (3, 0),
            "{}",
            std::fs::read_to_string(out.join("errors.csv")).unwrap()
        );
        for e in std::fs::read_dir(&masks).unwrap() {
            let p = e.unwrap().path();
            let uid = p
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches(".nii.gz")
                .to_string();
            let truth = aneu::io::read_nifti(&p).unwrap().to_canonical().unwrap();
            let got = aneu::io::read_nifti(out.join(&uid).join("mask.nii.gz")).unwrap();
            assert_eq!(got.size(), truth.size());
            assert!(got.affine().max_abs_diff(truth.affine()) < 1e-5);
            assert_eq!(got.data(), truth.data(), "{uid}");
        }
        // a missing mask fails that series only, with the path in errors.csv
        std::fs::remove_file(std::fs::read_dir(&masks).unwrap().next().unwrap().unwrap().path()).unwrap();
        let out2 = dir.path().join("out2");
        let s = preprocess_dataset(&root, &out2, &cfg, Shard::default(), &|_| {}).unwrap();
        assert_eq!((s.done, s.failed), (2, 1));
        assert!(
            std::fs::read_to_string(out2.join("errors.csv"))
                .unwrap()
                .contains(".nii.gz")
        );
    }

    /// Atlas registration recovers a known rigid move, and `MaskMethod::Atlas`
    /// carries the atlas mask through the pipeline: a T1post phantom,
    /// skull-stripped by its ground-truth cavity and moved by 4° and
    /// (4, −6, 5) mm, is the atlas of itself.
    #[test]
    fn atlas_registration_recovers_a_known_move() {
        use aneu::io::{Affine, RsnaDataset, write_nifti};
        use aneu::preproc::{Atlas, MaskMethod, RegistrationOptions, register_affine};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rsna");
        generate(
            &PhantomConfig::new(1, 51, SizePreset::Small).with_modalities(&[aneu::io::Modality::MriT1post]),
            &root,
        )
        .unwrap();
        let ds = RsnaDataset::open(&root).unwrap();
        let uid = ds.series_uids().next().unwrap().to_string();
        let img = ds.read_series(&uid).unwrap().volume.to_canonical().unwrap();
        let gt = aneu::io::read_nifti(root.join("ground_truth").join(&uid).join("brain.nii.gz"))
            .unwrap()
            .to_canonical()
            .unwrap();
        // the move M: world ↦ R · world + d
        let (c, s) = (4f64.to_radians().cos(), 4f64.to_radians().sin());
        let r = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]];
        let d = [4.0, -6.0, 5.0];
        let mv = |p: [f64; 3]| -> [f64; 3] {
            std::array::from_fn(|a| r[a][0] * p[0] + r[a][1] * p[1] + r[a][2] * p[2] + d[a])
        };
        let l = img.affine().linear();
        let moved_linear: [[f64; 3]; 3] =
            std::array::from_fn(|a| std::array::from_fn(|b| (0..3).map(|k| r[a][k] * l[k][b]).sum()));
        let moved = Affine::from_parts(moved_linear, mv(img.origin().to_array())).unwrap();
        let stripped = ndarray::Zip::from(&img.data())
            .and(&gt.data())
            .map_collect(|v, m| if *m != 0.0 { *v } else { 0.0 });
        let t_img = aneu::io::Volume::new(stripped, moved).unwrap();
        let t_mask = aneu::io::Volume::new(gt.data().to_owned(), moved).unwrap();
        // the registration maps each moved atlas point back where it came from
        let atlas = Atlas::new(t_img.clone(), t_mask.map(|v| u8::from(*v != 0.0))).unwrap();
        let reg = register_affine(&img, &atlas, &RegistrationOptions::default()).unwrap();
        let mut worst = 0f64;
        for ((k, j, i), m) in gt.data().indexed_iter() {
            if *m != 0.0 && (i + j + k) % 7 == 0 {
                let p = img
                    .voxel_to_world(aneu::io::Voxel::new(i as f64, j as f64, k as f64))
                    .to_array();
                let q = reg.transform.apply(mv(p));
                worst = worst.max((0..3).map(|a| (q[a] - p[a]).powi(2)).sum::<f64>().sqrt());
            }
        }
        eprintln!("correlation {:.4}, worst error {worst:.3} mm", reg.ncc);
        assert!(worst < 1.0, "registration error up to {worst:.3} mm");
        // the pipeline
        let (ti, tm) = (dir.path().join("atlas.nii.gz"), dir.path().join("atlas_mask.nii.gz"));
        write_nifti(&t_img, &ti).unwrap();
        write_nifti(&t_mask, &tm).unwrap();
        let mut cfg = PreprocessConfig::default();
        cfg.t1post.mask = MaskMethod::Atlas { image: ti, mask: tm };
        cfg.t1post.resample = None;
        cfg.t1post.n4 = None;
        let out = dir.path().join("out");
        let s = preprocess_dataset(&root, &out, &cfg, Shard::default(), &|_| {}).unwrap();
        assert_eq!(
            s.done,
            1,
            "{}",
            std::fs::read_to_string(out.join("errors.csv")).unwrap_or_default()
        );
        let got = aneu::io::read_nifti(out.join(&uid).join("mask.nii.gz")).unwrap();
        assert_eq!(got.size(), gt.size());
        let (dice, ..) = super::overlap(
            got.as_slice().iter().map(|v| *v != 0.0),
            gt.as_slice().iter().map(|v| *v != 0.0),
        );
        assert!(dice >= 0.97, "Dice {dice:.4}");
        // a missing atlas fails the series with the path in errors.csv
        cfg.t1post.mask = MaskMethod::Atlas {
            image: dir.path().join("missing.nii.gz"),
            mask: dir.path().join("atlas_mask.nii.gz"),
        };
        let out2 = dir.path().join("out2");
        let s = preprocess_dataset(&root, &out2, &cfg, Shard::default(), &|_| {}).unwrap();
        assert_eq!((s.done, s.failed), (0, 1));
        assert!(
            std::fs::read_to_string(out2.join("errors.csv"))
                .unwrap()
                .contains("missing.nii.gz")
        );
    }

    /// A corrupted series is reported in errors.csv; the others are written.
    #[test]
    fn bad_series_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let root = phantoms(dir.path(), 5, 32);
        let victim = std::fs::read_dir(root.join("series"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        for f in std::fs::read_dir(&victim).unwrap() {
            let p = f.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() / 3]).unwrap();
        }
        let out = dir.path().join("out");
        let s = preprocess_dataset(&root, &out, &PreprocessConfig::default(), Shard::default(), &|_| {}).unwrap();
        assert_eq!((s.done, s.failed), (4, 1));
        let errors = std::fs::read_to_string(out.join("errors.csv")).unwrap();
        let uid = victim.file_name().unwrap().to_str().unwrap();
        assert!(errors.contains(uid), "{errors}");
        assert!(
            !std::fs::read_dir(&out).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".aneu-tmp"))
        );
    }

    /// Every series the dataset names ends in `index.csv` or `errors.csv`:
    /// series folders behind absolute and relative symbolic links are
    /// processed; a folder without a row is processed unlabelled and
    /// warned of; a row without a folder, a malformed row, conflicting
    /// rows, an unreadable localizer and a plain file under `series/` are
    /// errors with their reason; the summary counts each once.
    #[test]
    fn every_series_is_accounted_for() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rsna");
        generate(
            &PhantomConfig::new(7, 41, SizePreset::Tiny)
                .with_label_maps(false)
                .with_positive_rate(1.0),
            &root,
        )
        .unwrap();
        let series = root.join("series");
        let mut uids: Vec<String> = std::fs::read_dir(&series)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        uids.sort();
        let [abs_link, rel_link, unlabelled, bad_age, conflicting, bad_loc, _plain] =
            <[String; 7]>::try_from(uids.clone()).unwrap();
        // two folders on "another disk", linked in absolutely and relatively
        let disk = dir.path().join("disk2");
        std::fs::create_dir(&disk).unwrap();
        for (uid, relative) in [(&abs_link, false), (&rel_link, true)] {
            std::fs::rename(series.join(uid), disk.join(uid)).unwrap();
            let target = if relative {
                PathBuf::from("../../disk2").join(uid)
            } else {
                disk.join(uid)
            };
            std::os::unix::fs::symlink(target, series.join(uid)).unwrap();
        }
        std::fs::write(series.join("notes.txt"), "not a series").unwrap();
        // train.csv: one row dropped, one malformed, one repeated with
        // another modality, one for a series without a folder
        let csv = std::fs::read_to_string(root.join("train.csv")).unwrap();
        let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
        lines.retain(|l| !l.starts_with(&format!("{unlabelled},")));
        for l in lines.iter_mut() {
            if l.starts_with(&format!("{bad_age},")) {
                let mut f: Vec<&str> = l.split(',').collect();
                f[1] = "sixty";
                *l = f.join(",");
            }
        }
        let row = lines
            .iter()
            .find(|l| l.starts_with(&format!("{conflicting},")))
            .unwrap()
            .clone();
        let mut f: Vec<&str> = row.split(',').collect();
        f[3] = if f[3] == "CTA" { "MRA" } else { "CTA" };
        let other = f.join(",");
        lines.push(other);
        lines.push(row.replacen(&conflicting, "1.2.3.404", 1));
        std::fs::write(root.join("train.csv"), lines.join("\n") + "\n").unwrap();
        // one localizer of a positive series loses its coordinates
        let loc = std::fs::read_to_string(root.join("train_localizers.csv")).unwrap();
        let mut done = false;
        let loc: Vec<String> = loc
            .lines()
            .map(|l| {
                if !done && l.starts_with(&format!("{bad_loc},")) {
                    done = true;
                    let (head, tail) = l.split_once(",\"{").unwrap();
                    let rest = tail.split_once("}\"").unwrap().1;
                    format!("{head},\"{{'x': 12.5}}\"{rest}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert!(done, "{bad_loc} has no localizer");
        std::fs::write(root.join("train_localizers.csv"), loc.join("\n") + "\n").unwrap();

        let out = dir.path().join("out");
        let s = preprocess_dataset(&root, &out, &PreprocessConfig::default(), Shard::default(), &|_| {}).unwrap();
        let errors = std::fs::read_to_string(out.join("errors.csv")).unwrap();
        let warnings = std::fs::read_to_string(out.join("warnings.csv")).unwrap();
        let index = std::fs::read_to_string(out.join("index.csv")).unwrap();
        println!("{s}\n{errors}\n{warnings}");
        assert_eq!(
            (s.done, s.skipped, s.failed, s.missing, s.unlabelled),
            (4, 0, 4, 1, 1),
            "{errors}"
        );
        for uid in [&abs_link, &rel_link, &unlabelled, &uids[6]] {
            assert!(index.contains(uid.as_str()), "{uid} not in index.csv:\n{index}");
        }
        let error_of = |key: &str| -> String {
            errors
                .lines()
                .find(|l| l.starts_with(key))
                .unwrap_or_else(|| panic!("{key} not in errors.csv:\n{errors}"))
                .to_string()
        };
        assert!(error_of(&bad_age).contains("PatientAge"));
        assert!(error_of(&conflicting).contains("disagree"));
        assert!(error_of(&bad_loc).contains("coordinates"));
        assert!(error_of("1.2.3.404").contains("missing"));
        assert!(error_of("notes.txt").contains("not a folder"));
        assert!(warnings.contains(unlabelled.as_str()) && warnings.contains("unlabelled"));
        // the unlabelled series is an MRA or CTA guessed from its DICOM
        let meta: aneu::preproc::PreprocessMeta =
            serde_json::from_str(&std::fs::read_to_string(out.join(&unlabelled).join("meta.json")).unwrap()).unwrap();
        assert!(meta.labels.is_none());
        // every named input once: 7 folders + notes.txt + the missing row
        assert_eq!(index.lines().count() - 1 + errors.lines().count() - 1, 9);
    }

    /// Nothing of the user's is touched: an output inside the input (or
    /// the reverse) and a folder holding other files are refused before
    /// anything is written, and an `<out>/<uid>/` folder that aneu did not
    /// write fails that series only, its files intact.
    #[test]
    fn user_files_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let root = phantoms(dir.path(), 3, 43);
        let cfg = PreprocessConfig::default();
        let snapshot = |p: &Path| {
            let mut v: Vec<(PathBuf, Vec<u8>)> = Vec::new();
            let mut stack = vec![p.to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        v.push((p.clone(), std::fs::read(&p).unwrap()));
                    }
                }
            }
            v.sort();
            v
        };
        let before = snapshot(&root);
        for out in [root.join("series"), root.join("out"), dir.path().to_path_buf()] {
            let e = preprocess_dataset(&root, &out, &cfg, Shard::default(), &|_| {})
                .err()
                .unwrap_or_else(|| panic!("{} accepted", out.display()));
            assert!(e.to_string().contains("refusing"), "{e}");
        }
        assert_eq!(snapshot(&root), before, "the input changed");
        // a folder of the user's
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::write(theirs.join("index.csv"), "mine").unwrap();
        let e = preprocess_dataset(&root, &theirs, &cfg, Shard::default(), &|_| {}).unwrap_err();
        assert!(e.to_string().contains("did not write"), "{e}");
        assert_eq!(std::fs::read_to_string(theirs.join("index.csv")).unwrap(), "mine");
        // a series folder in the output that aneu did not write
        let out = dir.path().join("out");
        let s = preprocess_dataset(&root, &out, &cfg, Shard::default(), &|_| {}).unwrap();
        assert_eq!(s.done, 3);
        let uid = std::fs::read_dir(root.join("series"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name()
            .into_string()
            .unwrap();
        std::fs::remove_dir_all(out.join(&uid)).unwrap();
        std::fs::create_dir(out.join(&uid)).unwrap();
        std::fs::write(out.join(&uid).join("scan.dcm"), "precious").unwrap();
        let s = preprocess_dataset(&root, &out, &cfg, Shard::default(), &|_| {}).unwrap();
        assert_eq!((s.skipped, s.failed), (2, 1));
        assert!(
            std::fs::read_to_string(out.join("errors.csv"))
                .unwrap()
                .contains("did not write")
        );
        assert_eq!(
            std::fs::read_to_string(out.join(&uid).join("scan.dcm")).unwrap(),
            "precious"
        );
        // aneu's own folder is redone in place, other files in it kept
        std::fs::remove_file(out.join(&uid).join("scan.dcm")).unwrap();
        std::fs::remove_dir(out.join(&uid)).unwrap();
        assert_eq!(
            preprocess_dataset(&root, &out, &cfg, Shard::default(), &|_| {})
                .unwrap()
                .done,
            1
        );
        let meta = out.join(&uid).join("meta.json");
        let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        m["config_hash"] = serde_json::json!("0000000000000000");
        std::fs::write(&meta, serde_json::to_vec(&m).unwrap()).unwrap();
        std::fs::write(out.join(&uid).join("notes.txt"), "kept").unwrap();
        assert_eq!(
            preprocess_dataset(&root, &out, &cfg, Shard::default(), &|_| {})
                .unwrap()
                .done,
            1
        );
        assert_eq!(
            std::fs::read_to_string(out.join(&uid).join("notes.txt")).unwrap(),
            "kept"
        );
        assert_eq!(snapshot(&root), before, "the input changed");
    }

    /// The `preprocess` example, killed partway and run again, ends with the
    /// same bytes as an uninterrupted run and no temporary files.
    #[test]
    fn killed_run_resumes_to_the_same_bytes() {
        // target/<profile>/deps/<test> → target/<profile>/examples/preprocess
        let exe = std::env::current_exe().unwrap();
        let bin = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples")
            .join("preprocess");
        if !bin.exists() {
            // `cargo test` builds the examples; a filtered run may not have
            let st = std::process::Command::new(env!("CARGO"))
                .args(["build", "--example", "preprocess"])
                .status()
                .unwrap();
            assert!(st.success() && bin.exists(), "{}", bin.display());
        }
        let dir = tempfile::tempdir().unwrap();
        let root = phantoms(dir.path(), 16, 33);
        let (killed, clean) = (dir.path().join("killed"), dir.path().join("clean"));
        let run = |out: &Path| {
            std::process::Command::new(&bin)
                .args(["--jobs", "1", "--input"])
                .arg(&root)
                .arg("--out")
                .arg(out)
                .spawn()
                .unwrap()
        };
        let mut child = run(&killed);
        // wait until some series are done, then kill
        let t0 = std::time::Instant::now();
        loop {
            // finished series only (not the config, marker or temporary folders)
            let n = std::fs::read_dir(&killed)
                .map(|d| d.flatten().filter(|e| e.path().join("meta.json").is_file()).count())
                .unwrap_or(0);
            if n >= 3 || t0.elapsed().as_secs() > 120 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let partial = std::fs::read_dir(&killed)
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("meta.json").is_file())
            .count();
        assert!(partial < 16, "the run finished before it could be killed");
        assert!(run(&killed).wait().unwrap().success());
        assert!(run(&clean).wait().unwrap().success());
        assert_eq!(nifti_files(&killed), nifti_files(&clean));
        assert!(
            !std::fs::read_dir(&killed).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".aneu-tmp"))
        );
    }
}

/// Pearson correlation of two fields inside a mask (N4's field is defined
/// up to a constant, so correlation is the measure; `eval_bias.py`).
fn masked_r(a: &Volume<f32>, b: &Volume<f32>, m: &Volume<f32>) -> f64 {
    let pairs: Vec<(f64, f64)> = a
        .as_slice()
        .iter()
        .zip(b.as_slice())
        .zip(m.as_slice())
        .filter(|(_, m)| **m != 0.0)
        .map(|((x, y), _)| (f64::from(*x), f64::from(*y)))
        .collect();
    let n = pairs.len() as f64;
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    sxy / (sxx * syy).sqrt()
}

/// N4 on a `make_synthetic.py` volume with a known field, at the mask and
/// shrink SimpleITK used: the log-bias fields correlate at r ≥ 0.99, and
/// ours recovers the true field at least as well as SimpleITK (r = 0.991
/// on this small volume).
#[test]
fn n4_matches_simpleitk_and_recovers_the_field() {
    let img = read_nifti(data("ref/n4/synth.nii.gz")).unwrap();
    let mask = read_nifti(data("ref/n4/mask.nii.gz")).unwrap();
    let truth = read_nifti(data("ref/n4/true_logbias.nii.gz")).unwrap();
    let sitk = read_nifti(data("ref/n4/sitk_logbias_shrink2.nii.gz")).unwrap();
    let m8 = mask.map(|v| u8::from(*v != 0.0));
    let r = n4(&img, &m8, &N4Options::default().with_shrink(2)).unwrap();
    let vs_sitk = masked_r(&r.log_bias, &sitk, &mask);
    let vs_truth = masked_r(&r.log_bias, &truth, &mask);
    let sitk_truth = masked_r(&sitk, &truth, &mask);
    eprintln!(
        "r(aneu, SimpleITK) = {vs_sitk:.5}, r(aneu, truth) = {vs_truth:.5}, r(SimpleITK, truth) = {sitk_truth:.5}, iterations {:?}",
        r.iterations
    );
    assert!(vs_sitk >= 0.99, "{vs_sitk}");
    assert!(vs_truth >= sitk_truth - 0.002, "{vs_truth} vs SimpleITK's {sitk_truth}");
    // the corrected image is the input divided by the field
    let (x, b, c) = (
        img.as_slice()[5000],
        r.log_bias.as_slice()[5000],
        r.corrected.as_slice()[5000],
    );
    assert!((c - x / b.exp()).abs() < 1e-3 * x.abs().max(1.0));
}

/// Skull strips every series of a phantom dataset and asserts a Dice of at
/// least 0.95 against the ground-truth intracranial mask and every
/// aneurysm centre inside the mask; returns the Dice per modality and
/// spacing.
fn skull_strip_phantoms(root: &std::path::Path) -> std::collections::BTreeMap<String, Vec<f64>> {
    use aneu::io::RsnaDataset;
    use aneu::phantom::read_truth;
    let ds = RsnaDataset::open(root).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    let mut misses = Vec::new();
    for uid in ds.series_uids() {
        let truth = read_truth(root, uid).unwrap();
        let img = ds.read_series(uid).unwrap().volume;
        let gt = read_nifti(root.join("ground_truth").join(uid).join("brain.nii.gz")).unwrap();
        let m = intracranial_mask(&img, truth.modality).unwrap();
        let (dice, ..) = overlap(
            m.as_slice().iter().map(|v| *v != 0),
            gt.as_slice().iter().map(|v| *v != 0.0),
        );
        if let Some(d) = std::env::var_os("ANEU_DUMP") {
            let p = |s: &str| std::path::Path::new(&d).join(format!("{:?}-{}-{s}.nii.gz", truth.modality, &uid[5..13]));
            aneu::io::write_nifti(&m, p("ours")).unwrap();
            aneu::io::write_nifti(&gt, p("gt")).unwrap();
            aneu::io::write_nifti(&img, p("img")).unwrap();
        }
        for an in &truth.aneurysms {
            let v = m.world_to_voxel(an.centre_world).nearest_index(m.size()).unwrap();
            if m.get(v) != Some(&1) {
                misses.push(format!(
                    "{uid} {:?}: aneurysm at {} (truth mask {:?})",
                    truth.modality,
                    an.location,
                    gt.get(v)
                ));
            }
        }
        seen.entry(format!("{:?} {:.2?} mm", truth.modality, img.spacing()))
            .or_insert_with(Vec::new)
            .push(dice);
    }
    eprintln!("{seen:?}");
    assert!(misses.is_empty(), "aneurysm centres outside the mask: {misses:#?}");
    for (m, d) in &seen {
        for x in d {
            assert!(*x >= 0.95, "{m}: Dice {x:.4} ({d:?})");
        }
    }
    seen
}

/// Skull stripping on phantoms of every modality: Dice against the ground
/// truth intracranial mask, and every aneurysm centre inside the mask.
#[test]
fn skull_stripping_on_phantoms() {
    use aneu::phantom::{PhantomConfig, SizePreset, generate};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rsna");
    generate(
        &PhantomConfig::new(16, 41, SizePreset::Small).with_positive_rate(1.0),
        &root,
    )
    .unwrap();
    skull_strip_phantoms(&root);
}

/// Skull stripping on clinical grids (`full` phantoms, one per modality, at
/// 0.35–0.6 mm in plane): where an axis is finer than 1 mm the mask is
/// computed on blocks of whole voxels up to 1 mm and carried back (at least
/// two of the four series take that path), and it must still match the
/// ground truth on the fine grid (Dice ≥ 0.95) and hold every aneurysm
/// centre.
#[test]
fn skull_stripping_on_clinical_grids() {
    use aneu::phantom::{PhantomConfig, SizePreset, generate};
    let dir = tempfile::tempdir().unwrap();
    let mut coarse_blocks = 0;
    for (m, modality) in aneu::io::Modality::ALL.into_iter().enumerate() {
        let root = dir.path().join(format!("m{m}"));
        generate(
            &PhantomConfig::new(1, 90 + m as u64, SizePreset::Full)
                .with_positive_rate(1.0)
                .with_modalities(&[modality]),
            &root,
        )
        .unwrap();
        skull_strip_phantoms(&root);
        let ds = aneu::io::RsnaDataset::open(&root).unwrap();
        for uid in ds.series_uids() {
            let sp = ds.read_series(uid).unwrap().volume.spacing();
            if aneu::preproc::mask::working_grid_factors(sp) != [1, 1, 1] {
                coarse_blocks += 1;
            }
        }
    }
    assert!(coarse_blocks >= 2, "only {coarse_blocks} series took the block path");
}

/// Skull stripping of a real whole head (pydeface's group-mean T1, with
/// skull and face, where the intensity rules keep nearly the whole head) by
/// registering the MNI ICBM152 2009a T1 template and carrying its brain mask
/// across: a brain volume of 1.0–1.8 L and no skull or scalp kept.
#[test]
fn atlas_skull_stripping_on_the_real_pydeface_head() {
    let head = read_nifti(data("nifti/pydeface_mean_reg2mean.nii.gz")).unwrap();
    let atlas = Atlas::read(
        data("nifti/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"),
        data("nifti/derived_mni152_brainmask.nii.gz"),
    )
    .unwrap();
    let (mask, reg) = atlas_brain_mask(&head, &atlas, &RegistrationOptions::default()).unwrap();
    let sp = head.spacing();
    let inside = mask.as_slice().iter().filter(|v| **v != 0).count();
    let litres = inside as f64 * sp[0] * sp[1] * sp[2] / 1e6;
    eprintln!(
        "brain {litres:.3} L, correlation {:.3}, volume ratio {:.3}, {} evaluations",
        reg.ncc,
        reg.transform.determinant(),
        reg.evaluations
    );
    assert!((1.0..=1.8).contains(&litres), "brain volume {litres:.3} L");
    assert!(reg.ncc > 0.5, "correlation {}", reg.ncc);
    // no scalp or skull: the outer 10 voxels (≈ 10 mm along the axes, at
    // least 5.8 mm in any direction: 6-connected erosion) of the head, where
    // scalp (3–6 mm) and bone lie, hold no mask voxel
    let h = head_mask(&head).unwrap().data().mapv(|v| v != 0);
    let core = mask::erode(&h, 10);
    let kept: usize = mask
        .data()
        .iter()
        .zip(core.iter())
        .filter(|(m, c)| **m != 0 && !**c)
        .count();
    assert_eq!(kept, 0, "{kept} mask voxels within 10 voxels of the head's surface");
    // the brain is central: its centre lies within 15 mm of the head's
    // left–right centre
    let centre = |m: &ndarray::ArrayView3<'_, bool>| {
        let (s, n) = m
            .indexed_iter()
            .filter(|(_, v)| **v)
            .fold((0.0, 0.0), |(s, n), ((_, _, i), _)| (s + i as f64, n + 1.0));
        s / n
    };
    let brain = mask.data().mapv(|v| v != 0);
    let d = (centre(&brain.view()) - centre(&h.view())).abs() * sp[0];
    assert!(d < 15.0, "left–right offset {d:.1} mm");
}

/// A mis-gridded or empty atlas is a typed error, not a panic.
#[test]
fn atlas_errors_are_typed() {
    let a = Affine::from_parts([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]], [0.0; 3]).unwrap();
    let img = Volume::new(
        Array3::<f32>::from_shape_fn((8, 8, 8), |(k, j, i)| (k + j + i) as f32),
        a,
    )
    .unwrap();
    let other = Volume::new(Array3::<u8>::ones((8, 8, 9)), a).unwrap();
    assert!(matches!(Atlas::new(img.clone(), other), Err(Error::InvalidMask(_))));
    let empty = img.map(|_| 0u8);
    assert!(matches!(Atlas::new(img.clone(), empty), Err(Error::InvalidMask(_))));
    let mut nan = img.clone();
    nan.data_mut()[[1, 1, 1]] = f32::NAN;
    assert!(matches!(Atlas::new(nan, img.map(|_| 1u8)), Err(Error::Degenerate(_))));
    let err = Atlas::read("/nonexistent/t1.nii.gz", "/nonexistent/mask.nii.gz").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/t1.nii.gz"), "{err}");
    let atlas = Atlas::new(img.clone(), img.map(|_| 1u8)).unwrap();
    let bad = RegistrationOptions {
        levels_mm: vec![],
        ..RegistrationOptions::default()
    };
    assert!(matches!(
        register_affine(&img, &atlas, &bad),
        Err(Error::InvalidArgument(_))
    ));
}

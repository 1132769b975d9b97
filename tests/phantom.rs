//! aneu-phantom through aneu-io: every series reads back on the grid of
//! its ground truth, localizers land on the truth, aneurysms stand out,
//! all 13 locations occur, generation is byte-reproducible, the outside
//! appearance pairs with the standard one, and dcm2niix agrees with aneu-io
//! on phantom series.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use aneu::io::{DicomSeries, Modality, RsnaDataset, Voxel, read_nifti};
use aneu::phantom::{AppearanceRange, DomeRadii, PhantomConfig, SizePreset, generate, read_truth};

fn tiny(n: usize, seed: u64) -> PhantomConfig {
    PhantomConfig::new(n, seed, SizePreset::Tiny)
        .with_multiframe_share(0.3)
        .with_oblique_share(0.3)
        .with_positive_rate(0.8)
}

#[test]
fn series_read_back_and_localizers_land_on_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = generate(&tiny(12, 3), root).unwrap();
    assert_eq!(s.series, 12);
    let ds = RsnaDataset::open(root).unwrap();
    assert!(ds.issues().is_empty(), "{:?}", ds.issues());
    assert_eq!(ds.series_uids().count(), 12);
    let (mut multiframe, mut oblique, mut localizers) = (0, 0, 0);
    for uid in ds.series_uids() {
        let series = ds.read_series(uid).unwrap_or_else(|e| panic!("{uid}: {e}"));
        let truth = read_truth(root, uid).unwrap();
        assert_eq!(series.volume.size(), truth.size, "{uid}");
        assert!(series.volume.affine().max_abs_diff(&truth.affine) < 1e-6, "{uid}");
        assert_eq!(series.meta.multiframe, truth.multiframe);
        multiframe += usize::from(truth.multiframe);
        oblique += usize::from(truth.affine.axis_codes_string() != "LPS" || truth.affine.direction()[0][0] > -0.999);
        let labels = ds.labels(uid).unwrap();
        assert_eq!(labels.aneurysm_present, !truth.aneurysms.is_empty());
        assert_eq!(labels.modality, truth.modality);
        let mapped = ds.map_localizers(&series);
        assert_eq!(mapped.len(), truth.aneurysms.len());
        for (m, t) in mapped.into_iter().zip(&truth.aneurysms) {
            let m = m.unwrap();
            assert_eq!(m.localizer.location.name(), t.location);
            let v: Voxel = m.voxel;
            let c = t.centre_voxel;
            assert!(
                (v.i - c.i).abs() <= 0.006 && (v.j - c.j).abs() <= 0.006,
                "{uid}: {v:?} vs {c:?}"
            );
            assert!((v.k - c.k).abs() <= 0.5 + 1e-9, "{uid}: {v:?} vs {c:?}");
            assert!(v.distance(&c) <= 0.5 + 1e-6);
            localizers += 1;
        }
    }
    assert!(
        multiframe > 0 && oblique > 0 && localizers > 0,
        "{multiframe} {oblique} {localizers}"
    );
}

/// Aneurysm voxels (label ≥ 0.5 partial volume) against a shell 1.5–3.5 mm
/// outside the dome that holds no vessel: brighter by ≥ 60 (CTA HU, MRA
/// a.u.) and ≥ 10 (T1post); darker by ≥ 20 on T2, where flowing blood is a
/// flow void.
#[test]
fn aneurysms_stand_out_from_their_surroundings() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    generate(&tiny(24, 11).with_positive_rate(1.0), root).unwrap();
    let ds = RsnaDataset::open(root).unwrap();
    let (mut checked, mut empty) = (0, 0);
    for uid in ds.series_uids() {
        let truth = read_truth(root, uid).unwrap();
        let img = ds.read_series(uid).unwrap().volume;
        let lab = read_nifti(root.join("ground_truth").join(uid).join("aneurysms.nii.gz")).unwrap();
        let ves = read_nifti(root.join("ground_truth").join(uid).join("vessels.nii.gz")).unwrap();
        for a in &truth.aneurysms {
            let (mut core, mut shell) = (Vec::new(), Vec::new());
            for ((k, j, i), &l) in lab.data().indexed_iter() {
                let w = img.voxel_to_world(Voxel::new(i as f64, j as f64, k as f64));
                let d = w.distance(&a.centre_world);
                let v = img.data()[[k, j, i]];
                if l == f32::from(a.label) {
                    core.push(v);
                } else if d > a.radius_mm + 1.5 && d < a.radius_mm + 3.5 && ves.data()[[k, j, i]] == 0.0 {
                    shell.push(v);
                }
            }
            if core.is_empty() || shell.is_empty() {
                empty += 1;
                continue;
            }
            let mean = |v: &[f32]| v.iter().map(|x| f64::from(*x)).sum::<f64>() / v.len() as f64;
            let diff = mean(&core) - mean(&shell);
            let ok = match truth.modality {
                Modality::Cta | Modality::Mra => diff >= 60.0,
                Modality::MriT1post => diff >= 10.0,
                Modality::MriT2 => diff <= -20.0,
            };
            assert!(
                ok,
                "{uid} {:?} {} r={:.1}: core − shell = {diff:.1}",
                truth.modality, a.location, a.radius_mm
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 20 && empty * 5 <= checked,
        "{checked} checked, {empty} without a core voxel"
    );
}

/// With every dome drawn from a small range, every aneurysm in the truth
/// has a radius in it, and each is painted in the aneurysm label map with
/// no more voxels than a small dome holds; an invalid range is refused
/// before anything is written.
#[test]
fn small_domes_land_in_their_range() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let radii = DomeRadii {
        small_share: 1.0,
        small_mm: [1.0, 1.4],
    };
    let s = generate(&tiny(10, 31).with_positive_rate(1.0).with_dome_radii(radii), root).unwrap();
    assert_eq!(s.series, 10);
    assert!(s.aneurysms >= 10, "{}", s.aneurysms);
    let ds = RsnaDataset::open(root).unwrap();
    let mut painted = 0;
    for uid in ds.series_uids() {
        let truth = read_truth(root, uid).unwrap();
        let lab = read_nifti(root.join("ground_truth").join(uid).join("aneurysms.nii.gz")).unwrap();
        let voxel_mm3: f64 = lab.affine().spacing().iter().product();
        for a in &truth.aneurysms {
            assert!((1.0..=1.4).contains(&a.radius_mm), "{uid}: r = {}", a.radius_mm);
            let n = lab.data().iter().filter(|l| **l == f32::from(a.label)).count();
            // a lobulated dome adds blebs; a sphere of 1.4 mm holds 11.5 mm³
            assert!(n as f64 * voxel_mm3 <= 40.0, "{uid}: {n} voxels");
            painted += usize::from(n > 0);
        }
    }
    assert!(painted * 10 >= s.aneurysms * 8, "{painted} of {} painted", s.aneurysms);
    // an invalid range is refused before anything is written
    let bad = tiny(2, 31).with_dome_radii(DomeRadii {
        small_share: 0.5,
        small_mm: [0.0, 1.0],
    });
    let out = dir.path().join("bad");
    assert!(generate(&bad, &out).is_err());
    assert!(!out.exists());
}

#[test]
fn all_thirteen_locations_in_a_hundred_series() {
    let dir = tempfile::tempdir().unwrap();
    let s = generate(
        &PhantomConfig::new(100, 100, SizePreset::Tiny).with_label_maps(false),
        dir.path(),
    )
    .unwrap();
    assert_eq!(s.series, 100);
    assert!(s.per_location.iter().all(|&n| n > 0), "{:?}", s.per_location);
    assert!((30..=70).contains(&s.positives), "{}", s.positives);
}

fn files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn same_seed_same_bytes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    generate(&tiny(6, 5), a.path()).unwrap();
    generate(&tiny(6, 5), b.path()).unwrap();
    let fa = files(a.path());
    assert_eq!(fa, files(b.path()));
    assert!(fa.len() > 50);
    for f in &fa {
        assert!(
            std::fs::read(a.path().join(f)).unwrap() == std::fs::read(b.path().join(f)).unwrap(),
            "{}",
            f.display()
        );
    }
    let c = tempfile::tempdir().unwrap();
    generate(&tiny(6, 6), c.path()).unwrap();
    assert_ne!(
        std::fs::read(a.path().join("train.csv")).unwrap(),
        std::fs::read(c.path().join("train.csv")).unwrap()
    );
}

/// The outside appearance keeps everything but the intensities: the same
/// files, UIDs, labels and ground truth as the standard series of the same
/// seed, with a lower vessel contrast and more noise in every series (at
/// most 0.63 × the contrast and at least 1.4 × the noise on these six).
#[test]
fn outside_appearance_pairs_with_standard() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = tiny(6, 21).with_modalities(&[Modality::Mra, Modality::Cta]);
    generate(&config, a.path()).unwrap();
    generate(&config.clone().with_appearance(AppearanceRange::Outside), b.path()).unwrap();
    assert_eq!(files(a.path()), files(b.path()));
    for f in ["train.csv", "train_localizers.csv"] {
        assert_eq!(
            std::fs::read(a.path().join(f)).unwrap(),
            std::fs::read(b.path().join(f)).unwrap()
        );
    }
    let ds = RsnaDataset::open(a.path()).unwrap();
    let (da, db) = (ds.clone(), RsnaDataset::open(b.path()).unwrap());
    for uid in ds.series_uids() {
        assert_eq!(read_truth(a.path(), uid).unwrap(), read_truth(b.path(), uid).unwrap());
        let gt = a.path().join("ground_truth").join(uid);
        let ves = read_nifti(gt.join("vessels.nii.gz")).unwrap();
        let brain = read_nifti(gt.join("brain.nii.gz")).unwrap();
        // vessel − brain contrast, and the noise as the median absolute
        // difference of neighbouring brain voxels
        let measure = |d: &RsnaDataset| {
            let img = d.read_series(uid).unwrap().volume;
            let (mut v, mut t, mut steps) = (Vec::new(), Vec::new(), Vec::new());
            for ((k, j, i), x) in img.data().indexed_iter() {
                if ves.data()[[k, j, i]] > 0.0 {
                    v.push(f64::from(*x));
                } else if brain.data()[[k, j, i]] > 0.0 {
                    t.push(f64::from(*x));
                    if i + 1 < img.data().dim().2
                        && brain.data()[[k, j, i + 1]] > 0.0
                        && ves.data()[[k, j, i + 1]] == 0.0
                    {
                        steps.push((f64::from(img.data()[[k, j, i + 1]]) - f64::from(*x)).abs());
                    }
                }
            }
            let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
            steps.sort_by(f64::total_cmp);
            (mean(&v) - mean(&t), steps[steps.len() / 2])
        };
        let ((ca, na), (cb, nb)) = (measure(&da), measure(&db));
        assert!(
            cb < 0.75 * ca && nb > 1.2 * na,
            "{uid}: contrast {ca:.0} -> {cb:.0}, noise {na:.1} -> {nb:.1}"
        );
    }
}

/// dcm2niix converts single-frame and Enhanced multi-frame phantom series
/// to the same voxels at the same world positions as aneu-io. CI installs
/// dcm2niix and sets `ANEU_REQUIRE_DCM2NIIX=1`; without it the test says so
/// and passes.
#[test]
fn dcm2niix_agrees_on_phantom_series() {
    let have = std::process::Command::new("dcm2niix").arg("-v").output().is_ok();
    if !have {
        assert!(
            std::env::var_os("ANEU_REQUIRE_DCM2NIIX").is_none(),
            "dcm2niix is required but not on PATH"
        );
        eprintln!("dcm2niix not on PATH: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    generate(&tiny(10, 21).with_multiframe_share(0.4).with_label_maps(false), &root).unwrap();
    let ds = RsnaDataset::open(&root).unwrap();
    let mut kinds = (0, 0);
    for uid in ds.series_uids() {
        let ours = DicomSeries::read(ds.series_dir(uid)).unwrap();
        let out = dir.path().join(format!("out-{uid}"));
        std::fs::create_dir_all(&out).unwrap();
        let st = std::process::Command::new("dcm2niix")
            .args(["-z", "y", "-b", "n", "-f", "x", "-o"])
            .arg(&out)
            .arg(ds.series_dir(uid))
            .output()
            .unwrap();
        assert!(st.status.success(), "{uid}: {}", String::from_utf8_lossy(&st.stdout));
        let theirs = read_nifti(out.join("x.nii.gz")).unwrap().to_canonical().unwrap();
        let mine = ours.volume.to_canonical().unwrap();
        assert_eq!(mine.size(), theirs.size(), "{uid}");
        let s = mine.size();
        for i in [0.0, (s.ni - 1) as f64] {
            for k in [0.0, (s.nk - 1) as f64] {
                let v = Voxel::new(i, (s.nj - 1) as f64, k);
                let d = mine.voxel_to_world(v).distance(&theirs.voxel_to_world(v));
                assert!(d < 1e-3, "{uid}: {d} mm");
            }
        }
        assert_eq!(mine.data(), theirs.data(), "{uid}");
        if ours.meta.multiframe {
            kinds.1 += 1;
        } else {
            kinds.0 += 1;
        }
    }
    assert!(kinds.0 > 0 && kinds.1 > 0, "{kinds:?}");
}

/// The per-artery label map (`arteries.nii.gz`) labels exactly the vessel
/// voxels, each aneurysm's dome as the aneurysm label, and each side's
/// arteries on that side of the head (world x: + is the patient's right);
/// the RSNA-layout segmentation (`segmentations/<uid>/<uid>_cowseg.nii`)
/// holds RSNA's labels only, with each dome labelled as its location's
/// artery, and `RsnaDataset` finds and reads it.
#[test]
fn artery_labels_follow_the_anatomy() {
    use aneu::io::{Location, MAX_VESSEL_LABEL};
    use aneu::phantom::anatomy::{ANEURYSM_LABEL, OTHER_VESSEL_LABEL};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    generate(&tiny(4, 17).with_positive_rate(1.0), root).unwrap();
    let ds = RsnaDataset::open(root).unwrap();
    assert!(ds.issues().is_empty(), "{:?}", ds.issues());
    let mut seen = std::collections::BTreeSet::new();
    let mut domes = 0;
    for uid in ds.series_uids() {
        let gt = root.join("ground_truth").join(uid);
        let arteries = read_nifti(gt.join("arteries.nii.gz")).unwrap();
        let vessels = read_nifti(gt.join("vessels.nii.gz")).unwrap();
        let aneurysms = read_nifti(gt.join("aneurysms.nii.gz")).unwrap();
        let rsna = ds
            .read_vessel_labels(uid)
            .unwrap()
            .expect("every series has a segmentation");
        assert_eq!(rsna.size(), arteries.size());
        assert!(rsna.affine().max_abs_diff(arteries.affine()) < 1e-4);
        // per side, the sum of world x over the voxels of its arteries
        let (mut left, mut right) = ((0.0, 0usize), (0.0, 0usize));
        let [ni, nj, _] = arteries.size().to_ijk();
        for (n, (((&a, &v), &an), &r)) in arteries
            .as_slice()
            .iter()
            .zip(vessels.as_slice())
            .zip(aneurysms.as_slice())
            .zip(rsna.as_slice())
            .enumerate()
        {
            assert!(
                a.fract() == 0.0 && (0.0..=f32::from(ANEURYSM_LABEL)).contains(&a),
                "{a}"
            );
            assert_eq!(a != 0.0, v != 0.0, "{uid}: voxel {n}: artery label {a}, vessel {v}");
            assert_eq!(a == f32::from(ANEURYSM_LABEL), an != 0.0, "{uid}: voxel {n}");
            assert!(r <= MAX_VESSEL_LABEL);
            if a == f32::from(OTHER_VESSEL_LABEL) || a == 0.0 {
                assert_eq!(r, 0, "{uid}: voxel {n}");
            } else if a != f32::from(ANEURYSM_LABEL) {
                assert_eq!(f32::from(r), a, "{uid}: voxel {n}");
            }
            seen.insert(a as u8);
            let side = Location::from_vessel_label(a as u8).map(|l| l.name().split(' ').next().unwrap_or(""));
            let x = || {
                arteries
                    .voxel_to_world(Voxel::new(
                        (n % ni) as f64,
                        ((n / ni) % nj) as f64,
                        (n / (ni * nj)) as f64,
                    ))
                    .x
            };
            match side {
                Some("Left") => left = (left.0 + x(), left.1 + 1),
                Some("Right") => right = (right.0 + x(), right.1 + 1),
                _ => {}
            }
        }
        assert!(left.1 > 0 && right.1 > 0, "{uid}");
        let (lx, rx) = (left.0 / left.1 as f64, right.0 / right.1 as f64);
        assert!(
            rx > lx + 5.0,
            "{uid}: right arteries at x = {rx:.1} mm, left at {lx:.1} mm"
        );
        for a in &read_truth(root, uid).unwrap().aneurysms {
            let c = a.centre_voxel;
            let at = |v: &aneu::io::Volume<f32>| {
                *v.get(aneu::io::VoxelIndex::new(
                    c.i.round() as usize,
                    c.j.round() as usize,
                    c.k.round() as usize,
                ))
                .unwrap()
            };
            let location: Location = a.location.parse().unwrap();
            if at(&aneurysms) == f32::from(a.label) {
                domes += 1;
                assert_eq!(at(&arteries), f32::from(ANEURYSM_LABEL), "{uid}");
                let r = rsna.get(aneu::io::VoxelIndex::new(
                    c.i.round() as usize,
                    c.j.round() as usize,
                    c.k.round() as usize,
                ));
                assert_eq!(r, Some(&location.vessel_label()), "{uid}: {}", a.location);
            }
        }
    }
    assert!(domes >= 3, "only {domes} dome centres inside their domes");
    // the circle's arteries, other vessels and aneurysms all occur
    assert!(seen.len() >= 12, "labels seen: {seen:?}");
}

//! aneu-preproc against SimpleITK (`ref_resample.py` outputs in
//! `tests/data/ref/resample`), analytic normalisation cases, properties.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aneu::io::{Affine, Volume, read_nifti};
use aneu::preproc::*;
use ndarray::Array3;
use proptest::prelude::*;

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

//! Write → read round trips of random volumes on random oblique grids.

use aneu::io::{
    Affine, DicomSeries, DicomWriteOptions, StoredType, TransferSyntaxChoice, Volume, read_nifti, write_enhanced,
    write_nifti, write_series,
};
use ndarray::Array3;
use proptest::prelude::*;

use crate::common::max_corner_distance;

fn rotation(ax: f64, ay: f64, az: f64) -> [[f64; 3]; 3] {
    let (sx, cx) = ax.sin_cos();
    let (sy, cy) = ay.sin_cos();
    let (sz, cz) = az.sin_cos();
    // Rz · Ry · Rx
    [
        [cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx],
        [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx],
        [-sy, cy * sx, cy * cx],
    ]
}

prop_compose! {
    /// A random orthogonal (possibly left-handed) affine with anisotropic
    /// spacing and a random origin, and random integer data.
    fn volume()(ax in -3.2f64..3.2, ay in -1.5f64..1.5, az in -3.2f64..3.2,
                sp in prop::array::uniform3(0.2f64..4.0), flip_k in any::<bool>(),
                origin in prop::array::uniform3(-300.0f64..300.0),
                ni in 1usize..7, nj in 1usize..7, nk in 1usize..6, seed in any::<u64>())
                -> Volume<f32> {
        let r = rotation(ax, ay, az);
        let mut lin = [[0.0; 3]; 3];
        for row in 0..3 { for c in 0..3 {
            let f = if c == 2 && flip_k { -1.0 } else { 1.0 };
            lin[row][c] = r[row][c] * sp[c] * f;
        }}
        let a = Affine::from_parts(lin, origin).unwrap();
        let mut x = seed;
        let data = Array3::from_shape_fn((nk, nj, ni), |_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 33) % 4096) as f32 - 1024.0
        });
        Volume::new(data, a).unwrap()
    }
}

fn assert_same(a: &Volume<f32>, b: &Volume<f32>, tol_mm: f64) {
    let (a, b) = (a.to_canonical().unwrap(), b.to_canonical().unwrap());
    assert_eq!(a.size(), b.size());
    let d = max_corner_distance(&a, &b);
    assert!(d < tol_mm, "world positions differ by {d} mm");
    assert_eq!(a.data(), b.data());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Single-frame series: values exact, every voxel within 1e-6 mm (DS
    /// strings hold 16 characters).
    #[test]
    fn dicom_series_round_trip(v in volume(), implicit in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let ts = if implicit { TransferSyntaxChoice::ImplicitVrLittleEndian } else { TransferSyntaxChoice::ExplicitVrLittleEndian };
        let o = DicomWriteOptions::default().with_transfer_syntax(ts).with_reverse_instance_numbers(true);
        write_series(&v, dir.path(), &o).unwrap();
        let back = DicomSeries::read(dir.path()).unwrap();
        assert_same(&v, &back.volume, 1e-6);
    }

    /// One Enhanced multi-frame file, unsigned with a CT rescale.
    #[test]
    fn dicom_enhanced_round_trip(v in volume()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.dcm");
        let o = DicomWriteOptions::default().with_modality("CT").with_stored(StoredType::U16).with_rescale(1.0, -1024.0);
        write_enhanced(&v, &p, &o).unwrap();
        let back = DicomSeries::read(&p).unwrap();
        prop_assert!(back.meta.multiframe);
        assert_same(&v, &back.volume, 1e-6);
    }

    /// NIfTI: values exact (float32), geometry to float32 precision of the
    /// sform; the qform (read when the sform is absent) agrees.
    #[test]
    fn nifti_round_trip(v in volume(), gz in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(if gz { "v.nii.gz" } else { "v.nii" });
        write_nifti(&v, &p).unwrap();
        let back = read_nifti(&p).unwrap();
        prop_assert_eq!(back.data(), v.data());
        prop_assert!(max_corner_distance(&v, &back) < 1e-4);
        prop_assert!(back.affine().max_abs_diff(v.affine()) < 1e-4);
    }
}

/// Non-integer values with an automatic rescale come back within half a
/// quantisation step.
#[test]
fn auto_rescale_quantises_within_half_a_step() {
    let a = Affine::from_parts([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [0.0; 3]).unwrap();
    let data = Array3::from_shape_fn((3, 4, 5), |(k, j, i)| {
        (k as f32 * 0.37 - j as f32 * 1.91 + i as f32 * 0.0123).sin()
    });
    let v = Volume::new(data, a).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_series(
        &v,
        dir.path(),
        &DicomWriteOptions::default().with_stored(StoredType::U16),
    )
    .unwrap();
    let back = DicomSeries::read(dir.path()).unwrap().volume;
    let step = 2.0 / 65535.0;
    for (x, y) in v.data().iter().zip(back.data().iter()) {
        assert!((x - y).abs() <= step * 0.51 + 1e-7, "{x} vs {y}");
    }
}

#[test]
fn sheared_grids_are_refused_by_the_dicom_writer() {
    let a = Affine::from_parts([[1.0, 0.3, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [0.0; 3]).unwrap();
    let v = Volume::new(Array3::<f32>::zeros((2, 2, 2)), a).unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert!(write_series(&v, dir.path(), &DicomWriteOptions::default()).is_err());
    // NIfTI stores the shear in the sform (qform left unset)
    let p = dir.path().join("s.nii.gz");
    write_nifti(&v, &p).unwrap();
    assert!(read_nifti(&p).unwrap().affine().max_abs_diff(&a) < 1e-6);
}

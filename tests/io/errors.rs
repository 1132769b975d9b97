//! Bad input: each case gets a typed error naming the file (or series) and
//! the reason, never a panic.

use std::path::Path;

use aneu::io::{Affine, DicomSeries, DicomWriteOptions, Error, Limits, ReadOptions, Volume, write_series};
use dicom::dictionary_std::tags;
use ndarray::Array3;

use crate::common::data;

fn small_volume(seed: f32, origin: [f64; 3], nk: usize) -> Volume<f32> {
    let a = Affine::from_parts([[-0.8, 0.0, 0.0], [0.0, -0.8, 0.0], [0.0, 0.0, 1.5]], origin).unwrap();
    let d = Array3::from_shape_fn((nk, 6, 5), |(k, j, i)| seed + (k * 30 + j * 5 + i) as f32);
    Volume::new(d, a).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn ct2_gap_is_non_uniform_spacing() {
    let e = DicomSeries::read(data("dicom/series/ct2_gap")).unwrap_err();
    match &e {
        Error::NonUniformSpacing {
            largest_gap_mm,
            median_gap_mm,
            ..
        } => {
            assert!((largest_gap_mm - 202.5).abs() < 0.01, "{e}");
            assert!((median_gap_mm - 1.25).abs() < 0.01, "{e}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(e.to_string().contains("202.5"), "{e}");
}

#[test]
fn enhanced_file_with_two_stacks_is_mixed_orientation() {
    let e = DicomSeries::read(data("dicom/enhanced/heudiconv_enhanced_mr_3frames.dcm")).unwrap_err();
    assert!(matches!(e, Error::MixedOrientation { .. }), "{e}");
    assert!(e.to_string().contains("heudiconv_enhanced_mr_3frames.dcm"));
}

#[test]
fn multiframe_without_geometry_is_unsupported() {
    let e = DicomSeries::read(data("dicom/enhanced/emri_small.dcm")).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
}

/// The folder of the issue: a text file, a truncated DICOM and a second
/// series. The truncated file is named; skipping it, the two series are
/// listed; choosing one reads it.
#[test]
fn text_truncated_and_second_series() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    copy_dir(&data("dicom/series/ct5n"), d);
    std::fs::write(d.join("notes.txt"), "not a DICOM file\n").unwrap();
    let a = write_series(
        &small_volume(0.0, [0.0; 3], 3),
        d.join("other"),
        &DicomWriteOptions::default(),
    )
    .unwrap();
    let bytes = std::fs::read(&a[0].path).unwrap();
    std::fs::write(d.join("cut.dcm"), &bytes[..bytes.len() / 2]).unwrap();

    let e = DicomSeries::read(d).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::UnreadableFiles { count: 1, .. }), "{msg}");
    assert!(msg.contains("cut.dcm"), "{msg}");

    let skip = ReadOptions::default().with_skip_unreadable(true);
    let e = DicomSeries::read_with_options(d, &skip).unwrap_err();
    let Error::MultipleSeries { series, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(series.len(), 2);
    assert!(
        e.to_string()
            .contains("1.3.6.1.4.1.5962.1.1.0.0.0.1194734704.16302.0.6"),
        "{e}"
    );

    let s = DicomSeries::read_with_options(
        d,
        &skip.with_series_uid("1.3.6.1.4.1.5962.1.1.0.0.0.1194734704.16302.0.6"),
    )
    .unwrap();
    assert_eq!(s.volume.size().nk, 5);
    let e = DicomSeries::read_with_options(d, &ReadOptions::default().with_series_uid("9.9")).unwrap_err();
    assert!(
        matches!(e, Error::UnreadableFiles { .. } | Error::SeriesNotFound { .. }),
        "{e}"
    );
}

#[test]
fn empty_and_missing_folders() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "x").unwrap();
    let e = DicomSeries::read(dir.path()).unwrap_err();
    assert!(matches!(e, Error::NoDicom { skipped: 1, .. }), "{e}");
    let e = DicomSeries::read(dir.path().join("nope")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

#[test]
fn duplicate_positions() {
    let dir = tempfile::tempdir().unwrap();
    let v = small_volume(0.0, [0.0; 3], 3);
    let o = DicomWriteOptions::default().with_series_uid("1.2.3");
    write_series(&v, dir.path(), &o).unwrap();
    let sops = vec!["1.2.3.100".into(), "1.2.3.101".into(), "1.2.3.102".into()];
    write_series(&small_volume(5.0, [0.0; 3], 3), dir.path(), &o.with_sop_uids(sops)).unwrap();
    let e = DicomSeries::read(dir.path()).unwrap_err();
    assert!(matches!(e, Error::DuplicatePosition { .. }), "{e}");
}

#[test]
fn mixed_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let o = DicomWriteOptions::default().with_series_uid("1.2.3");
    write_series(&small_volume(0.0, [0.0; 3], 2), dir.path(), &o).unwrap();
    let a = Affine::from_parts([[-0.8, 0.0, 0.0], [0.0, -0.8, 0.0], [0.0, 0.0, 1.5]], [0.0, 0.0, 3.0]).unwrap();
    let v = Volume::new(Array3::<f32>::zeros((1, 7, 5)), a).unwrap();
    write_series(&v, dir.path(), &o.with_sop_uids(vec!["1.2.3.9".into()])).unwrap();
    let e = DicomSeries::read(dir.path()).unwrap_err();
    assert!(matches!(e, Error::MixedSize { .. }), "{e}");
}

/// Slices shifted in-plane by 0.5 mm per 1.5 mm step: an 18° gantry tilt.
#[test]
fn gantry_tilt() {
    let dir = tempfile::tempdir().unwrap();
    for k in 0..4 {
        let o = DicomWriteOptions::default()
            .with_series_uid("1.2.3")
            .with_sop_uids(vec![format!("1.2.3.{k}")]);
        write_series(
            &small_volume(0.0, [0.0, 0.5 * k as f64, 1.5 * k as f64], 1),
            dir.path(),
            &o,
        )
        .unwrap();
    }
    let e = DicomSeries::read(dir.path()).unwrap_err();
    let Error::GantryTilt { angle_deg, .. } = e else {
        panic!("{e}")
    };
    assert!((angle_deg - (0.5f64 / 1.5).atan().to_degrees()).abs() < 0.01);
}

fn rewrite(path: &Path, f: impl FnOnce(&mut dicom::object::DefaultDicomObject)) {
    let mut obj = dicom::object::open_file(path).unwrap();
    f(&mut obj);
    obj.write_to_file(path).unwrap();
}

#[test]
fn missing_geometry_tags() {
    for (tag, name) in [
        (tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient"),
        (tags::IMAGE_ORIENTATION_PATIENT, "ImageOrientationPatient"),
        (tags::PIXEL_SPACING, "PixelSpacing"),
        (tags::ROWS, "Rows"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let w = write_series(
            &small_volume(0.0, [0.0; 3], 3),
            dir.path(),
            &DicomWriteOptions::default(),
        )
        .unwrap();
        rewrite(&w[1].path, |o| {
            o.remove_element(tag);
        });
        let e = DicomSeries::read(dir.path()).unwrap_err();
        assert!(matches!(e, Error::MissingTag { .. }), "{name}: {e}");
        assert!(
            e.to_string().contains(name) && e.to_string().contains(&w[1].sop_uid),
            "{e}"
        );
    }
}

#[test]
fn truncated_pixel_data() {
    let dir = tempfile::tempdir().unwrap();
    let w = write_series(
        &small_volume(0.0, [0.0; 3], 3),
        dir.path(),
        &DicomWriteOptions::default(),
    )
    .unwrap();
    let bytes = std::fs::read(&w[2].path).unwrap();
    std::fs::write(&w[2].path, &bytes[..bytes.len() - 7]).unwrap();
    let e = DicomSeries::read(dir.path()).unwrap_err();
    let Error::UnreadableFiles { first, .. } = &e else {
        panic!("{e}")
    };
    assert!(matches!(**first, Error::TruncatedPixelData { .. }), "{e}");
    assert!(e.to_string().contains(&w[2].sop_uid));
}

#[test]
fn limits_are_checked_before_decoding() {
    let limits = Limits::default().with_max_voxels(100);
    let e = DicomSeries::read_with_options(data("dicom/series/ct5n"), &ReadOptions::default().with_limits(limits))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::LimitExceeded {
                what: "voxels",
                requested: 1280,
                ..
            }
        ),
        "{e}"
    );
    let limits = Limits::default().with_max_file_bytes(1000);
    let e = aneu::io::read_nifti_with_limits(data("nifti/nibabel_anatomical.nii"), &limits).unwrap_err();
    assert!(matches!(e, Error::LimitExceeded { .. }), "{e}");
}

#[test]
fn non_finite_values_are_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = small_volume(0.0, [0.0; 3], 2);
    v.data_mut()[[1, 2, 3]] = f32::NAN;
    let e = write_series(&v, dir.path(), &DicomWriteOptions::default()).unwrap_err();
    assert!(
        matches!(e, Error::DicomWrite { .. }) && e.to_string().contains("not finite"),
        "{e}"
    );
}

#[test]
fn bad_nifti_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.nii");
    let bytes = std::fs::read(data("nifti/nibabel_anatomical.nii")).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = aneu::io::read_nifti(&p).unwrap_err();
    assert!(
        matches!(e, Error::Nifti { .. }) && e.to_string().contains("t.nii"),
        "{e}"
    );
    std::fs::write(&p, b"hello").unwrap();
    assert!(aneu::io::read_nifti(&p).is_err());
}

/// Files without ImagePositionPatient have no place in the world: dcm2niix
/// invents one, aneu says what is missing.
#[test]
fn files_without_geometry_are_refused() {
    for f in [
        "dicom/compressed/JPEG-LL.dcm",
        "dicom/compressed/JPEGLSNearLossless_16.dcm",
    ] {
        let e = DicomSeries::read(data(f)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::MissingTag {
                    tag: "ImagePositionPatient",
                    ..
                }
            ),
            "{f}: {e}"
        );
    }
}

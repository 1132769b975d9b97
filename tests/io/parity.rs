//! Parity with dcm2niix (volumes and geometry) and nibabel (NIfTI reading).

use aneu::io::{DicomSeries, read_nifti};
use serde_json::Value;

use crate::common::{data, max_corner_distance, philips_mprage};

/// Our DICOM reader against dcm2niix's NIfTI of the same input, both
/// reoriented to canonical RAS: equal voxel values, and every voxel at the
/// same world position within 1e-4 mm.
fn check_against_dcm2niix(input: &std::path::Path, reference: &str) {
    let ours = DicomSeries::read(input).unwrap_or_else(|e| panic!("{e}")).volume;
    let theirs = read_nifti(data(&format!("ref/dcm2niix/{reference}.nii.gz"))).unwrap();
    let (ours, theirs) = (ours.to_canonical().unwrap(), theirs.to_canonical().unwrap());
    assert_eq!(ours.size(), theirs.size(), "{reference}: grid size");
    let d = max_corner_distance(&ours, &theirs);
    assert!(d < 1e-4, "{reference}: world positions differ by {d} mm");
    let diff = ours
        .data()
        .iter()
        .zip(theirs.data().iter())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(diff, 0, "{reference}: {diff} voxels differ");
}

#[test]
fn ct5n_matches_dcm2niix() {
    check_against_dcm2niix(&data("dicom/series/ct5n"), "ct5n");
}

#[test]
fn oblique_shuffled_matches_dcm2niix() {
    check_against_dcm2niix(&data("synth/oblique_shuffled"), "oblique_shuffled");
}

#[test]
fn reversed_series_matches_dcm2niix() {
    check_against_dcm2niix(&data("synth/reversed"), "reversed");
}

#[test]
fn rle_series_matches_dcm2niix() {
    check_against_dcm2niix(&data("synth/rle"), "rle");
}

#[test]
fn j2k_series_matches_dcm2niix() {
    check_against_dcm2niix(&data("synth/j2k"), "j2k");
}

#[test]
fn single_slice_ct_matches_dcm2niix() {
    check_against_dcm2niix(&data("dicom/single/CT_small.dcm"), "ct_small");
}

/// The Philips Enhanced MPRAGE: per-frame positions, oblique. Its stored
/// positions drift by 1.4e-6 mm per frame from the declared 1 mm spacing;
/// dcm2niix takes the declared SliceThickness for Enhanced files, so its
/// last frame sits 2.5e-4 mm from that frame's own ImagePositionPatient.
/// We follow the positions: every frame lands on its own IPP within 5e-5
/// mm, and the directions, in-plane spacing and origin match dcm2niix's.
#[test]
fn philips_enhanced_mprage_affine_matches_dcm2niix() {
    let dir = tempfile::tempdir().unwrap();
    let f = philips_mprage(dir.path());
    let s = DicomSeries::read(&f).unwrap();
    assert!(s.meta.multiframe);
    assert_eq!(s.slices.len(), 176);
    for e in s.slices.entries() {
        let ours = s.volume.voxel_to_world(aneu::io::Voxel::new(0.0, 0.0, e.k as f64));
        let own = aneu::io::WorldPoint::from_lps(e.position_lps);
        assert!(ours.distance(&own) < 5e-5, "frame {:?}: {ours:?} vs {own:?}", e.frame);
    }
    let ours = s.volume.to_canonical().unwrap();
    let theirs = read_nifti(data("ref/dcm2niix/philips_mprage.nii.gz"))
        .unwrap()
        .to_canonical()
        .unwrap();
    assert_eq!(ours.size(), theirs.size());
    let (a, b) = (ours.affine(), theirs.affine());
    for r in 0..3 {
        for c in 0..3 {
            assert!(
                (a.direction()[r][c] - b.direction()[r][c]).abs() < 1e-6,
                "direction[{r}][{c}]"
            );
        }
        assert!((a.spacing()[r] - b.spacing()[r]).abs() < 2e-6, "spacing[{r}]");
    }
    assert!(a.origin().distance(&b.origin()) < 1e-4);
    let d = max_corner_distance(&ours, &theirs);
    assert!(d < 3e-4, "far corner differs by {d} mm");
    assert!(ours.data().iter().all(|&v| v == 0.0) && theirs.data().iter().all(|&v| v == 0.0));
}

/// Our NIfTI reader against nibabel: shape, affine (sform preferred),
/// canonical affine, scaled sum and sample voxels.
#[test]
fn nifti_reader_matches_nibabel() {
    let refs: Value = serde_json::from_str(&std::fs::read_to_string(data("ref/nibabel.json")).unwrap()).unwrap();
    let refs = refs.as_object().unwrap();
    assert!(refs.len() >= 8);
    for (rel, r) in refs {
        let v = read_nifti(data(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let shape: Vec<usize> = r["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(v.size().to_ijk().to_vec(), shape, "{rel}");
        let m = v.affine().matrix();
        for (row, want) in r["affine"].as_array().unwrap().iter().enumerate() {
            for (col, w) in want.as_array().unwrap().iter().enumerate() {
                assert!(
                    (m[row][col] - w.as_f64().unwrap()).abs() < 1e-5,
                    "{rel}: affine[{row}][{col}]"
                );
            }
        }
        assert_eq!(v.affine().axis_codes_string(), r["axcodes"].as_str().unwrap(), "{rel}");
        let cm = v.to_canonical().unwrap().affine().matrix();
        for (row, want) in r["canonical_affine"].as_array().unwrap().iter().enumerate() {
            for (col, w) in want.as_array().unwrap().iter().enumerate() {
                assert!(
                    (cm[row][col] - w.as_f64().unwrap()).abs() < 1e-4,
                    "{rel}: canonical[{row}][{col}]"
                );
            }
        }
        let sum: f64 = v.data().iter().map(|&x| f64::from(x)).sum();
        let want = r["sum"].as_f64().unwrap();
        assert!(
            (sum - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{rel}: sum {sum} vs {want}"
        );
        for s in r["samples"].as_array().unwrap() {
            let s: Vec<f64> = s.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            let got = v
                .get(aneu::io::VoxelIndex::new(s[0] as usize, s[1] as usize, s[2] as usize))
                .unwrap();
            assert!(
                (f64::from(*got) - s[3]).abs() <= 1e-4 * s[3].abs().max(1.0),
                "{rel}: voxel {s:?} = {got}"
            );
        }
    }
}

/// Every single-slice file of the shared data that dcm2niix converts and
/// that has full geometry: native in four syntaxes, RLE, JPEG 2000
/// lossless and lossy, JPEG-LS, JPEG Lossless SV1, and elements with VR UN.
/// (JPEG-LL.dcm and JPEGLSNearLossless_16.dcm lack ImagePositionPatient;
/// dcm2niix invents a grid for them, aneu refuses: see `errors.rs`.)
#[test]
fn single_files_match_dcm2niix() {
    for name in [
        "MR_small",
        "MR_small_RLE",
        "MR_small_bigendian",
        "MR_small_implicit",
        "MR_small_jp2klossless",
        "MR_small_jpeg_ls_lossless",
        "693_UNCR",
        "693_J2KR",
        "693_J2KI",
        "bad_sequence",
        "explicit_VR-UN",
    ] {
        check_against_dcm2niix(&data(&format!("dicom/compressed/{name}.dcm")), name);
    }
}

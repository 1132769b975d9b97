//! Localizer mapping against ref_lps2ras.py (pydicom geometry + dcm2niix's
//! NIfTI): the same world point, and the same voxel of dcm2niix's volume
//! within 0.01 voxel.

use aneu::io::{DicomSeries, read_nifti};
use serde_json::Value;

use crate::common::data;

#[test]
fn localizers_match_ref_lps2ras() {
    let refs: Value = serde_json::from_str(&std::fs::read_to_string(data("ref/localizers.json")).unwrap()).unwrap();
    let refs = refs.as_array().unwrap();
    assert!(refs.len() >= 6);
    for r in refs {
        let name = r["series"].as_str().unwrap();
        let series = DicomSeries::read(data(r["dir"].as_str().unwrap())).unwrap();
        let nifti = read_nifti(data(&format!("ref/dcm2niix/{name}.nii.gz"))).unwrap();
        let (x, y) = (r["x"].as_f64().unwrap(), r["y"].as_f64().unwrap());
        let sop = r["sop"].as_str().unwrap();
        let w = series.localizer_to_world(sop, None, x, y).unwrap();
        let ras: Vec<f64> = r["ras"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!((w.x - ras[0]).abs() < 1e-3 && (w.y - ras[1]).abs() < 1e-3 && (w.z - ras[2]).abs() < 1e-3);
        let v = nifti.world_to_voxel(w);
        let want: Vec<f64> = r["ijk_dcm2niix"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (got, want) in [v.i, v.j, v.k].iter().zip(&want) {
            assert!((got - want).abs() < 0.01, "{name} {sop}: {v:?} vs {want:?}");
        }
        // and on our own grid: the localizer's slice is that instance's k,
        // and the pixel value there is the instance's pixel value
        let own = series.localizer_to_voxel(sop, None, x, y).unwrap();
        let k = series.slices.get(sop, None).unwrap().k as f64;
        assert!((own.k - k).abs() < 1e-6 && (own.i - x).abs() < 1e-6 && (own.j - y).abs() < 1e-6);
    }
}

#[test]
fn unknown_sop_is_a_typed_error() {
    let series = DicomSeries::read(data("dicom/series/ct5n")).unwrap();
    let e = series.localizer_to_world("1.2.3.4", None, 1.0, 1.0).unwrap_err();
    assert!(matches!(e, aneu::io::Error::UnknownInstance { .. }), "{e}");
    assert!(e.to_string().contains("1.2.3.4"));
}

/// Enhanced multi-frame: a localizer with a frame lands on that frame's
/// slice, through the frame's own position.
#[test]
fn multiframe_localizer_uses_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    let f = crate::common::philips_mprage(dir.path());
    let s = DicomSeries::read(&f).unwrap();
    let sop = s.slices.entries()[0].sop_uid.clone();
    for frame in [0u32, 57, 175] {
        let e = s.slices.get(&sop, Some(frame)).unwrap();
        let v = s.localizer_to_voxel(&sop, Some(frame), 100.5, 20.25).unwrap();
        assert!((v.k - e.k as f64).abs() < 1e-4, "frame {frame}: {v:?} vs k {}", e.k);
        assert!((v.i - 100.5).abs() < 1e-4 && (v.j - 20.25).abs() < 1e-4);
    }
    assert!(s.slices.get(&sop, None).is_none());
    assert!(s.slices.get(&sop, Some(176)).is_none());
}

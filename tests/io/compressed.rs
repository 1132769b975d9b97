//! Every lossless compressed file decodes to the same stored values as its
//! uncompressed twin (pairs from ../shared/data/SOURCES.md); the lossy JPEG
//! 2000 file decodes to its shipped reference decode.

use aneu::io::{Limits, read_stored_frames};

use crate::common::data;

fn assert_same(a: &str, b: &str) {
    let x = read_stored_frames(data(a), &Limits::default()).unwrap_or_else(|e| panic!("{a}: {e}"));
    let y = read_stored_frames(data(b), &Limits::default()).unwrap_or_else(|e| panic!("{b}: {e}"));
    assert_eq!(x.shape(), y.shape(), "{a} vs {b}");
    let diff = x.iter().zip(y.iter()).filter(|(p, q)| p != q).count();
    assert_eq!(diff, 0, "{a} vs {b}: {diff} values differ");
    // not a trivially constant image
    assert!(x.iter().any(|&v| v != x[[0, 0, 0]]), "{a} is constant");
}

#[test]
fn mr_small_in_every_syntax() {
    for twin in [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "synth_deflate.dcm",
    ] {
        assert_same("dicom/compressed/MR_small.dcm", &format!("dicom/compressed/{twin}"));
    }
}

#[test]
fn ct_jpeg2000_lossless_and_lossy() {
    assert_same("dicom/compressed/693_UNCR.dcm", "dicom/compressed/693_J2KR.dcm");
    assert_same("dicom/compressed/693_UNCI.dcm", "dicom/compressed/693_J2KI.dcm");
}

#[test]
fn enhanced_multiframe_in_every_syntax() {
    for twin in [
        "emri_small_RLE.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
    ] {
        assert_same("dicom/enhanced/emri_small.dcm", &format!("dicom/enhanced/{twin}"));
    }
    let x = read_stored_frames(data("dicom/enhanced/emri_small.dcm"), &Limits::default()).unwrap();
    assert_eq!(x.shape(), &[10, 64, 64]);
}

/// Every compressed and Enhanced file against pydicom + pylibjpeg's
/// decode (an independent decoder): same shape, and the same sum, sum of
/// squares, minimum and maximum of the stored values. This covers the files
/// without a twin: JPEG Lossless SV1 (the usual CT archive syntax), JPEG-LS
/// near-lossless 16-bit, JPEG 2000 with UN elements, the Siemens TOF MIP.
#[test]
fn every_file_matches_pydicom_decode() {
    let refs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("ref/pydicom_decodes.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (rel, r) in refs.as_object().unwrap() {
        // lossy 8-bit JPEG: decoders may round the IDCT differently (own test)
        if r.get("error").is_some() || rel.ends_with("JPGExtended.dcm") || rel.ends_with("synth_jpeg_baseline.dcm") {
            continue;
        }
        let x = read_stored_frames(data(rel), &Limits::default()).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let shape: Vec<usize> = r["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(x.shape(), shape.as_slice(), "{rel}");
        let sum: f64 = x.iter().map(|&v| f64::from(v)).sum();
        let sumsq: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let (lo, hi) = x.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert_eq!(sum, r["sum"].as_f64().unwrap(), "{rel}: sum");
        assert_eq!(sumsq, r["sumsq"].as_f64().unwrap(), "{rel}: sum of squares");
        assert_eq!(f64::from(lo), r["min"].as_f64().unwrap(), "{rel}: min");
        assert_eq!(f64::from(hi), r["max"].as_f64().unwrap(), "{rel}: max");
        checked += 1;
    }
    assert!(checked >= 20, "{checked}");
}

/// 12-bit JPEG Extended (process 4) is beyond the pure-Rust JPEG decoder
/// (8-bit only): a typed decode error naming the file, never a panic.
#[test]
fn twelve_bit_jpeg_extended_is_a_typed_error() {
    let f = data("dicom/compressed/JPGExtended.dcm");
    let e = read_stored_frames(&f, &Limits::default()).unwrap_err();
    assert!(matches!(e, aneu::io::Error::PixelDecode { .. }), "{e}");
    assert!(e.to_string().contains("JPGExtended.dcm"));
}

/// The series reader converts native (uncompressed) samples itself; it
/// must give exactly what dicom-pixeldata's decoder gives, rescaled, for
/// signed, unsigned, big-endian and implicit-VR files.
#[test]
fn native_fast_path_equals_the_decoder() {
    for f in [
        "dicom/compressed/MR_small.dcm",
        "dicom/compressed/MR_small_bigendian.dcm",
        "dicom/compressed/MR_small_implicit.dcm",
        "dicom/single/CT_small.dcm",
        "dicom/compressed/693_UNCR.dcm",
    ] {
        let obj = dicom::object::open_file(data(f)).unwrap();
        let num = |t| obj.get(t).and_then(|e| e.to_float64().ok());
        let (slope, icpt) = (
            num(dicom::dictionary_std::tags::RESCALE_SLOPE).unwrap_or(1.0),
            num(dicom::dictionary_std::tags::RESCALE_INTERCEPT).unwrap_or(0.0),
        );
        let stored = read_stored_frames(data(f), &Limits::default()).unwrap();
        let Ok(series) = aneu::io::DicomSeries::read(data(f)) else {
            continue; // no geometry: not a volume
        };
        let got = series.volume.data();
        let want = stored
            .index_axis(ndarray::Axis(0), 0)
            .map(|v| (f64::from(*v) * slope + icpt) as f32);
        assert_eq!(got.index_axis(ndarray::Axis(0), 0), want, "{f}");
    }
}

/// 8-bit JPEG baseline (lossy): within one grey level of pydicom +
/// pylibjpeg's libjpeg decode everywhere, and close to the source image.
#[test]
fn jpeg_baseline_matches_libjpeg() {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("ref/jpeg_baseline_values.json")).unwrap()).unwrap();
    let vals = |k: &str| -> Vec<f32> {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let (src, reference) = (vals("source"), vals("pydicom"));
    let x = read_stored_frames(data("dicom/compressed/synth_jpeg_baseline.dcm"), &Limits::default()).unwrap();
    assert_eq!(x.shape(), &[1, 64, 64]);
    let ours: Vec<f32> = x.iter().copied().collect();
    let max_ref = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_ref <= 1.0, "differs from libjpeg by {max_ref}");
    let mae = ours.iter().zip(&src).map(|(a, b)| (a - b).abs()).sum::<f32>() / ours.len() as f32;
    assert!(mae < 3.0, "mean error against the source {mae}");
}

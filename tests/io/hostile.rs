//! Hostile input, file by file: each case is a typed error that names the
//! file and the tag (or the reason), never a volume a slice short, a
//! default rescale, a non-finite value or an aborted process. The table in
//! `docs/reliability.md` points here.

use std::path::{Path, PathBuf};

use aneu::io::dicom::SkippedFile;
use aneu::io::{
    Affine, DicomSeries, DicomWriteOptions, Error, Limits, ReadOptions, Volume, WrittenInstance, read_nifti,
    read_stored_frames, write_enhanced, write_nifti, write_series,
};
use dicom::core::value::DataSetSequence;
use dicom::core::{DataElement, PrimitiveValue, Tag, VR};
use dicom::dictionary_std::tags;
use dicom::object::{DefaultDicomObject, InMemDicomObject};
use ndarray::Array3;

use crate::common::data;

fn small_volume(nk: usize) -> Volume<f32> {
    let a = Affine::from_parts(
        [[-0.8, 0.0, 0.0], [0.0, -0.8, 0.0], [0.0, 0.0, 1.5]],
        [10.0, 20.0, 30.0],
    )
    .unwrap();
    let d = Array3::from_shape_fn((nk, 6, 5), |(k, j, i)| (k * 30 + j * 5 + i) as f32);
    Volume::new(d, a).unwrap()
}

/// A clean 5-slice series (6 × 5, explicit VR little endian) in `dir`,
/// in slice order.
fn series(dir: &Path) -> Vec<WrittenInstance> {
    write_series(&small_volume(5), dir, &DicomWriteOptions::default()).unwrap()
}

fn rewrite(path: &Path, f: impl FnOnce(&mut DefaultDicomObject)) {
    let mut obj = dicom::object::open_file(path).unwrap();
    f(&mut obj);
    obj.write_to_file(path).unwrap();
}

fn put_str(obj: &mut InMemDicomObject, tag: Tag, vr: VR, v: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
}

fn put_u16(obj: &mut InMemDicomObject, tag: Tag, v: u16) {
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The error of one file: the `first` of [`Error::UnreadableFiles`], or
/// the error itself. Asserts that its message names `file`.
fn file_error(e: Error, file: &Path) -> Error {
    let msg = e.to_string();
    assert!(
        msg.contains(&file_name(file)),
        "error does not name {}: {msg}",
        file.display()
    );
    match e {
        Error::UnreadableFiles { first, count: 1, .. } => *first,
        Error::UnreadableFiles { count, .. } => panic!("{count} unreadable files: {msg}"),
        e => e,
    }
}

#[track_caller]
fn assert_invalid_tag(e: &Error, want: &str) {
    match e {
        Error::InvalidTag { tag, .. } => assert_eq!(*tag, want, "{e}"),
        other => panic!("expected InvalidTag {want}, got {other}"),
    }
    assert!(e.to_string().contains(want), "{e}");
}

fn no_temporary_files(dir: &Path) {
    let left: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| file_name(p).contains("aneu-tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

// ---------------------------------------------------------------- whole series

#[test]
fn empty_slice_first_middle_or_last_is_an_error() {
    for n in [0, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        let w = series(dir.path());
        std::fs::write(&w[n].path, b"").unwrap();
        let e = DicomSeries::read(dir.path()).unwrap_err();
        let e = file_error(e, &w[n].path);
        assert!(matches!(e, Error::EmptyFile { .. }), "slice {n}: {e}");

        // Opting in to skipping still accounts for the file; a slice
        // missing inside the stack then shows as a gap.
        let skip = ReadOptions::default().with_skip_unreadable(true);
        if n == 2 {
            let e = DicomSeries::read_with_options(dir.path(), &skip).unwrap_err();
            assert!(
                matches!(e, Error::NonUniformSpacing { largest_gap_mm, .. } if (largest_gap_mm - 3.0).abs() < 1e-6),
                "{e}"
            );
            continue;
        }
        let s = DicomSeries::read_with_options(dir.path(), &skip).unwrap();
        assert_eq!(s.volume.size().nk, 4);
        assert_eq!(s.meta.skipped.len(), 1, "{:?}", s.meta.skipped);
        let SkippedFile {
            path,
            reason,
            unreadable,
        } = &s.meta.skipped[0];
        assert!(unreadable);
        assert_eq!(path, &w[n].path);
        assert!(reason.contains("empty file"), "{reason}");
    }
}

#[test]
fn file_cut_inside_the_preamble_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let w = series(dir.path());
    let bytes = std::fs::read(&w[1].path).unwrap();
    for cut in [1, 64, 128, 130] {
        std::fs::write(&w[1].path, &bytes[..cut]).unwrap();
        let e = file_error(DicomSeries::read(dir.path()).unwrap_err(), &w[1].path);
        assert!(matches!(e, Error::NotDicom { .. }), "cut at {cut}: {e}");
    }
    // Also without a .dcm name: a cut preamble is recognised by its bytes.
    let plain = dir.path().join("slice1");
    std::fs::rename(&w[1].path, &plain).unwrap();
    let e = file_error(DicomSeries::read(dir.path()).unwrap_err(), &plain);
    assert!(matches!(e, Error::NotDicom { .. }), "{e}");
}

#[test]
fn dcm_named_file_that_is_not_dicom_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    series(dir.path());
    let bad = dir.path().join("IM0001.DCM");
    std::fs::write(&bad, "<html>404 Not Found</html>\n".repeat(10)).unwrap();
    let e = file_error(DicomSeries::read(dir.path()).unwrap_err(), &bad);
    assert!(matches!(e, Error::NotDicom { .. }), "{e}");
    let e = read_stored_frames(&bad, &Limits::default()).unwrap_err();
    assert!(
        matches!(e, Error::NotDicom { .. }) && e.to_string().contains("IM0001.DCM"),
        "{e}"
    );
}

#[test]
fn non_image_files_are_skipped_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let w = series(dir.path());
    std::fs::write(dir.path().join("README.txt"), "acquired on scanner 3\n").unwrap();
    std::fs::write(
        dir.path().join(".DS_Store"),
        [0u8, 0, 0, 1, b'B', b'u', b'd', b'1', 0, 0, 16, 0],
    )
    .unwrap();

    // A structured report: DICOM, identifiable, without image attributes.
    let mut sr = InMemDicomObject::new_empty();
    put_str(&mut sr, tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.88.11");
    put_str(&mut sr, tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5.6");
    put_str(&mut sr, tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4.5");
    put_str(&mut sr, tags::MODALITY, VR::CS, "SR");
    let meta = dicom::object::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.88.11")
        .media_storage_sop_instance_uid("1.2.3.4.5.6")
        .transfer_syntax("1.2.840.10008.1.2.1");
    sr.with_meta(meta)
        .unwrap()
        .write_to_file(dir.path().join("report.dcm"))
        .unwrap();

    // A DICOMDIR: no SOPClassUID / SeriesInstanceUID in its data set.
    let mut dd = InMemDicomObject::new_empty();
    put_str(&mut dd, tags::FILE_SET_ID, VR::CS, "ANEU");
    dd.put(DataElement::new(
        tags::DIRECTORY_RECORD_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(Vec::<InMemDicomObject>::new()),
    ));
    let meta = dicom::object::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid("1.2.840.10008.1.3.10")
        .media_storage_sop_instance_uid("1.2.3.4.5.7")
        .transfer_syntax("1.2.840.10008.1.2.1");
    dd.with_meta(meta)
        .unwrap()
        .write_to_file(dir.path().join("DICOMDIR"))
        .unwrap();

    let s = DicomSeries::read(dir.path()).unwrap();
    assert_eq!(s.volume.size().nk, w.len());
    let names: Vec<String> = s.meta.skipped.iter().map(|f| file_name(&f.path)).collect();
    assert_eq!(
        names,
        [".DS_Store", "DICOMDIR", "README.txt", "report.dcm"],
        "{:?}",
        s.meta.skipped
    );
    assert!(s.meta.skipped.iter().all(|f| !f.unreadable));
}

#[test]
fn image_without_pixel_data_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let w = series(dir.path());
    rewrite(&w[3].path, |o| {
        o.remove_element(tags::PIXEL_DATA);
    });
    let e = file_error(DicomSeries::read(dir.path()).unwrap_err(), &w[3].path);
    assert!(matches!(e, Error::MissingTag { tag: "PixelData", .. }), "{e}");
}

#[test]
fn file_cut_at_an_element_boundary_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let w = series(dir.path());
    let bytes = std::fs::read(&w[2].path).unwrap();
    // explicit VR little endian: (7FE0,0010) OW
    let at = bytes
        .windows(6)
        .rposition(|b| b == [0xE0, 0x7F, 0x10, 0x00, b'O', b'W'])
        .unwrap();
    std::fs::write(&w[2].path, &bytes[..at]).unwrap();
    let e = file_error(DicomSeries::read(dir.path()).unwrap_err(), &w[2].path);
    assert!(matches!(e, Error::MissingTag { tag: "PixelData", .. }), "{e}");

    // Cut before the image attributes: the SOP class still tells.
    let at = bytes
        .windows(4)
        .position(|b| b == [0x28, 0x00, 0x02, 0x00]) // (0028,0002) SamplesPerPixel
        .unwrap();
    std::fs::write(&w[2].path, &bytes[..at]).unwrap();
    let e = file_error(DicomSeries::read(dir.path()).unwrap_err(), &w[2].path);
    assert!(matches!(e, Error::MissingTag { tag: "PixelData", .. }), "{e}");
}

// ------------------------------------------------------------- tag values

/// Sets one tag of slice 1 to a hostile value and returns the read's error
/// for that file.
fn with_tag(tag: Tag, vr: VR, value: &str) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let w = series(dir.path());
    rewrite(&w[1].path, |o| put_str(o, tag, vr, value));
    file_error(DicomSeries::read(dir.path()).unwrap_err(), &w[1].path)
}

#[test]
fn rescale_nan_inf_zero_and_overflow_are_invalid() {
    for (tag, name, value) in [
        (tags::RESCALE_SLOPE, "RescaleSlope", "NaN"),
        (tags::RESCALE_SLOPE, "RescaleSlope", "inf"),
        (tags::RESCALE_SLOPE, "RescaleSlope", "-inf"),
        (tags::RESCALE_SLOPE, "RescaleSlope", "1e308"),
        (tags::RESCALE_SLOPE, "RescaleSlope", "1e36"),
        (tags::RESCALE_SLOPE, "RescaleSlope", "0"),
        (tags::RESCALE_SLOPE, "RescaleSlope", "one"),
        (tags::RESCALE_INTERCEPT, "RescaleIntercept", "NaN"),
        (tags::RESCALE_INTERCEPT, "RescaleIntercept", "-Infinity"),
        (tags::RESCALE_INTERCEPT, "RescaleIntercept", "1e308"),
        (tags::RESCALE_INTERCEPT, "RescaleIntercept", "-1024 HU"),
    ] {
        let e = with_tag(tag, VR::DS, value);
        assert_invalid_tag(&e, name);
    }
}

#[test]
fn absent_rescale_uses_the_standard_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let w = series(dir.path());
    for i in &w {
        rewrite(&i.path, |o| {
            o.remove_element(tags::RESCALE_SLOPE);
            o.remove_element(tags::RESCALE_INTERCEPT);
        });
    }
    let s = DicomSeries::read(dir.path()).unwrap();
    assert_eq!(s.volume.data(), small_volume(5).data());
}

#[test]
fn enhanced_rescale_is_checked_too() {
    for (value, name) in [
        ("NaN", "PixelValueTransformationSequence/RescaleSlope"),
        ("0", "PixelValueTransformationSequence/RescaleSlope"),
        ("1e308", "PixelValueTransformationSequence/RescaleSlope"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("enhanced.dcm");
        write_enhanced(&small_volume(4), &p, &DicomWriteOptions::default()).unwrap();
        rewrite(&p, |o| {
            let mut shared = o
                .element(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
                .unwrap()
                .items()
                .unwrap()
                .to_vec();
            let mut pvt = shared[0]
                .element(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE)
                .unwrap()
                .items()
                .unwrap()[0]
                .clone();
            put_str(&mut pvt, tags::RESCALE_SLOPE, VR::DS, value);
            shared[0].put(DataElement::new(
                tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![pvt]),
            ));
            o.put(DataElement::new(
                tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(shared),
            ));
        });
        let e = file_error(DicomSeries::read(&p).unwrap_err(), &p);
        assert_invalid_tag(&e, name);
    }
}

#[test]
fn bits_stored_and_allocated_out_of_range() {
    for (tag, v, name) in [
        (tags::BITS_STORED, 0, "BitsStored"),
        (tags::BITS_STORED, 17, "BitsStored"),
        (tags::BITS_ALLOCATED, 12, "BitsAllocated"),
        (tags::BITS_ALLOCATED, 0, "BitsAllocated"),
        (tags::PIXEL_REPRESENTATION, 2, "PixelRepresentation"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let w = series(dir.path());
        rewrite(&w[1].path, |o| put_u16(o, tag, v));
        let e = file_error(DicomSeries::read(dir.path()).unwrap_err(), &w[1].path);
        assert_invalid_tag(&e, name);
    }
    // Valid DICOM, but not a greyscale volume aneu reads.
    for v in [1, 64] {
        let dir = tempfile::tempdir().unwrap();
        let w = series(dir.path());
        rewrite(&w[1].path, |o| put_u16(o, tags::BITS_ALLOCATED, v));
        let e = file_error(DicomSeries::read(dir.path()).unwrap_err(), &w[1].path);
        assert!(matches!(e, Error::Unsupported { .. }), "{v}: {e}");
    }
}

#[test]
fn absurd_geometry_is_invalid() {
    for (tag, name, value) in [
        (tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient", "1e308\\0\\0"),
        (tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient", "0\\-2e6\\0"),
        (tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient", "0\\0\\NaN"),
        (tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient", "0\\inf\\0"),
        (tags::PIXEL_SPACING, "PixelSpacing", "0\\0.8"),
        (tags::PIXEL_SPACING, "PixelSpacing", "-0.8\\0.8"),
        (tags::PIXEL_SPACING, "PixelSpacing", "1e308\\0.8"),
        (tags::PIXEL_SPACING, "PixelSpacing", "NaN\\0.8"),
        (
            tags::IMAGE_ORIENTATION_PATIENT,
            "ImageOrientationPatient",
            "1\\0\\0\\0\\NaN\\0",
        ),
        (
            tags::IMAGE_ORIENTATION_PATIENT,
            "ImageOrientationPatient",
            "1e308\\0\\0\\0\\1\\0",
        ),
    ] {
        let e = with_tag(tag, VR::DS, value);
        assert_invalid_tag(&e, name);
    }
}

#[test]
fn rows_one_with_full_size_pixel_data_is_an_error() {
    // every slice says 1 row, so the sizes agree and only the pixel data
    // length can tell
    let dir = tempfile::tempdir().unwrap();
    let w = series(dir.path());
    for i in &w {
        rewrite(&i.path, |o| put_u16(o, tags::ROWS, 1));
    }
    let e = DicomSeries::read(dir.path()).unwrap_err();
    assert_invalid_tag(&e, "PixelData");
    assert!(
        e.to_string().contains(".dcm") && e.to_string().contains("1 × 5 × 1"),
        "{e}"
    );

    // A real file: 128 × 128 CT read as 128 × 1.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("CT_small.dcm");
    std::fs::copy(data("dicom/single/CT_small.dcm"), &p).unwrap();
    rewrite(&p, |o| put_u16(o, tags::ROWS, 1));
    let e = DicomSeries::read(&p).unwrap_err();
    assert_invalid_tag(&e, "PixelData");
    assert!(e.to_string().contains("CT_small.dcm"), "{e}");
    let e = read_stored_frames(&p, &Limits::default()).unwrap_err();
    assert_invalid_tag(&e, "PixelData");

    // Rows = 0 is no size at all.
    let e = with_tag(tags::ROWS, VR::IS, "0");
    assert_invalid_tag(&e, "Rows");
}

/// 8-bit pixels, 3 × 5 (an odd 15 bytes): PixelData carries one pad byte,
/// as the standard requires. That is valid and reads.
#[test]
fn odd_length_eight_bit_pixel_data_with_its_pad_byte_reads() {
    let dir = tempfile::tempdir().unwrap();
    let w = series(dir.path());
    for (k, i) in w.iter().enumerate() {
        rewrite(&i.path, |o| {
            put_u16(o, tags::ROWS, 3);
            put_u16(o, tags::COLUMNS, 5);
            put_u16(o, tags::BITS_ALLOCATED, 8);
            put_u16(o, tags::BITS_STORED, 8);
            put_u16(o, tags::HIGH_BIT, 7);
            put_u16(o, tags::PIXEL_REPRESENTATION, 0);
            let mut px: Vec<u8> = (0..15).map(|n| (k * 20 + n) as u8).collect();
            px.push(0);
            o.put(DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(px)));
        });
    }
    let s = DicomSeries::read(dir.path()).unwrap();
    assert_eq!(s.volume.size().to_kji(), [5, 3, 5]);
    assert_eq!(s.volume.data()[[4, 2, 4]], 94.0);
    let f = read_stored_frames(&w[4].path, &Limits::default()).unwrap();
    assert_eq!(f.dim(), (1, 3, 5));
    assert_eq!(f[[0, 2, 4]], 94.0);
}

// ------------------------------------------------------------ deep nesting

/// `levels` sequences nested in one another, each in an item of the one
/// above, explicit VR little endian with undefined lengths.
fn nested_sequences(levels: usize) -> Vec<u8> {
    // (0040,0555) AcquisitionContextSequence
    let open = [
        0x40, 0x00, 0x55, 0x05, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, // SQ, undefined length
        0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF, // item, undefined length
    ];
    let close = [
        0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, // item delimitation
        0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0, // sequence delimitation
    ];
    let mut b = Vec::with_capacity(levels * 36);
    (0..levels).for_each(|_| b.extend_from_slice(&open));
    (0..levels).for_each(|_| b.extend_from_slice(&close));
    b
}

/// A copy of `file` with `levels` nested sequences inserted before the
/// pixel data.
fn with_nesting(file: &[u8], levels: usize) -> Vec<u8> {
    let at = file
        .windows(6)
        .rposition(|b| b == [0xE0, 0x7F, 0x10, 0x00, b'O', b'W'])
        .unwrap();
    [&file[..at], &nested_sequences(levels)[..], &file[at..]].concat()
}

const DEFLATED_EXPLICIT: &str = "1.2.840.10008.1.2.1.99";
const JPIP_REFERENCED_DEFLATE: &str = "1.2.840.10008.1.2.4.95";

/// The same file with its data set deflated, under the transfer syntax
/// `ts` (an even-length UID).
fn deflated(file: &[u8], ts: &str) -> Vec<u8> {
    use std::io::Write;
    const EXPLICIT: &[u8] = b"1.2.840.10008.1.2.1\0";
    let deflated = ts.as_bytes();
    // the file meta group: walk it, swapping the transfer syntax
    let mut meta = Vec::new();
    let mut pos = 132;
    while file[pos..pos + 2] == [0x02, 0x00] {
        let vr = &file[pos + 4..pos + 6];
        let (len, head) = if matches!(vr, b"OB" | b"UN" | b"SQ" | b"UT") {
            (
                u32::from_le_bytes(file[pos + 8..pos + 12].try_into().unwrap()) as usize,
                12,
            )
        } else {
            (u16::from_le_bytes([file[pos + 6], file[pos + 7]]) as usize, 8)
        };
        let elem = &file[pos..pos + head + len];
        if file[pos + 2..pos + 4] == [0x10, 0x00] {
            assert_eq!(&elem[8..], EXPLICIT);
            meta.extend_from_slice(&elem[..6]);
            meta.extend_from_slice(&(deflated.len() as u16).to_le_bytes());
            meta.extend_from_slice(deflated);
        } else if file[pos + 2..pos + 4] != [0x00, 0x00] {
            meta.extend_from_slice(elem);
        }
        pos += head + len;
    }
    let mut out = file[..132].to_vec();
    out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&file[pos..]).unwrap();
    out.extend_from_slice(&enc.finish().unwrap());
    out
}

/// 1,500 nested sequences (54 kB) used to overflow the parser's stack and
/// abort the process; the pre-scan refuses them, deflated or not.
#[test]
fn deeply_nested_sequences_are_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let w = series(dir.path());
    let clean = std::fs::read(&w[2].path).unwrap();

    // shallow nesting is fine
    std::fs::write(&w[2].path, with_nesting(&clean, 8)).unwrap();
    assert_eq!(DicomSeries::read(dir.path()).unwrap().volume.size().nk, 5);
    std::fs::write(&w[2].path, deflated(&with_nesting(&clean, 8), DEFLATED_EXPLICIT)).unwrap();
    assert_eq!(DicomSeries::read(dir.path()).unwrap().volume.size().nk, 5);

    let deep = with_nesting(&clean, 1500);
    for bytes in [
        deep.clone(),
        deflated(&deep, DEFLATED_EXPLICIT),
        deflated(&deep, JPIP_REFERENCED_DEFLATE),
    ] {
        std::fs::write(&w[2].path, &bytes).unwrap();
        let e = file_error(DicomSeries::read(dir.path()).unwrap_err(), &w[2].path);
        assert!(
            matches!(
                e,
                Error::LimitExceeded {
                    what: "sequence nesting depth",
                    requested: 65,
                    limit: 64,
                    ..
                }
            ),
            "{e}"
        );
        let e = read_stored_frames(&w[2].path, &Limits::default()).unwrap_err();
        assert!(matches!(e, Error::LimitExceeded { .. }), "{e}");
    }
    // the limit is a setting
    std::fs::write(&w[2].path, with_nesting(&clean, 8)).unwrap();
    let tight = ReadOptions::default().with_limits(Limits::default().with_max_sequence_depth(4));
    let e = file_error(
        DicomSeries::read_with_options(dir.path(), &tight).unwrap_err(),
        &w[2].path,
    );
    assert!(matches!(e, Error::LimitExceeded { limit: 4, .. }), "{e}");
}

/// An item delimiter outside any item: the token reader would go on to
/// read an item header outside any sequence; the pre-scan stops first.
#[test]
fn stray_item_delimiter_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let w = series(dir.path());
    let clean = std::fs::read(&w[0].path).unwrap();
    let at = clean
        .windows(6)
        .rposition(|b| b == [0xE0, 0x7F, 0x10, 0x00, b'O', b'W'])
        .unwrap();
    let stray = [0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0];
    std::fs::write(&w[0].path, [&clean[..at], &stray[..], &clean[at..]].concat()).unwrap();
    let e = file_error(DicomSeries::read(dir.path()).unwrap_err(), &w[0].path);
    assert!(
        matches!(e, Error::Malformed { .. }) && e.to_string().contains("closes no item"),
        "{e}"
    );
}

// ------------------------------------------------------------------- NIfTI

/// A `.nii` of int16 voxels with its scl_slope / scl_inter patched.
fn nifti_with_scaling(dir: &Path, slope: f32, inter: f32) -> PathBuf {
    let v = Volume::new(
        Array3::from_shape_fn((3, 4, 5), |(k, j, i)| (k * 20 + j * 5 + i) as i16),
        Affine::identity(),
    )
    .unwrap();
    let p = dir.join("scaled.nii");
    write_nifti(&v, &p).unwrap();
    let mut b = std::fs::read(&p).unwrap();
    b[112..116].copy_from_slice(&slope.to_le_bytes());
    b[116..120].copy_from_slice(&inter.to_le_bytes());
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn nifti_scaling_nan_or_inf_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    for (slope, inter, name) in [
        (f32::NAN, 0.0, "scl_slope"),
        (f32::INFINITY, 0.0, "scl_slope"),
        (f32::NEG_INFINITY, 0.0, "scl_slope"),
        (1.0, f32::NAN, "scl_inter"),
        (1.0, f32::INFINITY, "scl_inter"),
        (1e38, 0.0, "scl_slope"),
    ] {
        let p = nifti_with_scaling(dir.path(), slope, inter);
        let e = read_nifti(&p).unwrap_err();
        assert_invalid_tag(&e, name);
        assert!(e.to_string().contains("scaled.nii"), "{e}");
    }
    // scl_slope = 0 means "no scaling" (NIfTI-1), whatever scl_inter says
    let p = nifti_with_scaling(dir.path(), 0.0, 5.0);
    let v = read_nifti(&p).unwrap();
    assert_eq!(v.data()[[2, 3, 4]], 59.0);
    let p = nifti_with_scaling(dir.path(), 2.0, -1.0);
    assert_eq!(read_nifti(&p).unwrap().data()[[2, 3, 4]], 117.0);
}

#[test]
fn nifti_non_finite_voxels_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for (bad, name) in [
        (f32::INFINITY, "inf.nii"),
        (f32::NAN, "nan.nii.gz"),
        (f32::NEG_INFINITY, "neg.nii"),
    ] {
        let mut v = small_volume(3);
        v.data_mut()[[1, 2, 3]] = bad;
        v.data_mut()[[2, 0, 0]] = bad;
        let p = dir.path().join(name);
        write_nifti(&v, &p).unwrap();
        let e = read_nifti(&p).unwrap_err();
        let Error::NonFiniteVoxels { count, first, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!((*count, first.i, first.j, first.k), (2, 3, 2, 1), "{e}");
        assert!(e.to_string().contains(name), "{e}");
    }
}

#[test]
fn nifti_gzip_crc_and_length_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.nii.gz");
    write_nifti(&small_volume(3), &p).unwrap();
    let clean = std::fs::read(&p).unwrap();
    let n = clean.len();
    for at in [n - 8, n - 5, n - 1] {
        // CRC-32 (n-8..n-4), then ISIZE (n-4..n)
        let mut b = clean.clone();
        b[at] ^= 0x5A;
        std::fs::write(&p, &b).unwrap();
        let e = read_nifti(&p).unwrap_err();
        assert!(matches!(e, Error::CorruptGzip { .. }), "byte {at}: {e}");
        assert!(e.to_string().contains("v.nii.gz"), "{e}");
    }
    // cut inside the trailer
    std::fs::write(&p, &clean[..n - 3]).unwrap();
    let e = read_nifti(&p).unwrap_err();
    assert!(matches!(e, Error::CorruptGzip { .. }), "{e}");
}

#[test]
fn write_nifti_refuses_links_fifos_and_folders() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let v = small_volume(2);

    let real = d.join("real.nii.gz");
    std::fs::write(&real, b"not aneu's").unwrap();
    let link = d.join("link.nii.gz");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let e = write_nifti(&v, &link).unwrap_err();
    assert!(
        matches!(e, Error::UnsafeOutput { .. }) && e.to_string().contains("link.nii.gz"),
        "{e}"
    );
    assert_eq!(std::fs::read(&real).unwrap(), b"not aneu's");

    let folder = d.join("folder.nii");
    std::fs::create_dir(&folder).unwrap();
    let e = write_nifti(&v, &folder).unwrap_err();
    assert!(matches!(e, Error::UnsafeOutput { .. }), "{e}");

    let fifo = d.join("fifo.nii");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    if made {
        let e = write_nifti(&v, &fifo).unwrap_err();
        assert!(
            matches!(e, Error::UnsafeOutput { .. }) && e.to_string().contains("fifo.nii"),
            "{e}"
        );
    } else {
        eprintln!("mkfifo unavailable: FIFO case skipped");
    }
    no_temporary_files(d);

    // a regular file written by anyone is replaced (atomically)
    write_nifti(&v, &real).unwrap();
    assert_eq!(read_nifti(&real).unwrap().data(), v.data());
    no_temporary_files(d);
}

#[test]
fn failed_nifti_writes_leave_no_temporary_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let v = small_volume(2);

    // a "folder" that is a file
    let file = dir.path().join("file.txt");
    std::fs::write(&file, b"x").unwrap();
    let e = write_nifti(&v, file.join("v.nii.gz")).unwrap_err();
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("file.txt"),
        "{e}"
    );

    // a read-only folder (root may write there anyway)
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    for name in ["v.nii.gz", "v.nii"] {
        match write_nifti(&v, ro.join(name)) {
            Err(e) => assert!(matches!(e, Error::Io { .. } | Error::Nifti { .. }), "{e}"),
            Ok(()) => eprintln!("running as root: the read-only folder was writable"),
        }
        no_temporary_files(&ro);
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    no_temporary_files(dir.path());
}

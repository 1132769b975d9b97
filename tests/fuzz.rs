//! 2,000+ byte-level mutations of the real sample files (truncation, byte
//! flips, overwritten length fields), then 1,200 tag-level mutations of a
//! small valid series (hostile RescaleSlope / RescaleIntercept, BitsStored,
//! BitsAllocated, Rows, Columns, ImagePositionPatient, PixelSpacing, … on
//! one slice). Every read must return `Ok` or a typed `Err` naming the
//! file: no panic, no abort, and no single allocation larger than the
//! configured [`Limits`]; and a tag-mutated series that reads `Ok` has the
//! clean series' shape and finite data and affine. A counting global
//! allocator records the largest request; this binary holds one test so
//! nothing else allocates.

#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)] // the counting allocator only

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use aneu::io::{
    Affine, DicomSeries, DicomWriteOptions, Error, Limits, ReadOptions, Volume, read_nifti_with_limits,
    read_stored_frames, write_series,
};
use dicom::core::{DataElement, PrimitiveValue, Tag, VR};
use dicom::dictionary_std::tags;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records sizes.

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const LIMIT: u64 = 16 << 20;

fn data(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

fn mutate(rng: &mut StdRng, src: &[u8]) -> Vec<u8> {
    let mut b = src.to_vec();
    match rng.random_range(0..4) {
        0 => {
            let n = rng.random_range(0..b.len());
            b.truncate(n);
        }
        1 => {
            for _ in 0..rng.random_range(1..16) {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
        }
        2 => {
            // overwrite a plausible length field (u16 or u32) with a hostile value
            let i = rng.random_range(132.min(b.len() - 4)..b.len() - 4);
            let v: u32 = *[
                u32::MAX,
                u32::MAX - 1,
                0x7FFF_FFFF,
                0x0100_0000,
                0xFFFF,
                0,
                rng.random(),
            ]
            .get(rng.random_range(0..7))
            .unwrap_or(&0);
            if rng.random_bool(0.5) {
                b[i..i + 4].copy_from_slice(&v.to_le_bytes());
            } else {
                b[i..i + 2].copy_from_slice(&(v as u16).to_le_bytes());
            }
        }
        _ => {
            // cut a chunk out of the middle
            let i = rng.random_range(0..b.len());
            let n = rng.random_range(1..64).min(b.len() - i);
            b.drain(i..i + n);
        }
    }
    b
}

#[test]
fn mutated_files_never_panic_or_over_allocate() {
    let sources = [
        "dicom/series/ct5n/2062",
        "dicom/single/CT_small.dcm",
        "dicom/compressed/MR_small.dcm",
        "dicom/compressed/MR_small_RLE.dcm",
        "dicom/compressed/MR_small_jp2klossless.dcm",
        "dicom/compressed/MR_small_jpeg_ls_lossless.dcm",
        "dicom/compressed/MR_small_bigendian.dcm",
        "dicom/compressed/MR_small_implicit.dcm",
        "dicom/compressed/JPEGLSNearLossless_16.dcm",
        "dicom/compressed/693_J2KI.dcm",
        "dicom/compressed/synth_deflate.dcm",
        "dicom/compressed/synth_jpeg_baseline.dcm",
        "dicom/enhanced/emri_small.dcm",
        "dicom/enhanced/emri_small_RLE.dcm",
        "nifti/nibabel_anatomical.nii",
        "nifti/dipy_aniso_vox.nii.gz",
    ];
    let limits = Limits::default()
        .with_max_file_bytes(LIMIT)
        .with_max_bytes(LIMIT)
        .with_max_voxels(LIMIT / 4);
    let opts = ReadOptions::default().with_limits(limits);
    let dir = tempfile::tempdir().unwrap();
    // ANEU_FUZZ_SEED explores other mutations; CI uses the fixed seed.
    let seed = std::env::var("ANEU_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261122);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut ok, mut err, mut panics, mut over, mut largest) = (0, 0, Vec::new(), Vec::new(), 0usize);
    let per_source = 2100 / sources.len() + 1;
    let originals: Vec<Vec<u8>> = sources.iter().map(|s| std::fs::read(data(s)).unwrap()).collect();
    for (s, src) in sources.iter().zip(&originals) {
        for n in 0..per_source {
            let bytes = mutate(&mut rng, src);
            let sub = dir.path().join(format!("{n}"));
            std::fs::create_dir_all(&sub).unwrap();
            let name = if s.ends_with(".nii.gz") {
                "m.nii.gz"
            } else if s.ends_with(".nii") {
                "m.nii"
            } else {
                "m.dcm"
            };
            let f = sub.join(name);
            std::fs::write(&f, &bytes).unwrap();
            LARGEST.store(0, Ordering::Relaxed);
            let r = catch_unwind(AssertUnwindSafe(|| {
                if name == "m.dcm" {
                    let a = read_stored_frames(&f, &limits).map(|_| ());
                    let b = DicomSeries::read_with_options(&sub, &opts).map(|_| ());
                    a.and(b)
                } else {
                    read_nifti_with_limits(&f, &limits).map(|_| ())
                }
            }));
            match r {
                Ok(Ok(())) => ok += 1,
                Ok(Err(e)) => {
                    // errors name the file
                    assert!(
                        e.to_string().contains("m."),
                        "{s} #{n}: error does not name the file: {e}"
                    );
                    err += 1
                }
                Err(_) => panics.push(format!("{s} #{n}")),
            }
            let big = LARGEST.load(Ordering::Relaxed);
            if big as u64 > 2 * LIMIT {
                over.push(format!("{s} #{n}: {big} bytes"));
                std::fs::copy(
                    &f,
                    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("over_{n}_{name}")),
                )
                .ok();
            }
            largest = largest.max(big);
            std::fs::remove_dir_all(&sub).unwrap();
        }
    }
    eprintln!(
        "byte round: {ok} ok, {err} typed errors, {} panics; largest allocation {largest} bytes",
        panics.len()
    );
    assert!(panics.is_empty(), "panics on: {panics:?}");
    assert!(ok + err >= 2000);
    assert!(over.is_empty(), "allocations beyond the limit: {over:?}");

    tag_round(&mut rng, dir.path(), &limits, &opts);
}

/// Values that a hostile or broken writer puts in a decimal string.
const HOSTILE_DS: &[&str] = &[
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "0",
    "-0",
    "-1",
    "1e308",
    "-1e308",
    "1e38",
    "3.5e38",
    "1e-320",
    "1e6",
    "1000001",
    "",
    " ",
    "abc",
    "1e",
    "1.5.2",
    "65535",
    "4294967296",
];

/// Values that a hostile or broken writer puts in an unsigned short.
const HOSTILE_US: &[u16] = &[0, 1, 2, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 64, 255, 256, 65535];

/// A hostile decimal: a listed one, or a random finite one.
fn hostile_ds(rng: &mut StdRng) -> String {
    if rng.random_bool(0.8) {
        HOSTILE_DS[rng.random_range(0..HOSTILE_DS.len())].to_string()
    } else {
        format!("{:.3}", rng.random_range(-1e4..1e4))
    }
}

/// A multi-valued DS: the clean values with one or all replaced, or with
/// a value too few or too many.
fn hostile_multi(rng: &mut StdRng, clean: &[f64]) -> String {
    let mut v: Vec<String> = clean.iter().map(|x| format!("{x}")).collect();
    match rng.random_range(0..4) {
        0 => v.iter_mut().for_each(|x| *x = hostile_ds(rng)),
        1 => {
            v.pop();
        }
        2 => v.push(hostile_ds(rng)),
        _ => {
            let i = rng.random_range(0..v.len());
            v[i] = hostile_ds(rng);
        }
    }
    v.join("\\")
}

/// Sets one pixel, rescale or geometry tag of `obj` to a hostile value.
/// Returns what it did, for the failure report.
fn mutate_tag(rng: &mut StdRng, obj: &mut dicom::object::DefaultDicomObject) -> String {
    let ds = |obj: &mut dicom::object::DefaultDicomObject, tag: Tag, v: String| {
        obj.put(DataElement::new(tag, VR::DS, PrimitiveValue::from(v)));
    };
    let us_tags: [(Tag, &str, u16); 6] = [
        (tags::ROWS, "Rows", 6),
        (tags::COLUMNS, "Columns", 5),
        (tags::BITS_STORED, "BitsStored", 16),
        (tags::BITS_ALLOCATED, "BitsAllocated", 16),
        (tags::PIXEL_REPRESENTATION, "PixelRepresentation", 0),
        (tags::HIGH_BIT, "HighBit", 15),
    ];
    match rng.random_range(0..9) {
        0 => {
            let v = hostile_ds(rng);
            ds(obj, tags::RESCALE_SLOPE, v.clone());
            format!("RescaleSlope = {v:?}")
        }
        1 => {
            let v = hostile_ds(rng);
            ds(obj, tags::RESCALE_INTERCEPT, v.clone());
            format!("RescaleIntercept = {v:?}")
        }
        2 => {
            let v = hostile_multi(rng, &[10.0, 20.0, 30.0]);
            ds(obj, tags::IMAGE_POSITION_PATIENT, v.clone());
            format!("ImagePositionPatient = {v:?}")
        }
        3 => {
            let v = hostile_multi(rng, &[0.8, 0.8]);
            ds(obj, tags::PIXEL_SPACING, v.clone());
            format!("PixelSpacing = {v:?}")
        }
        4 => {
            let v = hostile_multi(rng, &[-1.0, 0.0, 0.0, 0.0, -1.0, 0.0]);
            ds(obj, tags::IMAGE_ORIENTATION_PATIENT, v.clone());
            format!("ImageOrientationPatient = {v:?}")
        }
        5 => {
            let v = hostile_ds(rng);
            obj.put(DataElement::new(
                tags::NUMBER_OF_FRAMES,
                VR::IS,
                PrimitiveValue::from(v.clone()),
            ));
            format!("NumberOfFrames = {v:?}")
        }
        6 => {
            // a US tag written as unparseable or hostile text
            let (tag, name, _) = us_tags[rng.random_range(0..us_tags.len())];
            let v = hostile_ds(rng);
            obj.put(DataElement::new(tag, VR::IS, PrimitiveValue::from(v.clone())));
            format!("{name} = {v:?} (IS)")
        }
        _ => {
            let (tag, name, clean) = us_tags[rng.random_range(0..us_tags.len())];
            let v = if rng.random_bool(0.3) {
                // off by one
                if rng.random_bool(0.5) {
                    clean.wrapping_add(1)
                } else {
                    clean.wrapping_sub(1)
                }
            } else {
                HOSTILE_US[rng.random_range(0..HOSTILE_US.len())]
            };
            obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
            format!("{name} = {v}")
        }
    }
}

/// The kind of an error (its variant, or the variant of the first
/// unreadable file), for the summary.
fn kind(e: &Error) -> String {
    let e = match e {
        Error::UnreadableFiles { first, .. } => first.as_ref(),
        e => e,
    };
    let d = format!("{e:?}");
    d.split([' ', '{', '(']).next().unwrap_or_default().to_string()
}

/// 1,200 series of 4 slices, one slice with 1 to 3 hostile tags.
fn tag_round(rng: &mut StdRng, dir: &Path, limits: &Limits, opts: &ReadOptions) {
    let a = Affine::from_parts(
        [[-0.8, 0.0, 0.0], [0.0, -0.8, 0.0], [0.0, 0.0, 1.5]],
        [10.0, 20.0, 30.0],
    )
    .unwrap();
    let data = ndarray::Array3::from_shape_fn((4, 6, 5), |(k, j, i)| (k * 30 + j * 5 + i) as f32 - 40.0);
    let clean_dir = dir.join("clean");
    let written = write_series(
        &Volume::new(data, a).unwrap(),
        &clean_dir,
        &DicomWriteOptions::default(),
    )
    .unwrap();
    let clean = DicomSeries::read_with_options(&clean_dir, opts).unwrap();
    let uid = clean.meta.series_uid.clone();
    let originals: Vec<Vec<u8>> = written.iter().map(|w| std::fs::read(&w.path).unwrap()).collect();

    let (mut ok, mut err, mut panics, mut bad_ok, mut unnamed, mut over) =
        (0, 0, Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for n in 0..1200 {
        let sub = dir.join(format!("t{n}"));
        std::fs::create_dir_all(&sub).unwrap();
        for (w, bytes) in written.iter().zip(&originals) {
            std::fs::write(sub.join(w.path.file_name().unwrap()), bytes).unwrap();
        }
        let victim = sub.join(written[rng.random_range(0..written.len())].path.file_name().unwrap());
        let mut obj = dicom::object::open_file(&victim).unwrap();
        let what: Vec<String> = (0..rng.random_range(1..=3))
            .map(|_| mutate_tag(rng, &mut obj))
            .collect();
        obj.write_to_file(&victim).unwrap();

        LARGEST.store(0, Ordering::Relaxed);
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _ = read_stored_frames(&victim, limits);
            DicomSeries::read_with_options(&sub, opts)
        }));
        match r {
            Ok(Ok(s)) => {
                ok += 1;
                let finite = s.volume.data().iter().all(|v| v.is_finite())
                    && s.volume.affine().matrix().iter().flatten().all(|v| v.is_finite());
                if s.volume.size() != clean.volume.size() || !finite {
                    bad_ok.push(format!("#{n} {what:?}: size {:?}, finite {finite}", s.volume.size()));
                }
            }
            Ok(Err(e)) => {
                err += 1;
                *kinds.entry(kind(&e)).or_default() += 1;
                let msg = e.to_string();
                if !(msg.contains(".dcm") || msg.contains(&uid)) {
                    unnamed.push(format!("#{n} {what:?}: {msg}"));
                }
            }
            Err(_) => panics.push(format!("#{n} {what:?}")),
        }
        let big = LARGEST.load(Ordering::Relaxed);
        if big as u64 > 2 * LIMIT {
            over.push(format!("#{n} {what:?}: {big} bytes"));
        }
        std::fs::remove_dir_all(&sub).unwrap();
    }
    eprintln!(
        "tag round: {ok} ok, {err} typed errors, {} panics; errors by kind: {kinds:?}",
        panics.len()
    );
    assert!(panics.is_empty(), "panics on: {panics:?}");
    assert!(
        bad_ok.is_empty(),
        "Ok with a wrong shape or non-finite values: {bad_ok:?}"
    );
    assert!(unnamed.is_empty(), "errors that name no file: {unnamed:?}");
    assert!(over.is_empty(), "allocations beyond the limit: {over:?}");
    assert_eq!(ok + err, 1200);
}

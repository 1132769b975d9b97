//! Reading: discovery, header parsing, geometry, pixel decoding.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dicom::core::Tag;
use dicom::dictionary_std::tags;
use dicom::object::file::ReadPreamble;
use dicom::object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom::pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use ndarray::Array3;
use rayon::prelude::*;

use super::{DicomSeries, ReadOptions, SeriesMeta, SeriesSummary, SkippedFile, SliceEntry, SliceIndex, guard};
use crate::geometry::{Affine, VoxelIndex};
use crate::volume::Volume;
use crate::{Error, Limits, Result};

/// The largest magnitude, in mm, accepted for an ImagePositionPatient
/// coordinate and for a pixel or slice spacing: 1 km. Scanners report
/// positions within a few hundred millimetres of the isocentre; a value
/// beyond this is a corrupt header, and bounding it keeps every affine
/// finite.
const MAX_MM: f64 = 1e6;

/// The smallest PixelSpacing accepted, in mm (1 nm).
const MIN_SPACING_MM: f64 = 1e-6;

/// SOP classes of images (PS3.4 B.5) that a volume could be built from,
/// or that would belong to one. An object of one of these classes
/// without PixelData lost its pixels; it is not a non-image object.
const IMAGE_STORAGE: &[&str] = &[
    "1.2.840.10008.5.1.4.1.1.1",      // Computed Radiography
    "1.2.840.10008.5.1.4.1.1.1.1",    // Digital X-Ray, for presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  // Digital X-Ray, for processing
    "1.2.840.10008.5.1.4.1.1.1.2",    // Mammography, for presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",  // Mammography, for processing
    "1.2.840.10008.5.1.4.1.1.2",      // CT
    "1.2.840.10008.5.1.4.1.1.2.1",    // Enhanced CT
    "1.2.840.10008.5.1.4.1.1.2.2",    // Legacy Converted Enhanced CT
    "1.2.840.10008.5.1.4.1.1.2.3",    // CT, for processing
    "1.2.840.10008.5.1.4.1.1.2.4",    // Enhanced CT, for processing
    "1.2.840.10008.5.1.4.1.1.2.5",    // Legacy Converted Enhanced CT, for processing
    "1.2.840.10008.5.1.4.1.1.3.1",    // Ultrasound Multi-frame
    "1.2.840.10008.5.1.4.1.1.4",      // MR
    "1.2.840.10008.5.1.4.1.1.4.1",    // Enhanced MR
    "1.2.840.10008.5.1.4.1.1.4.3",    // Enhanced MR Color
    "1.2.840.10008.5.1.4.1.1.4.4",    // Legacy Converted Enhanced MR
    "1.2.840.10008.5.1.4.1.1.5",      // Nuclear Medicine (retired)
    "1.2.840.10008.5.1.4.1.1.6.1",    // Ultrasound
    "1.2.840.10008.5.1.4.1.1.6.2",    // Enhanced US Volume
    "1.2.840.10008.5.1.4.1.1.7",      // Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.1",    // Multi-frame Single Bit SC
    "1.2.840.10008.5.1.4.1.1.7.2",    // Multi-frame Grayscale Byte SC
    "1.2.840.10008.5.1.4.1.1.7.3",    // Multi-frame Grayscale Word SC
    "1.2.840.10008.5.1.4.1.1.7.4",    // Multi-frame True Color SC
    "1.2.840.10008.5.1.4.1.1.12.1",   // X-Ray Angiographic
    "1.2.840.10008.5.1.4.1.1.12.1.1", // Enhanced XA
    "1.2.840.10008.5.1.4.1.1.12.2",   // X-Ray Radiofluoroscopic
    "1.2.840.10008.5.1.4.1.1.12.2.1", // Enhanced XRF
    "1.2.840.10008.5.1.4.1.1.13.1.1", // X-Ray 3D Angiographic
    "1.2.840.10008.5.1.4.1.1.13.1.2", // X-Ray 3D Craniofacial
    "1.2.840.10008.5.1.4.1.1.13.1.3", // Breast Tomosynthesis
    "1.2.840.10008.5.1.4.1.1.20",     // Nuclear Medicine
    "1.2.840.10008.5.1.4.1.1.66.4",   // Segmentation
    "1.2.840.10008.5.1.4.1.1.128",    // PET
    "1.2.840.10008.5.1.4.1.1.128.1",  // Legacy Converted Enhanced PET
    "1.2.840.10008.5.1.4.1.1.130",    // Enhanced PET
    "1.2.840.10008.5.1.4.1.1.481.1",  // RT Image
];

/// Attributes of the Image Pixel, Image Plane and Multi-frame modules.
/// An object that has any of them is an image, so it must have PixelData.
const IMAGE_ATTRIBUTES: &[Tag] = &[
    tags::ROWS,
    tags::COLUMNS,
    tags::BITS_ALLOCATED,
    tags::BITS_STORED,
    tags::PHOTOMETRIC_INTERPRETATION,
    tags::IMAGE_POSITION_PATIENT,
    tags::IMAGE_ORIENTATION_PATIENT,
    tags::PIXEL_SPACING,
    tags::NUMBER_OF_FRAMES,
    tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
];

/// The Media Storage Directory (DICOMDIR) SOP class.
const MEDIA_STORAGE_DIRECTORY: &str = "1.2.840.10008.1.3.10";

/// A parsed DICOM file.
pub(crate) struct Loaded {
    pub path: PathBuf,
    pub obj: DefaultDicomObject,
    pub ts_uid: String,
}

/// Geometry and rescale of one frame.
#[derive(Clone, Debug)]
struct FrameInfo {
    file: usize,
    frame: Option<u32>,
    ipp: [f64; 3],
    iop: [f64; 6],
    spacing: [f64; 2],
    slope: f64,
    intercept: f64,
}

fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let md = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if md.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    // symbolic links are followed, to files and folders alike; a folder
    // reached twice (a link cycle) is listed once
    let mut seen = std::collections::BTreeSet::new();
    while let Some(d) = stack.pop() {
        if !seen.insert(d.canonicalize().map_err(|e| Error::io(&d, e))?) {
            continue;
        }
        let rd = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let p = entry.path();
            let ft = entry.file_type().map_err(|e| Error::io(&p, e))?;
            let is_dir = if ft.is_symlink() {
                // a link to nothing is a file that cannot be read: an error
                std::fs::metadata(&p).is_ok_and(|m| m.is_dir())
            } else {
                ft.is_dir()
            };
            if is_dir {
                stack.push(p);
            } else if ft.is_file() || ft.is_symlink() {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether the file's name says it is DICOM: `.dcm` or `.dicom`, in any
/// case.
fn named_dicom(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm") || e.eq_ignore_ascii_case("dicom"))
}

/// Whether `bytes` are a Part 10 file cut inside its preamble or its
/// `DICM` magic: shorter than 132 bytes, all zero up to byte 128 (the
/// usual preamble), then at most a prefix of `DICM`.
fn cut_in_preamble(bytes: &[u8]) -> bool {
    bytes.len() < 132
        && bytes.iter().take(128).all(|&b| b == 0)
        && bytes.get(128..).is_none_or(|m| b"DICM".starts_with(m))
}

/// Reads and parses one file. `Ok(None)` if it is not DICOM and does not
/// pretend to be.
///
/// # Errors
/// [`Error::EmptyFile`] for a 0-byte file; [`Error::NotDicom`] for a file
/// named `*.dcm` / `*.dicom` without the `DICM` magic, or one cut inside
/// the preamble; the pre-scan's and the parser's errors.
pub(crate) fn load(path: &Path, limits: &Limits) -> Result<Option<Loaded>> {
    let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if size == 0 {
        return Err(Error::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    limits.check_file(path, size)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() {
        return Err(Error::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    if !guard::has_magic(&bytes) {
        if named_dicom(path) || cut_in_preamble(&bytes) {
            return Err(Error::NotDicom {
                path: path.to_path_buf(),
            });
        }
        return Ok(None);
    }
    let ts_uid = guard::check(path, &bytes, limits)?;
    let obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .from_reader(&bytes[..])
        .map_err(|e| Error::DicomParse {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
    Ok(Some(Loaded {
        path: path.to_path_buf(),
        obj,
        ts_uid,
    }))
}

/// The raw bytes of an element whose VR is UN (an implicit-VR element
/// passed through explicit VR by an archive). Its value must be read by the
/// dictionary VR, as dcm2niix and pydicom do.
fn un_bytes(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<u8>> {
    let e = obj.get(tag)?;
    (e.vr() == dicom::core::VR::UN)
        .then(|| e.to_bytes().ok().map(|b| b.to_vec()))
        .flatten()
}

fn trimmed(s: &str) -> Option<String> {
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

pub(crate) fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    if let Some(b) = un_bytes(obj, tag) {
        return trimmed(&String::from_utf8_lossy(&b));
    }
    trimmed(&obj.get(tag)?.to_str().ok()?)
}

fn invalid(path: &Path, tag: &'static str, reason: String) -> Error {
    Error::InvalidTag {
        path: path.to_path_buf(),
        tag,
        reason,
    }
}

/// The values of a numeric attribute (DS, IS, or a binary VR; read as
/// text when it arrived as UN). Absent and present-but-invalid are kept
/// apart: `Ok(None)` when the attribute is absent or empty (the caller
/// applies the standard's default), [`Error::InvalidTag`] naming `name`
/// when it is present but unparseable, NaN or infinite.
fn numbers(path: &Path, obj: &InMemDicomObject, tag: Tag, name: &'static str) -> Result<Option<Vec<f64>>> {
    let Some(e) = obj.get(tag) else {
        return Ok(None);
    };
    let v: Vec<f64> = if let Some(b) = un_bytes(obj, tag) {
        let s = String::from_utf8_lossy(&b);
        if trimmed(&s).is_none() {
            return Ok(None);
        }
        s.split('\\')
            .map(|p| {
                let p = p.trim_matches(|c: char| c == '\0' || c.is_whitespace());
                p.parse::<f64>()
                    .map_err(|_| invalid(path, name, format!("{p:?} is not a number")))
            })
            .collect::<Result<_>>()?
    } else {
        let shown = match e.to_str() {
            Ok(s) => s.into_owned(),
            Err(_) => return Err(invalid(path, name, format!("a {:?} value is not a number", e.vr()))),
        };
        if trimmed(&shown).is_none() {
            return Ok(None);
        }
        e.to_multi_float64()
            .map_err(|_| invalid(path, name, format!("{shown:?} is not a number")))?
    };
    if let Some(x) = v.iter().find(|x| !x.is_finite()) {
        return Err(invalid(path, name, format!("{x} is not a finite number")));
    }
    Ok((!v.is_empty()).then_some(v))
}

/// The first value of a numeric attribute; see [`numbers`].
fn number(path: &Path, obj: &InMemDicomObject, tag: Tag, name: &'static str) -> Result<Option<f64>> {
    Ok(numbers(path, obj, tag, name)?.and_then(|v| v.first().copied()))
}

/// One integer attribute (US, UL, SS, IS; also when it arrived as UN: a
/// 2- or 4-byte binary value, or decimal text). `Ok(None)` when absent or
/// empty, [`Error::InvalidTag`] naming `name` when present but not an
/// integer.
fn integer(path: &Path, obj: &InMemDicomObject, tag: Tag, name: &'static str) -> Result<Option<i64>> {
    let Some(e) = obj.get(tag) else {
        return Ok(None);
    };
    if let Some(raw) = un_bytes(obj, tag) {
        return match raw.as_slice() {
            [] => Ok(None),
            [a, b] => Ok(Some(i64::from(u16::from_le_bytes([*a, *b])))),
            [a, b, c, d] if !is_decimal_text(&[*a, *b, *c, *d]) => {
                Ok(Some(i64::from(u32::from_le_bytes([*a, *b, *c, *d]))))
            }
            _ => match trimmed(&String::from_utf8_lossy(&raw)) {
                None => Ok(None),
                Some(t) => t
                    .parse()
                    .map(Some)
                    .map_err(|_| invalid(path, name, format!("{t:?} is not an integer"))),
            },
        };
    }
    let shown = match e.to_str() {
        Ok(s) => s.into_owned(),
        Err(_) => return Err(invalid(path, name, format!("a {:?} value is not an integer", e.vr()))),
    };
    if trimmed(&shown).is_none() {
        return Ok(None);
    }
    if let Ok(v) = e.to_int::<i64>() {
        return Ok(Some(v));
    }
    // "512.0" in an IS: an integer all the same.
    match e.to_float64() {
        Ok(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(Some(v as i64)),
        _ => Err(invalid(path, name, format!("{shown:?} is not an integer"))),
    }
}

/// Whether four UN bytes are decimal text (an IS such as `"512 "`) rather
/// than a binary UL.
fn is_decimal_text(b: &[u8; 4]) -> bool {
    b.iter().all(|c| c.is_ascii_digit() || *c == b' ')
}

fn item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)?.items()?.first()
}

fn items(obj: &InMemDicomObject, tag: Tag) -> Option<&[InMemDicomObject]> {
    obj.get(tag)?.items()
}

fn fixed<const N: usize>(path: &Path, v: Option<Vec<f64>>, tag: &'static str) -> Result<[f64; N]> {
    let v = v.ok_or_else(|| Error::MissingTag {
        path: path.to_path_buf(),
        tag,
    })?;
    v.get(..N)
        .and_then(|s| <[f64; N]>::try_from(s).ok())
        .ok_or_else(|| invalid(path, tag, format!("{} values, {N} expected", v.len())))
}

fn check_iop(path: &Path, iop: [f64; 6], tag: &'static str) -> Result<[f64; 6]> {
    let r = [iop[0], iop[1], iop[2]];
    let c = [iop[3], iop[4], iop[5]];
    let nr = dot(r, r).sqrt();
    let nc = dot(c, c).sqrt();
    let unit = |n: f64| (n - 1.0).abs() <= 1e-2;
    if !(iop.iter().all(|v| v.is_finite()) && unit(nr) && unit(nc) && (dot(r, c) / (nr * nc)).abs() <= 1e-2) {
        return Err(invalid(
            path,
            tag,
            format!("{iop:?} is not two orthogonal unit vectors"),
        ));
    }
    Ok(iop)
}

fn check_spacing(path: &Path, s: [f64; 2], tag: &'static str) -> Result<[f64; 2]> {
    if !s.iter().all(|v| (MIN_SPACING_MM..=MAX_MM).contains(v)) {
        return Err(invalid(
            path,
            tag,
            format!("{s:?} mm is not between {MIN_SPACING_MM} and {MAX_MM} mm"),
        ));
    }
    Ok(s)
}

fn check_position(path: &Path, p: [f64; 3], tag: &'static str) -> Result<[f64; 3]> {
    if !p.iter().all(|v| v.abs() <= MAX_MM) {
        return Err(invalid(
            path,
            tag,
            format!("{p:?} mm lies more than {MAX_MM} mm from the origin"),
        ));
    }
    Ok(p)
}

pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// NumberOfFrames: 1 when absent, an error when present but not a
/// positive integer.
fn number_of_frames(path: &Path, obj: &InMemDicomObject) -> Result<u32> {
    match integer(path, obj, tags::NUMBER_OF_FRAMES, "NumberOfFrames")? {
        None => Ok(1),
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid(path, "NumberOfFrames", format!("{n} is not a positive frame count"))),
    }
}

/// Rows and Columns: present, and between 1 and 65535 (a US value).
fn dims(path: &Path, obj: &InMemDicomObject) -> Result<(u32, u32)> {
    let one = |tag: Tag, name: &'static str| -> Result<u32> {
        let v = integer(path, obj, tag, name)?.ok_or_else(|| Error::MissingTag {
            path: path.to_path_buf(),
            tag: name,
        })?;
        u32::try_from(v)
            .ok()
            .filter(|v| (1..=65535).contains(v))
            .ok_or_else(|| invalid(path, name, format!("{v} is not between 1 and 65535")))
    };
    Ok((one(tags::ROWS, "Rows")?, one(tags::COLUMNS, "Columns")?))
}

/// How the stored samples of an instance are laid out, checked against
/// the Image Pixel module (PS3.3 C.7.6.3): BitsAllocated is 1 or a
/// multiple of 8 (8, 16 and 32 are read here), 1 ≤ BitsStored ≤
/// BitsAllocated, PixelRepresentation is 0 or 1.
#[derive(Clone, Copy, Debug)]
struct PixelFormat {
    bits_allocated: u16,
    bits_stored: u16,
    signed: bool,
}

impl PixelFormat {
    /// The smallest and largest value a sample can hold.
    fn range(&self) -> (f64, f64) {
        let b = i32::from(self.bits_allocated);
        if self.signed {
            (-(2f64.powi(b - 1)), 2f64.powi(b - 1) - 1.0)
        } else {
            (0.0, 2f64.powi(b) - 1.0)
        }
    }
}

fn pixel_format(path: &Path, obj: &InMemDicomObject) -> Result<PixelFormat> {
    // BitsAllocated is type 1; files without it were read as 16-bit
    // before, and still are.
    let alloc = integer(path, obj, tags::BITS_ALLOCATED, "BitsAllocated")?.unwrap_or(16);
    let bits_allocated = match alloc {
        8 | 16 | 32 => alloc as u16,
        1 => {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                reason: "1-bit pixels (BitsAllocated = 1) are a binary mask, not a greyscale image".into(),
            });
        }
        b if b > 0 && b % 8 == 0 => {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                reason: format!("BitsAllocated = {b}; 8, 16 and 32 are read"),
            });
        }
        b => {
            return Err(invalid(
                path,
                "BitsAllocated",
                format!("{b}: the standard allows 1 or a multiple of 8"),
            ));
        }
    };
    let stored = integer(path, obj, tags::BITS_STORED, "BitsStored")?.unwrap_or(alloc);
    if !(1..=alloc).contains(&stored) {
        return Err(invalid(
            path,
            "BitsStored",
            format!("{stored} with BitsAllocated = {alloc}: must be between 1 and BitsAllocated"),
        ));
    }
    let signed = match integer(path, obj, tags::PIXEL_REPRESENTATION, "PixelRepresentation")? {
        None | Some(0) => false,
        Some(1) => true,
        Some(v) => {
            return Err(invalid(path, "PixelRepresentation", format!("{v}: must be 0 or 1")));
        }
    };
    Ok(PixelFormat {
        bits_allocated,
        bits_stored: stored as u16,
        signed,
    })
}

/// Checks a Modality LUT (PS3.3 C.11.1.1.2: value = stored × slope +
/// intercept): the slope is not 0, and every stored value the pixel
/// format can hold maps to a finite 32-bit float.
fn check_rescale(
    path: &Path,
    (slope, slope_tag): (f64, &'static str),
    (intercept, intercept_tag): (f64, &'static str),
    fmt: &PixelFormat,
) -> Result<()> {
    if slope == 0.0 {
        return Err(invalid(
            path,
            slope_tag,
            "0: every pixel would map to the intercept".into(),
        ));
    }
    let (lo, hi) = fmt.range();
    let (a, b) = (lo * slope + intercept, hi * slope + intercept);
    let max = f64::from(f32::MAX);
    if !(a.abs() <= max && b.abs() <= max) {
        let tag = if intercept.abs() > max {
            intercept_tag
        } else {
            slope_tag
        };
        return Err(invalid(
            path,
            tag,
            format!(
                "slope {slope:e} and intercept {intercept:e} map the stored range [{lo}, {hi}] to [{a:e}, {b:e}], beyond 32-bit floats"
            ),
        ));
    }
    Ok(())
}

/// Extracts each frame's geometry and rescale from one instance.
/// A functional group macro item: the per-frame one if present, else the
/// shared one.
fn group<'a>(
    frame: &'a InMemDicomObject,
    shared: Option<&'a InMemDicomObject>,
    seq: Tag,
) -> Option<&'a InMemDicomObject> {
    item(frame, seq).or_else(|| shared.and_then(|s| item(s, seq)))
}

fn frame_infos(file: usize, path: &Path, obj: &InMemDicomObject, fmt: &PixelFormat) -> Result<Vec<FrameInfo>> {
    let nframes = number_of_frames(path, obj)?;
    let shared = item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame = items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    if shared.is_none() && per_frame.is_none() {
        if nframes > 1 {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                reason: format!("{nframes}-frame image without functional groups (no per-frame geometry)"),
            });
        }
        const IPP: &str = "ImagePositionPatient";
        const IOP: &str = "ImageOrientationPatient";
        const PS: &str = "PixelSpacing";
        let ipp = check_position(
            path,
            fixed::<3>(path, numbers(path, obj, tags::IMAGE_POSITION_PATIENT, IPP)?, IPP)?,
            IPP,
        )?;
        let iop = check_iop(
            path,
            fixed::<6>(path, numbers(path, obj, tags::IMAGE_ORIENTATION_PATIENT, IOP)?, IOP)?,
            IOP,
        )?;
        let spacing = check_spacing(
            path,
            fixed::<2>(path, numbers(path, obj, tags::PIXEL_SPACING, PS)?, PS)?,
            PS,
        )?;
        let slope = number(path, obj, tags::RESCALE_SLOPE, "RescaleSlope")?.unwrap_or(1.0);
        let intercept = number(path, obj, tags::RESCALE_INTERCEPT, "RescaleIntercept")?.unwrap_or(0.0);
        check_rescale(path, (slope, "RescaleSlope"), (intercept, "RescaleIntercept"), fmt)?;
        return Ok(vec![FrameInfo {
            file,
            frame: None,
            ipp,
            iop,
            spacing,
            slope,
            intercept,
        }]);
    }
    // Enhanced multi-frame: per-frame groups override shared groups.
    let per_frame = per_frame.unwrap_or(&[]);
    if per_frame.len() != nframes as usize {
        return Err(invalid(
            path,
            "PerFrameFunctionalGroupsSequence",
            format!("{} items for {nframes} frames", per_frame.len()),
        ));
    }
    // The values of `tag` in the macro item `g`, if there is one.
    let in_group = |g: Option<&InMemDicomObject>, tag: Tag, name: &'static str| -> Result<Option<Vec<f64>>> {
        g.map(|g| numbers(path, g, tag, name)).transpose().map(Option::flatten)
    };
    // A rescale value: the Pixel Value Transformation macro's, else the
    // top-level attribute's, else the default.
    let rescale = |pvt: Option<&InMemDicomObject>,
                   tag: Tag,
                   names: (&'static str, &'static str),
                   default: f64|
     -> Result<(f64, &'static str)> {
        if let Some(v) = in_group(pvt, tag, names.0)?.and_then(|v| v.first().copied()) {
            return Ok((v, names.0));
        }
        Ok((number(path, obj, tag, names.1)?.unwrap_or(default), names.1))
    };
    let mut out = Vec::with_capacity(per_frame.len());
    for (n, f) in per_frame.iter().enumerate() {
        const IPP: &str = "PlanePositionSequence/ImagePositionPatient";
        const IOP: &str = "PlaneOrientationSequence/ImageOrientationPatient";
        const PS: &str = "PixelMeasuresSequence/PixelSpacing";
        let pos = in_group(
            item(f, tags::PLANE_POSITION_SEQUENCE),
            tags::IMAGE_POSITION_PATIENT,
            IPP,
        )?;
        let ipp = check_position(path, fixed::<3>(path, pos, IPP)?, IPP)?;
        let ori = in_group(
            group(f, shared, tags::PLANE_ORIENTATION_SEQUENCE),
            tags::IMAGE_ORIENTATION_PATIENT,
            IOP,
        )?;
        let iop = check_iop(path, fixed::<6>(path, ori, IOP)?, IOP)?;
        let ps = in_group(group(f, shared, tags::PIXEL_MEASURES_SEQUENCE), tags::PIXEL_SPACING, PS)?;
        let spacing = check_spacing(path, fixed::<2>(path, ps, PS)?, PS)?;
        let pvt = group(f, shared, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE);
        let slope = rescale(
            pvt,
            tags::RESCALE_SLOPE,
            ("PixelValueTransformationSequence/RescaleSlope", "RescaleSlope"),
            1.0,
        )?;
        let intercept = rescale(
            pvt,
            tags::RESCALE_INTERCEPT,
            ("PixelValueTransformationSequence/RescaleIntercept", "RescaleIntercept"),
            0.0,
        )?;
        check_rescale(path, slope, intercept, fmt)?;
        out.push(FrameInfo {
            file,
            frame: Some(n as u32),
            ipp,
            iop,
            spacing,
            slope: slope.0,
            intercept: intercept.0,
        });
    }
    Ok(out)
}

/// The files of a folder, sorted by what a series read does with them.
struct Folder {
    /// DICOM objects with pixel data.
    loaded: Vec<Loaded>,
    /// Files that are not whole: each one's error names it.
    failed: Vec<(PathBuf, Error)>,
    /// Files that are not images (a README, a DICOMDIR, a structured
    /// report), with the reason.
    skipped: Vec<SkippedFile>,
}

/// Decides what a parsed object without PixelData is: `Ok(reason)` for a
/// non-image object that may be skipped, an error for an image that lost
/// its pixels (a file cut short at an element boundary, say).
fn without_pixels(l: &Loaded) -> Result<String> {
    let o = &l.obj;
    let path = || l.path.clone();
    let media_class = l.obj.meta().media_storage_sop_class_uid.trim_end_matches(['\0', ' ']);
    if media_class == MEDIA_STORAGE_DIRECTORY || o.get(tags::DIRECTORY_RECORD_SEQUENCE).is_some() {
        return Ok("a DICOMDIR (media directory), not an image".into());
    }
    if o.get(tags::FLOAT_PIXEL_DATA).is_some() || o.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some() {
        return Err(Error::Unsupported {
            path: path(),
            reason: "floating-point pixel data (FloatPixelData / DoubleFloatPixelData)".into(),
        });
    }
    if o.get(tags::SPECTROSCOPY_DATA).is_some() {
        return Ok("MR spectroscopy data, not an image".into());
    }
    let sop_class = text(o, tags::SOP_CLASS_UID);
    let image_class = [sop_class.as_deref(), Some(media_class)]
        .into_iter()
        .flatten()
        .any(|c| IMAGE_STORAGE.contains(&c));
    let image_attribute = IMAGE_ATTRIBUTES.iter().any(|t| o.get(*t).is_some());
    if image_class || image_attribute {
        return Err(Error::MissingTag {
            path: path(),
            tag: "PixelData",
        });
    }
    // Neither an image nor identifiable: cut short before its identity.
    let Some(sop_class) = sop_class else {
        return Err(Error::MissingTag {
            path: path(),
            tag: "SOPClassUID",
        });
    };
    if text(o, tags::SERIES_INSTANCE_UID).is_none() {
        return Err(Error::MissingTag {
            path: path(),
            tag: "SeriesInstanceUID",
        });
    }
    Ok(format!(
        "a DICOM object of SOP class {sop_class} without pixel data or image attributes (not an image)"
    ))
}

/// Loads every file of a folder in parallel and sorts them out.
fn load_all(dir: &Path, limits: &Limits) -> Result<Folder> {
    let files = list_files(dir)?;
    let results: Vec<(PathBuf, Result<Option<Loaded>>)> = files
        .into_par_iter()
        .map(|p| {
            let r = load(&p, limits);
            (p, r)
        })
        .collect();
    let mut folder = Folder {
        loaded: Vec::new(),
        failed: Vec::new(),
        skipped: Vec::new(),
    };
    for (p, r) in results {
        match r {
            Ok(Some(l)) if l.obj.get(tags::PIXEL_DATA).is_some() => folder.loaded.push(l),
            Ok(Some(l)) => match without_pixels(&l) {
                Ok(reason) => {
                    tracing::info!(path = %p.display(), %reason, "skipping a DICOM object that is not an image");
                    folder.skipped.push(SkippedFile {
                        path: p,
                        reason,
                        unreadable: false,
                    });
                }
                Err(e) => folder.failed.push((p, e)),
            },
            Ok(None) => {
                tracing::info!(path = %p.display(), "skipping a non-DICOM file");
                folder.skipped.push(SkippedFile {
                    path: p,
                    reason: "not a DICOM file (no DICM magic at byte 128)".into(),
                    unreadable: false,
                });
            }
            Err(e) => folder.failed.push((p, e)),
        }
    }
    Ok(folder)
}

fn summaries(loaded: &[Loaded]) -> Vec<SeriesSummary> {
    let mut map: BTreeMap<String, SeriesSummary> = BTreeMap::new();
    for l in loaded {
        let uid = text(&l.obj, tags::SERIES_INSTANCE_UID).unwrap_or_default();
        let e = map.entry(uid.clone()).or_insert_with(|| SeriesSummary {
            uid,
            modality: text(&l.obj, tags::MODALITY).unwrap_or_default(),
            description: text(&l.obj, tags::SERIES_DESCRIPTION).unwrap_or_default(),
            files: 0,
        });
        e.files += 1;
    }
    map.into_values().collect()
}

pub(crate) fn list_series(dir: &Path, limits: &Limits) -> Result<Vec<SeriesSummary>> {
    let folder = load_all(dir, limits)?;
    for (_, e) in &folder.failed {
        tracing::warn!(error = %e, "unreadable DICOM file");
    }
    Ok(summaries(&folder.loaded))
}

pub(crate) fn read_series(dir: &Path, opts: &ReadOptions) -> Result<DicomSeries> {
    let Folder {
        mut loaded,
        failed,
        mut skipped,
    } = load_all(dir, &opts.limits)?;
    if !failed.is_empty() {
        if !opts.skip_unreadable {
            let count = failed.len();
            let mut failed = failed.into_iter();
            let first = match failed.next() {
                Some((_, e)) => Box::new(e),
                None => Box::new(Error::NoDicom {
                    dir: dir.to_path_buf(),
                    skipped: skipped.len(),
                }),
            };
            return Err(Error::UnreadableFiles {
                dir: dir.to_path_buf(),
                count,
                first,
            });
        }
        tracing::warn!(dir = %dir.display(), count = failed.len(), "skipping unreadable files (ReadOptions::skip_unreadable)");
        for (path, e) in failed {
            tracing::warn!(error = %e, "skipping an unreadable file");
            skipped.push(SkippedFile {
                path,
                reason: e.to_string(),
                unreadable: true,
            });
        }
    }
    if loaded.is_empty() {
        return Err(Error::NoDicom {
            dir: dir.to_path_buf(),
            skipped: skipped.len(),
        });
    }
    let series = summaries(&loaded);
    let uid = match &opts.series_uid {
        Some(u) => {
            if !series.iter().any(|s| &s.uid == u) {
                return Err(Error::SeriesNotFound {
                    dir: dir.to_path_buf(),
                    uid: u.clone(),
                });
            }
            u.clone()
        }
        None if series.len() > 1 => {
            return Err(Error::MultipleSeries {
                dir: dir.to_path_buf(),
                series,
            });
        }
        None => series.first().map(|s| s.uid.clone()).unwrap_or_default(),
    };
    loaded.retain(|l| text(&l.obj, tags::SERIES_INSTANCE_UID).unwrap_or_default() == uid);
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    build(uid, loaded, skipped, opts)
}

/// Builds the volume from the files of one series, in six steps: the
/// frames' sizes and pixel formats, their orientation and in-plane spacing,
/// the slice order along the normal, the step between slices, the affine,
/// and the pixels.
fn build(
    series_uid: String,
    loaded: Vec<Loaded>,
    skipped: Vec<SkippedFile>,
    opts: &ReadOptions,
) -> Result<DicomSeries> {
    let stack = Stack::new(&series_uid, &loaded, opts)?;
    stack.check_in_plane()?;
    let order = stack.slice_order();
    let step = stack.slice_step(&order, opts)?;
    let affine = stack.affine(&order, step)?;
    let data = stack.pixels(&order.order)?;
    let entries = stack.slice_entries(&order.order);
    let meta = stack.meta(skipped)?;
    let volume = Volume::new(data, affine)?;
    tracing::debug!(series = %series_uid, size = ?volume.size(), spacing = ?volume.spacing(), "read series");
    Ok(DicomSeries {
        volume,
        meta,
        slices: SliceIndex::new(entries),
    })
}

/// The frames of one series, checked to share one size and pixel layout.
struct Stack<'a> {
    series_uid: &'a str,
    loaded: &'a [Loaded],
    rows: u32,
    cols: u32,
    /// Every frame of every file, in file order.
    frames: Vec<FrameInfo>,
    /// Pixel format of each file.
    formats: Vec<PixelFormat>,
    /// Number of frames of each file.
    nframes: Vec<u32>,
}

/// The frames sorted along the slice normal.
struct SliceOrder {
    /// Unit normal of the slices (LPS).
    normal: [f64; 3],
    /// Each frame's position projected on the normal (mm).
    proj: Vec<f64>,
    /// Frame indices from the lowest projection to the highest: slice k
    /// is frame `order[k]`.
    order: Vec<usize>,
}

impl<'a> Stack<'a> {
    /// Step 1: sizes, pixel formats and rescales must be valid and agree
    /// before anything is decoded, and the volume must fit the limits.
    fn new(series_uid: &'a str, loaded: &'a [Loaded], opts: &ReadOptions) -> Result<Self> {
        let first = loaded.first().ok_or_else(|| Error::InvalidVolume {
            reason: format!("series {series_uid} has no image"),
        })?;
        let (rows, cols) = dims(&first.path, &first.obj)?;
        let mut frames = Vec::new();
        let mut formats = Vec::with_capacity(loaded.len());
        let mut nframes = Vec::with_capacity(loaded.len());
        for (n, l) in loaded.iter().enumerate() {
            let d = dims(&l.path, &l.obj)?;
            if d != (rows, cols) {
                return Err(Error::MixedSize {
                    series_uid: series_uid.to_owned(),
                    path: l.path.clone(),
                    expected: format!("{rows}x{cols}"),
                    found: format!("{}x{}", d.0, d.1),
                });
            }
            let spp = integer(&l.path, &l.obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1);
            if spp != 1 {
                return Err(Error::Unsupported {
                    path: l.path.clone(),
                    reason: format!("{spp} samples per pixel (colour images are not volumes)"),
                });
            }
            let fmt = pixel_format(&l.path, &l.obj)?;
            frames.extend(frame_infos(n, &l.path, &l.obj, &fmt)?);
            formats.push(fmt);
            nframes.push(number_of_frames(&l.path, &l.obj)?);
        }
        let nk = frames.len() as u64;
        opts.limits
            .check_volume(&first.path, u64::from(rows) * u64::from(cols) * nk, 4)?;
        Ok(Self {
            series_uid,
            loaded,
            rows,
            cols,
            frames,
            formats,
            nframes,
        })
    }

    /// The file that holds frame `n`.
    fn path_of(&self, n: usize) -> PathBuf {
        self.loaded[self.frames[n].file].path.clone()
    }

    /// Step 2: orientation and in-plane spacing must agree.
    fn check_in_plane(&self) -> Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        let iop0 = self.frames[0].iop;
        let sp0 = self.frames[0].spacing;
        for f in &self.frames {
            if f.iop.iter().zip(iop0.iter()).any(|(a, b)| (a - b).abs() > 1e-4) {
                return Err(Error::MixedOrientation {
                    series_uid: self.series_uid.to_owned(),
                    path: self.loaded[f.file].path.clone(),
                    expected: Box::new(iop0),
                    found: Box::new(f.iop),
                });
            }
            if f.spacing
                .iter()
                .zip(sp0.iter())
                .any(|(a, b)| (a - b).abs() > 1e-4 * b.max(1.0))
            {
                return Err(Error::MixedSize {
                    series_uid: self.series_uid.to_owned(),
                    path: self.loaded[f.file].path.clone(),
                    expected: format!("{rows}x{cols} @ {sp0:?} mm"),
                    found: format!("{rows}x{cols} @ {:?} mm", f.spacing),
                });
            }
        }
        Ok(())
    }

    /// The row and column directions (LPS) shared by every frame.
    fn directions(&self) -> ([f64; 3], [f64; 3]) {
        let iop0 = self.frames[0].iop;
        ([iop0[0], iop0[1], iop0[2]], [iop0[3], iop0[4], iop0[5]])
    }

    /// Step 3: the frames sorted by their position along the slice normal.
    fn slice_order(&self) -> SliceOrder {
        let (row_dir, col_dir) = self.directions();
        // stored cosines are rounded: use the unit normal
        let normal = {
            let n = cross(row_dir, col_dir);
            let len = dot(n, n).sqrt();
            n.map(|v| v / len)
        };
        let proj: Vec<f64> = self.frames.iter().map(|f| dot(f.ipp, normal)).collect();
        let mut order: Vec<usize> = (0..self.frames.len()).collect();
        order.sort_by(|&a, &b| proj[a].total_cmp(&proj[b]));
        SliceOrder { normal, proj, order }
    }

    /// Step 4: the step from one slice to the next (LPS, mm). Several
    /// slices must be distinct, evenly spaced within the tolerance and not
    /// tilted beyond `max_tilt_deg`; a single slice takes its thickness.
    fn slice_step(&self, o: &SliceOrder, opts: &ReadOptions) -> Result<[f64; 3]> {
        let SliceOrder { normal, proj, order } = o;
        if order.len() <= 1 {
            return self.single_slice_step(*normal);
        }
        let gaps: Vec<f64> = order.windows(2).map(|w| proj[w[1]] - proj[w[0]]).collect();
        if let Some(w) = order.windows(2).find(|w| proj[w[1]] - proj[w[0]] < 1e-3) {
            return Err(Error::DuplicatePosition {
                series_uid: self.series_uid.to_owned(),
                position_mm: proj[w[0]],
                first: self.path_of(w[0]),
                second: self.path_of(w[1]),
            });
        }
        let mut sorted = gaps.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let tol = (opts.spacing_tolerance * median).max(0.005);
        let (worst, dev) = gaps
            .iter()
            .enumerate()
            .map(|(n, g)| (n, (g - median).abs()))
            .fold((0, 0.0), |acc, x| if x.1 > acc.1 { x } else { acc });
        if dev > tol {
            return Err(Error::NonUniformSpacing {
                series_uid: self.series_uid.to_owned(),
                largest_gap_mm: gaps[worst],
                median_gap_mm: median,
                tolerance_mm: tol,
                between: (self.path_of(order[worst]), self.path_of(order[worst + 1])),
            });
        }
        let (a, b) = (&self.frames[order[0]].ipp, &self.frames[order[order.len() - 1]].ipp);
        let n = (order.len() - 1) as f64;
        let s = [(b[0] - a[0]) / n, (b[1] - a[1]) / n, (b[2] - a[2]) / n];
        let cosang = dot(s, *normal) / dot(s, s).sqrt();
        let angle = cosang.clamp(-1.0, 1.0).acos().to_degrees();
        if angle > opts.max_tilt_deg {
            return Err(Error::GantryTilt {
                series_uid: self.series_uid.to_owned(),
                angle_deg: angle,
            });
        }
        // As dcm2niix and ITK: the unit normal times the mean gap, so that
        // rounding in the stored positions does not tilt the k axis.
        let gap = (proj[order[order.len() - 1]] - proj[order[0]]) / n;
        Ok(normal.map(|v| v * gap))
    }

    /// The step of a one-slice series: the normal times
    /// SpacingBetweenSlices, else SliceThickness, else 1 mm.
    fn single_slice_step(&self, normal: [f64; 3]) -> Result<[f64; 3]> {
        let l = &self.loaded[self.frames[0].file];
        let usable = |v: Option<f64>| v.filter(|v| *v > 0.0 && *v <= MAX_MM);
        let thick = match usable(number(
            &l.path,
            &l.obj,
            tags::SPACING_BETWEEN_SLICES,
            "SpacingBetweenSlices",
        )?) {
            Some(t) => t,
            None => usable(number(&l.path, &l.obj, tags::SLICE_THICKNESS, "SliceThickness")?).unwrap_or(1.0),
        };
        Ok([normal[0] * thick, normal[1] * thick, normal[2] * thick])
    }

    /// Step 5: the affine, from the first slice's position, the in-plane
    /// directions and spacing, and the slice step.
    fn affine(&self, o: &SliceOrder, step: [f64; 3]) -> Result<Affine> {
        let (row_dir, col_dir) = self.directions();
        let sp0 = self.frames[0].spacing;
        let ipp0 = self.frames[o.order[0]].ipp;
        let lps: [[f64; 4]; 4] = [
            [row_dir[0] * sp0[1], col_dir[0] * sp0[0], step[0], ipp0[0]],
            [row_dir[1] * sp0[1], col_dir[1] * sp0[0], step[1], ipp0[1]],
            [row_dir[2] * sp0[1], col_dir[2] * sp0[0], step[2], ipp0[2]],
            [0.0, 0.0, 0.0, 1.0],
        ];
        // The inputs are bounded (MAX_MM), so this cannot fail on a header
        // that passed the checks above; it is asserted all the same, naming
        // the file, so that no volume ever carries a non-finite affine.
        const GEOMETRY: &str = "ImagePositionPatient/ImageOrientationPatient/PixelSpacing";
        if lps.iter().flatten().any(|v| !v.is_finite()) {
            return Err(invalid(
                &self.path_of(o.order[0]),
                GEOMETRY,
                format!("the slice geometry gives a non-finite affine {lps:?}"),
            ));
        }
        Affine::from_lps_matrix(lps).map_err(|e| invalid(&self.path_of(o.order[0]), GEOMETRY, e.to_string()))
    }

    /// Step 6: the pixels, slice `k` from frame `order[k]`, rescaled.
    /// Native samples are borrowed from the parsed objects and converted
    /// straight into the volume; compressed ones are decoded per file
    /// first. Both in parallel.
    fn pixels(&self, order: &[usize]) -> Result<Array3<f32>> {
        let (rows, cols) = (self.rows, self.cols);
        let plane = rows as usize * cols as usize;
        let sources: Vec<Samples<'_>> = self
            .loaded
            .par_iter()
            .zip(self.formats.par_iter().zip(self.nframes.par_iter()))
            .map(|(l, (fmt, &nf))| samples(&l.path, &l.obj, rows, cols, nf, fmt))
            .collect::<Result<_>>()?;
        let mut data = Array3::<f32>::zeros((order.len(), rows as usize, cols as usize));
        let out = data.as_slice_mut().ok_or_else(|| Error::InvalidVolume {
            reason: "volume not contiguous".into(),
        })?;
        // Each slice reports its non-finite values (none, once the rescale
        // has been checked against the stored range; this is the last line
        // of defence).
        let bad: Vec<(usize, usize, usize)> = out
            .par_chunks_mut(plane)
            .zip(order.par_iter())
            .enumerate()
            .filter_map(|(k, (dst, &n))| {
                let f = &self.frames[n];
                let fi = f.frame.unwrap_or(0) as usize;
                sources[f.file].convert(fi * plane, dst, f.slope, f.intercept);
                let at = dst.iter().position(|v| !v.is_finite())?;
                let count = dst.iter().skip(at).filter(|v| !v.is_finite()).count();
                Some((k, at, count))
            })
            .collect();
        if let Some(&(k, at, _)) = bad.first() {
            let count = bad.iter().map(|b| b.2 as u64).sum();
            return Err(Error::NonFiniteVoxels {
                path: self.path_of(order[k]),
                count,
                first: VoxelIndex::new(at % cols as usize, at / cols as usize, k),
            });
        }
        Ok(data)
    }

    /// Where each slice `k` of the volume came from.
    fn slice_entries(&self, order: &[usize]) -> Vec<SliceEntry> {
        order
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                let f = &self.frames[n];
                let l = &self.loaded[f.file];
                SliceEntry {
                    sop_uid: text(&l.obj, tags::SOP_INSTANCE_UID).unwrap_or_default(),
                    frame: f.frame,
                    k,
                    path: l.path.clone(),
                    position_lps: f.ipp,
                    orientation_lps: f.iop,
                    pixel_spacing: f.spacing,
                }
            })
            .collect()
    }

    /// The series' identity and acquisition tags, from its first file.
    fn meta(&self, skipped: Vec<SkippedFile>) -> Result<SeriesMeta> {
        let first = &self.loaded[0];
        let o = &first.obj;
        let mut ts: Vec<String> = self.loaded.iter().map(|l| l.ts_uid.clone()).collect();
        ts.sort();
        ts.dedup();
        Ok(SeriesMeta {
            series_uid: self.series_uid.to_owned(),
            study_uid: text(o, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
            frame_of_reference_uid: text(o, tags::FRAME_OF_REFERENCE_UID).unwrap_or_default(),
            sop_class_uid: text(o, tags::SOP_CLASS_UID).unwrap_or_default(),
            modality: text(o, tags::MODALITY).unwrap_or_default(),
            manufacturer: text(o, tags::MANUFACTURER).unwrap_or_default(),
            series_description: text(o, tags::SERIES_DESCRIPTION).unwrap_or_default(),
            patient_id: text(o, tags::PATIENT_ID).unwrap_or_default(),
            transfer_syntaxes: ts,
            rows: self.rows,
            columns: self.cols,
            bits_stored: self.formats.first().map_or(16, |f| f.bits_stored),
            signed: self.formats.first().is_some_and(|f| f.signed),
            slice_thickness: number(&first.path, o, tags::SLICE_THICKNESS, "SliceThickness")?,
            files: self.loaded.len(),
            multiframe: self.frames.iter().any(|f| f.frame.is_some()),
            skipped,
        })
    }
}

/// The stored samples of one instance: borrowed native samples with the
/// bit layout needed to interpret them, or values decoded by a codec.
enum Samples<'a> {
    /// 16-bit native samples: (samples, bits stored, signed).
    U16(&'a [u16], u16, bool),
    /// 8-bit native samples: (samples, bits stored, signed).
    U8(&'a [u8], u16, bool),
    /// Decoded by dicom-pixeldata (already sign-extended).
    Decoded(Vec<f32>),
}

/// Sign-extends or masks a sample to its BitsStored.
#[inline]
fn stored_value(raw: u32, bits: u16, signed: bool) -> i64 {
    let bits = u32::from(bits.clamp(1, 32));
    let mask = if bits >= 32 { u32::MAX } else { (1u32 << bits) - 1 };
    let v = raw & mask;
    if signed && (v >> (bits - 1)) & 1 == 1 {
        i64::from(v) - (1i64 << bits)
    } else {
        i64::from(v)
    }
}

impl Samples<'_> {
    /// Converts one frame starting at sample `start` into `dst`, applying
    /// the rescale. The caller has checked the length.
    fn convert(&self, start: usize, dst: &mut [f32], slope: f64, intercept: f64) {
        let end = start + dst.len();
        match self {
            Samples::U16(v, bits, signed) => {
                for (d, s) in dst.iter_mut().zip(&v[start..end]) {
                    *d = (stored_value(u32::from(*s), *bits, *signed) as f64 * slope + intercept) as f32;
                }
            }
            Samples::U8(v, bits, signed) => {
                for (d, s) in dst.iter_mut().zip(&v[start..end]) {
                    *d = (stored_value(u32::from(*s), *bits, *signed) as f64 * slope + intercept) as f32;
                }
            }
            Samples::Decoded(v) => {
                for (d, s) in dst.iter_mut().zip(&v[start..end]) {
                    *d = (f64::from(*s) * slope + intercept) as f32;
                }
            }
        }
    }
}

/// The stored samples of an instance, checked to hold exactly `nframes`
/// frames of `rows` × `cols` (native 8-bit data may carry the one pad
/// byte of an odd length).
fn samples<'a>(
    path: &Path,
    obj: &'a DefaultDicomObject,
    rows: u32,
    cols: u32,
    nframes: u32,
    fmt: &PixelFormat,
) -> Result<Samples<'a>> {
    use dicom::core::value::{PrimitiveValue, Value};
    let (bits, signed) = (fmt.bits_stored, fmt.signed);
    let mono = text(obj, tags::PHOTOMETRIC_INTERPRETATION).is_none_or(|p| p.starts_with("MONOCHROME"));
    let native = match obj.get(tags::PIXEL_DATA).map(|e| e.value()) {
        Some(Value::Primitive(PrimitiveValue::U16(v))) if fmt.bits_allocated == 16 && mono => {
            Some((Samples::U16(v.as_slice(), bits, signed), v.len(), 2))
        }
        Some(Value::Primitive(PrimitiveValue::U8(v))) if fmt.bits_allocated == 8 && mono => {
            Some((Samples::U8(v.as_slice(), bits, signed), v.len(), 1))
        }
        _ => None,
    };
    match native {
        Some((s, len, bytes)) => {
            check_pixel_bytes(path, len * bytes, bytes, (rows, cols, nframes))?;
            Ok(s)
        }
        None => decode_stored(path, obj, rows, cols, nframes).map(Samples::Decoded),
    }
}

/// Requires `found` bytes of pixel data to be exactly rows × columns ×
/// frames × `bytes` per sample, or one more when that is odd (the pad
/// byte of an odd-length value). Fewer is [`Error::TruncatedPixelData`];
/// more means that Rows, Columns or NumberOfFrames understate the image
/// ([`Error::InvalidTag`] on PixelData).
fn check_pixel_bytes(path: &Path, found: usize, bytes: usize, (rows, cols, nframes): (u32, u32, u32)) -> Result<()> {
    let need = rows as usize * cols as usize * nframes as usize * bytes;
    if found == need || (need % 2 == 1 && found == need + 1) {
        return Ok(());
    }
    if found < need {
        return Err(Error::TruncatedPixelData {
            path: path.to_path_buf(),
            expected: need as u64,
            found: found as u64,
        });
    }
    Err(invalid(
        path,
        "PixelData",
        format!(
            "it holds {found} bytes, but Rows × Columns × NumberOfFrames × bytes per sample = {rows} × {cols} × {nframes} × {bytes} = {need}"
        ),
    ))
}

/// Decodes all frames of an instance to stored values (no rescale).
fn decode_stored(path: &Path, obj: &DefaultDicomObject, rows: u32, cols: u32, nframes: u32) -> Result<Vec<f32>> {
    let expected = u64::from(rows) * u64::from(cols) * u64::from(nframes);
    let invalid = |reason: String| Error::InvalidTag {
        path: path.to_path_buf(),
        tag: "PixelData",
        reason,
    };
    // Native data: its length must match the header before the decoder,
    // which reads only the samples the header asks for, sees it.
    if let Some(dicom::core::value::Value::Primitive(v)) = obj.get(tags::PIXEL_DATA).map(|e| e.value()) {
        let alloc = integer(path, obj, tags::BITS_ALLOCATED, "BitsAllocated")?.unwrap_or(16);
        let bytes = usize::try_from(alloc.max(8) / 8).unwrap_or(2);
        check_pixel_bytes(path, v.calculate_byte_len(), bytes, (rows, cols, nframes))?;
    }
    let frags = obj.get(tags::PIXEL_DATA).and_then(|e| e.fragments()).unwrap_or(&[]);
    super::codestream::check_fragments(frags, rows as usize, cols as usize).map_err(invalid)?;
    if obj.meta().transfer_syntax().trim_end_matches('\0') == super::rle::RLE_LOSSLESS {
        if frags.len() < nframes as usize {
            return Err(invalid(format!("{} RLE fragments for {nframes} frames", frags.len())));
        }
        let bytes = integer(path, obj, tags::BITS_ALLOCATED, "BitsAllocated")?
            .unwrap_or(16)
            .clamp(8, 64) as usize
            / 8;
        for f in frags.iter().take(nframes as usize) {
            super::rle::check_fragment(f, bytes, rows as usize * cols as usize).map_err(invalid)?;
        }
    }
    // Last line of defence: a codec that panics on a corrupt stream (an
    // upstream bug) becomes a typed error for this file instead of taking
    // the caller down. The panic message still reaches the panic hook.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| obj.decode_pixel_data()))
        .map_err(|_| invalid("the pixel data decoder panicked on this stream".into()))?
        .map_err(|e| Error::PixelDecode {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
    let opts = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
    let mut v: Vec<f32> = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoded.to_vec_with_options(&opts)))
        .map_err(|_| invalid("the pixel data converter panicked on this stream".into()))?
        .map_err(|e| Error::PixelDecode {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
    let bytes = usize::from(decoded.bits_allocated().div_ceil(8));
    let need = expected as usize;
    if v.len() != need {
        check_pixel_bytes(path, v.len() * bytes, bytes, (rows, cols, nframes))?;
    }
    v.truncate(need);
    Ok(v)
}

/// Decodes the stored pixel values of one DICOM file (no rescale, no
/// geometry), as `[frame, row, column]`. Useful to compare a compressed
/// file with its uncompressed twin.
///
/// # Errors
/// [`Error::EmptyFile`], [`Error::NotDicom`], parse and decode errors,
/// [`Error::MissingTag`] / [`Error::InvalidTag`] for the pixel attributes,
/// [`Error::LimitExceeded`].
pub fn read_stored_frames(path: impl AsRef<Path>, limits: &Limits) -> Result<Array3<f32>> {
    let path = path.as_ref();
    let l = load(path, limits)?.ok_or_else(|| Error::NotDicom {
        path: path.to_path_buf(),
    })?;
    let (rows, cols) = dims(path, &l.obj)?;
    let spp = integer(path, &l.obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1);
    if spp != 1 {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            reason: format!("{spp} samples per pixel"),
        });
    }
    pixel_format(path, &l.obj)?;
    let nf = number_of_frames(path, &l.obj)?;
    let n = u64::from(rows) * u64::from(cols) * u64::from(nf);
    limits.check_volume(path, n, 4)?;
    let mut v = decode_stored(path, &l.obj, rows, cols, nf)?;
    v.truncate(n as usize);
    Array3::from_shape_vec((nf as usize, rows as usize, cols as usize), v)
        .map_err(|e| Error::InvalidVolume { reason: e.to_string() })
}

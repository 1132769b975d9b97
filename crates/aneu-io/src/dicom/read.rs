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

use super::{DicomSeries, ReadOptions, SeriesMeta, SeriesSummary, SliceEntry, SliceIndex, guard};
use crate::geometry::Affine;
use crate::volume::Volume;
use crate::{Error, Limits, Result};

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
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let p = entry.path();
            let ft = entry.file_type().map_err(|e| Error::io(&p, e))?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() || ft.is_symlink() {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads and parses one file. `Ok(None)` if it is not DICOM.
pub(crate) fn load(path: &Path, limits: &Limits) -> Result<Option<Loaded>> {
    let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    limits.check_file(path, size)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if !guard::has_magic(&bytes) {
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

/// Decimal strings (DS, IS), also when the element arrived as UN.
fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let v = match un_bytes(obj, tag) {
        Some(b) => String::from_utf8_lossy(&b)
            .split('\\')
            .map(|p| p.trim_matches(|c: char| c == '\0' || c.is_whitespace()).parse::<f64>())
            .collect::<Result<Vec<f64>, _>>()
            .ok()?,
        None => obj.get(tag)?.to_multi_float64().ok()?,
    };
    (!v.is_empty() && v.iter().all(|x| x.is_finite())).then_some(v)
}

/// Integers (US, UL, IS), also when the element arrived as UN: a 2- or
/// 4-byte binary value, or decimal text.
fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    match un_bytes(obj, tag) {
        Some(b) if b.len() == 2 => Some(i64::from(u16::from_le_bytes([b[0], b[1]]))),
        Some(b) if b.len() == 4 && !b.iter().all(|c| c.is_ascii_digit() || *c == b' ') => {
            Some(i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        }
        Some(b) => trimmed(&String::from_utf8_lossy(&b))?.parse().ok(),
        None => obj.get(tag)?.to_int::<i64>().ok(),
    }
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
        .ok_or_else(|| Error::InvalidTag {
            path: path.to_path_buf(),
            tag,
            reason: format!("{} values, {N} expected", v.len()),
        })
}

fn check_iop(path: &Path, iop: [f64; 6]) -> Result<[f64; 6]> {
    let r = [iop[0], iop[1], iop[2]];
    let c = [iop[3], iop[4], iop[5]];
    let nr = dot(r, r).sqrt();
    let nc = dot(c, c).sqrt();
    if (nr - 1.0).abs() > 1e-2 || (nc - 1.0).abs() > 1e-2 || (dot(r, c) / (nr * nc)).abs() > 1e-2 {
        return Err(Error::InvalidTag {
            path: path.to_path_buf(),
            tag: "ImageOrientationPatient",
            reason: format!("{iop:?} is not two orthogonal unit vectors"),
        });
    }
    Ok(iop)
}

fn check_spacing(path: &Path, s: [f64; 2]) -> Result<[f64; 2]> {
    if s.iter().any(|v| v.is_nan() || *v <= 0.0 || !v.is_finite()) {
        return Err(Error::InvalidTag {
            path: path.to_path_buf(),
            tag: "PixelSpacing",
            reason: format!("{s:?} is not positive"),
        });
    }
    Ok(s)
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

fn number_of_frames(obj: &InMemDicomObject) -> u32 {
    int(obj, tags::NUMBER_OF_FRAMES)
        .filter(|n| *n > 0)
        .map_or(1, |n| n as u32)
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

fn frame_infos(file: usize, path: &Path, obj: &InMemDicomObject) -> Result<Vec<FrameInfo>> {
    let nframes = number_of_frames(obj);
    let shared = item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame = items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    if shared.is_none() && per_frame.is_none() {
        if nframes > 1 {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                reason: format!("{nframes}-frame image without functional groups (no per-frame geometry)"),
            });
        }
        let ipp = fixed::<3>(path, floats(obj, tags::IMAGE_POSITION_PATIENT), "ImagePositionPatient")?;
        let iop = check_iop(
            path,
            fixed::<6>(
                path,
                floats(obj, tags::IMAGE_ORIENTATION_PATIENT),
                "ImageOrientationPatient",
            )?,
        )?;
        let spacing = check_spacing(
            path,
            fixed::<2>(path, floats(obj, tags::PIXEL_SPACING), "PixelSpacing")?,
        )?;
        let slope = floats(obj, tags::RESCALE_SLOPE).map_or(1.0, |v| v[0]);
        let intercept = floats(obj, tags::RESCALE_INTERCEPT).map_or(0.0, |v| v[0]);
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
        return Err(Error::InvalidTag {
            path: path.to_path_buf(),
            tag: "PerFrameFunctionalGroupsSequence",
            reason: format!("{} items for {nframes} frames", per_frame.len()),
        });
    }
    let mut out = Vec::with_capacity(per_frame.len());
    for (n, f) in per_frame.iter().enumerate() {
        let pos = item(f, tags::PLANE_POSITION_SEQUENCE).and_then(|g| floats(g, tags::IMAGE_POSITION_PATIENT));
        let ipp = fixed::<3>(path, pos, "PlanePositionSequence/ImagePositionPatient")?;
        let ori =
            group(f, shared, tags::PLANE_ORIENTATION_SEQUENCE).and_then(|g| floats(g, tags::IMAGE_ORIENTATION_PATIENT));
        let iop = check_iop(
            path,
            fixed::<6>(path, ori, "PlaneOrientationSequence/ImageOrientationPatient")?,
        )?;
        let ps = group(f, shared, tags::PIXEL_MEASURES_SEQUENCE).and_then(|g| floats(g, tags::PIXEL_SPACING));
        let spacing = check_spacing(path, fixed::<2>(path, ps, "PixelMeasuresSequence/PixelSpacing")?)?;
        let pvt = group(f, shared, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE);
        let slope = pvt
            .and_then(|g| floats(g, tags::RESCALE_SLOPE))
            .or_else(|| floats(obj, tags::RESCALE_SLOPE))
            .map_or(1.0, |v| v[0]);
        let intercept = pvt
            .and_then(|g| floats(g, tags::RESCALE_INTERCEPT))
            .or_else(|| floats(obj, tags::RESCALE_INTERCEPT))
            .map_or(0.0, |v| v[0]);
        out.push(FrameInfo {
            file,
            frame: Some(n as u32),
            ipp,
            iop,
            spacing,
            slope,
            intercept,
        });
    }
    Ok(out)
}

/// Loads every file of a folder in parallel. Returns the DICOM files,
/// the failures, and the number of non-DICOM files skipped.
fn load_all(dir: &Path, limits: &Limits) -> Result<(Vec<Loaded>, Vec<Error>, usize)> {
    let files = list_files(dir)?;
    let results: Vec<(PathBuf, Result<Option<Loaded>>)> = files
        .into_par_iter()
        .map(|p| {
            let r = load(&p, limits);
            (p, r)
        })
        .collect();
    let mut loaded = Vec::new();
    let mut failed = Vec::new();
    let mut skipped = 0;
    for (p, r) in results {
        match r {
            Ok(Some(l)) => {
                if l.obj.get(tags::PIXEL_DATA).is_some() {
                    loaded.push(l);
                } else if text(&l.obj, tags::SERIES_INSTANCE_UID).is_none()
                    || text(&l.obj, tags::SOP_CLASS_UID).is_none()
                {
                    // Not even identifiable: a file cut short at an element boundary, say.
                    failed.push(Error::MissingTag {
                        path: l.path,
                        tag: "PixelData",
                    });
                } else {
                    tracing::info!(path = %p.display(), "skipping DICOM object without pixel data");
                    skipped += 1;
                }
            }
            Ok(None) => {
                tracing::info!(path = %p.display(), "skipping non-DICOM file");
                skipped += 1;
            }
            Err(e) => failed.push(e),
        }
    }
    Ok((loaded, failed, skipped))
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
    let (loaded, failed, _) = load_all(dir, limits)?;
    for e in &failed {
        tracing::warn!(error = %e, "unreadable DICOM file");
    }
    Ok(summaries(&loaded))
}

pub(crate) fn read_series(dir: &Path, opts: &ReadOptions) -> Result<DicomSeries> {
    let (mut loaded, failed, skipped) = load_all(dir, &opts.limits)?;
    if let Some(first) = failed.first() {
        if !opts.skip_unreadable {
            let count = failed.len();
            let first = failed.into_iter().next().map(Box::new).unwrap_or_else(|| {
                Box::new(Error::NoDicom {
                    dir: dir.to_path_buf(),
                    skipped,
                })
            });
            return Err(Error::UnreadableFiles {
                dir: dir.to_path_buf(),
                count,
                first,
            });
        }
        tracing::warn!(count = failed.len(), first = %first, "skipping unreadable DICOM files");
    }
    if loaded.is_empty() {
        return Err(Error::NoDicom {
            dir: dir.to_path_buf(),
            skipped,
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
    build(uid, loaded, opts)
}

/// Builds the volume from the files of one series.
fn build(series_uid: String, loaded: Vec<Loaded>, opts: &ReadOptions) -> Result<DicomSeries> {
    // Sizes must agree before anything is decoded.
    let first = &loaded[0];
    let dims = |l: &Loaded| -> Result<(u32, u32)> {
        let r = int(&l.obj, tags::ROWS).filter(|v| *v > 0);
        let c = int(&l.obj, tags::COLUMNS).filter(|v| *v > 0);
        match (r, c) {
            (Some(r), Some(c)) => Ok((r as u32, c as u32)),
            (None, _) => Err(Error::MissingTag {
                path: l.path.clone(),
                tag: "Rows",
            }),
            (_, None) => Err(Error::MissingTag {
                path: l.path.clone(),
                tag: "Columns",
            }),
        }
    };
    let (rows, cols) = dims(first)?;
    let mut frames = Vec::new();
    for (n, l) in loaded.iter().enumerate() {
        let d = dims(l)?;
        if d != (rows, cols) {
            return Err(Error::MixedSize {
                series_uid,
                path: l.path.clone(),
                expected: format!("{rows}x{cols}"),
                found: format!("{}x{}", d.0, d.1),
            });
        }
        let spp = int(&l.obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
        if spp != 1 {
            return Err(Error::Unsupported {
                path: l.path.clone(),
                reason: format!("{spp} samples per pixel (colour images are not volumes)"),
            });
        }
        frames.extend(frame_infos(n, &l.path, &l.obj)?);
    }
    let nk = frames.len() as u64;
    opts.limits
        .check_volume(&first.path, u64::from(rows) * u64::from(cols) * nk, 4)?;

    // Orientation and in-plane spacing must agree.
    let iop0 = frames[0].iop;
    let sp0 = frames[0].spacing;
    for f in &frames {
        if f.iop.iter().zip(iop0.iter()).any(|(a, b)| (a - b).abs() > 1e-4) {
            return Err(Error::MixedOrientation {
                series_uid,
                path: loaded[f.file].path.clone(),
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
                series_uid,
                path: loaded[f.file].path.clone(),
                expected: format!("{rows}x{cols} @ {sp0:?} mm"),
                found: format!("{rows}x{cols} @ {:?} mm", f.spacing),
            });
        }
    }
    let row_dir = [iop0[0], iop0[1], iop0[2]];
    let col_dir = [iop0[3], iop0[4], iop0[5]];
    // stored cosines are rounded: use the unit normal
    let normal = {
        let n = cross(row_dir, col_dir);
        let len = dot(n, n).sqrt();
        n.map(|v| v / len)
    };
    let proj: Vec<f64> = frames.iter().map(|f| dot(f.ipp, normal)).collect();
    let mut order: Vec<usize> = (0..frames.len()).collect();
    order.sort_by(|&a, &b| proj[a].total_cmp(&proj[b]));
    let path_of = |n: usize| loaded[frames[n].file].path.clone();

    let step: [f64; 3] = if order.len() > 1 {
        let gaps: Vec<f64> = order.windows(2).map(|w| proj[w[1]] - proj[w[0]]).collect();
        if let Some(w) = order.windows(2).find(|w| proj[w[1]] - proj[w[0]] < 1e-3) {
            return Err(Error::DuplicatePosition {
                series_uid,
                position_mm: proj[w[0]],
                first: path_of(w[0]),
                second: path_of(w[1]),
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
                series_uid,
                largest_gap_mm: gaps[worst],
                median_gap_mm: median,
                tolerance_mm: tol,
                between: (path_of(order[worst]), path_of(order[worst + 1])),
            });
        }
        let (a, b) = (&frames[order[0]].ipp, &frames[order[order.len() - 1]].ipp);
        let n = (order.len() - 1) as f64;
        let s = [(b[0] - a[0]) / n, (b[1] - a[1]) / n, (b[2] - a[2]) / n];
        let cosang = dot(s, normal) / dot(s, s).sqrt();
        let angle = cosang.clamp(-1.0, 1.0).acos().to_degrees();
        if angle > opts.max_tilt_deg {
            return Err(Error::GantryTilt {
                series_uid,
                angle_deg: angle,
            });
        }
        // As dcm2niix and ITK: the unit normal times the mean gap, so that
        // rounding in the stored positions does not tilt the k axis.
        let gap = (proj[order[order.len() - 1]] - proj[order[0]]) / n;
        normal.map(|v| v * gap)
    } else {
        let o = &loaded[frames[0].file].obj;
        let thick = floats(o, tags::SPACING_BETWEEN_SLICES)
            .or_else(|| floats(o, tags::SLICE_THICKNESS))
            .map(|v| v[0])
            .filter(|v| *v > 0.0)
            .unwrap_or(1.0);
        [normal[0] * thick, normal[1] * thick, normal[2] * thick]
    };
    let ipp0 = frames[order[0]].ipp;
    let lps = [
        [row_dir[0] * sp0[1], col_dir[0] * sp0[0], step[0], ipp0[0]],
        [row_dir[1] * sp0[1], col_dir[1] * sp0[0], step[1], ipp0[1]],
        [row_dir[2] * sp0[1], col_dir[2] * sp0[0], step[2], ipp0[2]],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let affine = Affine::from_lps_matrix(lps)?;

    // Pixels: native samples are borrowed from the parsed objects and
    // converted straight into the volume; compressed ones are decoded per
    // file first. Both in parallel.
    let plane = rows as usize * cols as usize;
    let sources: Vec<Samples<'_>> = loaded
        .par_iter()
        .map(|l| samples(&l.path, &l.obj, rows, cols, number_of_frames(&l.obj)))
        .collect::<Result<_>>()?;
    let mut data = Array3::<f32>::zeros((order.len(), rows as usize, cols as usize));
    let out = data.as_slice_mut().ok_or_else(|| Error::InvalidVolume {
        reason: "volume not contiguous".into(),
    })?;
    out.par_chunks_mut(plane).zip(order.par_iter()).for_each(|(dst, &n)| {
        let f = &frames[n];
        let fi = f.frame.unwrap_or(0) as usize;
        sources[f.file].convert(fi * plane, dst, f.slope, f.intercept);
    });
    let entries: Vec<SliceEntry> = order
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let f = &frames[n];
            let l = &loaded[f.file];
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
        .collect();
    let o = &first.obj;
    let mut ts: Vec<String> = loaded.iter().map(|l| l.ts_uid.clone()).collect();
    ts.sort();
    ts.dedup();
    let meta = SeriesMeta {
        series_uid: series_uid.clone(),
        study_uid: text(o, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
        frame_of_reference_uid: text(o, tags::FRAME_OF_REFERENCE_UID).unwrap_or_default(),
        sop_class_uid: text(o, tags::SOP_CLASS_UID).unwrap_or_default(),
        modality: text(o, tags::MODALITY).unwrap_or_default(),
        manufacturer: text(o, tags::MANUFACTURER).unwrap_or_default(),
        series_description: text(o, tags::SERIES_DESCRIPTION).unwrap_or_default(),
        patient_id: text(o, tags::PATIENT_ID).unwrap_or_default(),
        transfer_syntaxes: ts,
        rows,
        columns: cols,
        bits_stored: int(o, tags::BITS_STORED).unwrap_or(16) as u16,
        signed: int(o, tags::PIXEL_REPRESENTATION) == Some(1),
        slice_thickness: floats(o, tags::SLICE_THICKNESS).map(|v| v[0]),
        files: loaded.len(),
        multiframe: frames.iter().any(|f| f.frame.is_some()),
    };
    let volume = Volume::new(data, affine)?;
    tracing::debug!(series = %series_uid, size = ?volume.size(), spacing = ?volume.spacing(), "read series");
    Ok(DicomSeries {
        volume,
        meta,
        slices: SliceIndex::new(entries),
    })
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

/// The stored samples of an instance, checked to hold `nframes` frames.
fn samples<'a>(path: &Path, obj: &'a DefaultDicomObject, rows: u32, cols: u32, nframes: u32) -> Result<Samples<'a>> {
    use dicom::core::value::{PrimitiveValue, Value};
    let need = rows as usize * cols as usize * nframes as usize;
    let bits_alloc = int(obj, tags::BITS_ALLOCATED).unwrap_or(16);
    let bits = int(obj, tags::BITS_STORED).unwrap_or(bits_alloc).clamp(1, 32) as u16;
    let signed = int(obj, tags::PIXEL_REPRESENTATION) == Some(1);
    let mono = text(obj, tags::PHOTOMETRIC_INTERPRETATION).is_none_or(|p| p.starts_with("MONOCHROME"));
    let native = match obj.get(tags::PIXEL_DATA).map(|e| e.value()) {
        Some(Value::Primitive(PrimitiveValue::U16(v))) if bits_alloc == 16 && mono => {
            Some((Samples::U16(v.as_slice(), bits, signed), v.len(), 2))
        }
        Some(Value::Primitive(PrimitiveValue::U8(v))) if bits_alloc == 8 && mono => {
            Some((Samples::U8(v.as_slice(), bits, signed), v.len(), 1))
        }
        _ => None,
    };
    match native {
        Some((s, len, _)) if len >= need => Ok(s),
        Some((_, len, bytes)) => Err(Error::TruncatedPixelData {
            path: path.to_path_buf(),
            expected: (need * bytes) as u64,
            found: (len * bytes) as u64,
        }),
        None => decode_stored(path, obj, rows, cols, nframes).map(Samples::Decoded),
    }
}

/// Decodes all frames of an instance to stored values (no rescale).
fn decode_stored(path: &Path, obj: &DefaultDicomObject, rows: u32, cols: u32, nframes: u32) -> Result<Vec<f32>> {
    let expected = u64::from(rows) * u64::from(cols) * u64::from(nframes);
    let invalid = |reason: String| Error::InvalidTag {
        path: path.to_path_buf(),
        tag: "PixelData",
        reason,
    };
    let frags = obj.get(tags::PIXEL_DATA).and_then(|e| e.fragments()).unwrap_or(&[]);
    super::codestream::check_fragments(frags, rows as usize, cols as usize).map_err(invalid)?;
    if obj.meta().transfer_syntax().trim_end_matches('\0') == super::rle::RLE_LOSSLESS {
        if frags.len() < nframes as usize {
            return Err(invalid(format!("{} RLE fragments for {nframes} frames", frags.len())));
        }
        let bytes = int(obj, tags::BITS_ALLOCATED).unwrap_or(16).clamp(8, 64) as usize / 8;
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
    let v: Vec<f32> = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoded.to_vec_with_options(&opts)))
        .map_err(|_| invalid("the pixel data converter panicked on this stream".into()))?
        .map_err(|e| Error::PixelDecode {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
    if (v.len() as u64) < expected {
        return Err(Error::TruncatedPixelData {
            path: path.to_path_buf(),
            expected: expected * u64::from(decoded.bits_allocated().div_ceil(8)),
            found: v.len() as u64 * u64::from(decoded.bits_allocated().div_ceil(8)),
        });
    }
    Ok(v)
}

/// Decodes the stored pixel values of one DICOM file (no rescale, no
/// geometry), as `[frame, row, column]`. Useful to compare a compressed
/// file with its uncompressed twin.
///
/// # Errors
/// [`Error::NotDicom`], parse and decode errors, [`Error::LimitExceeded`].
pub fn read_stored_frames(path: impl AsRef<Path>, limits: &Limits) -> Result<Array3<f32>> {
    let path = path.as_ref();
    let l = load(path, limits)?.ok_or_else(|| Error::NotDicom {
        path: path.to_path_buf(),
    })?;
    let rows = int(&l.obj, tags::ROWS)
        .filter(|v| *v > 0)
        .ok_or_else(|| Error::MissingTag {
            path: path.to_path_buf(),
            tag: "Rows",
        })? as u32;
    let cols = int(&l.obj, tags::COLUMNS)
        .filter(|v| *v > 0)
        .ok_or_else(|| Error::MissingTag {
            path: path.to_path_buf(),
            tag: "Columns",
        })? as u32;
    let spp = int(&l.obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    if spp != 1 {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            reason: format!("{spp} samples per pixel"),
        });
    }
    let nf = number_of_frames(&l.obj);
    let n = u64::from(rows) * u64::from(cols) * u64::from(nf);
    limits.check_volume(path, n, 4)?;
    let mut v = decode_stored(path, &l.obj, rows, cols, nf)?;
    v.truncate(n as usize);
    Array3::from_shape_vec((nf as usize, rows as usize, cols as usize), v)
        .map_err(|e| Error::InvalidVolume { reason: e.to_string() })
}

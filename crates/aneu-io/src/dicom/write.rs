//! Writing a [`Volume<f32>`] as DICOM: a single-frame series, or one
//! Enhanced multi-frame file, with full geometry and UIDs.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use dicom::core::value::DataSetSequence;
use dicom::core::{DataElement, PrimitiveValue, Tag, VR};
use dicom::dictionary_std::tags;
use dicom::object::{FileMetaTableBuilder, InMemDicomObject};
use serde::{Deserialize, Serialize};

use super::read::{cross, dot};
use crate::volume::Volume;
use crate::{Error, Result};

/// How stored pixel values are represented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredType {
    /// Unsigned 16-bit (PixelRepresentation 0).
    U16,
    /// Signed 16-bit (PixelRepresentation 1).
    I16,
}

impl StoredType {
    fn range(self) -> (f64, f64) {
        match self {
            StoredType::U16 => (0.0, 65535.0),
            StoredType::I16 => (-32768.0, 32767.0),
        }
    }
}

/// The transfer syntax of written files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferSyntaxChoice {
    /// Explicit VR Little Endian (1.2.840.10008.1.2.1).
    ExplicitVrLittleEndian,
    /// Implicit VR Little Endian (1.2.840.10008.1.2).
    ImplicitVrLittleEndian,
}

impl TransferSyntaxChoice {
    fn uid(self) -> &'static str {
        match self {
            TransferSyntaxChoice::ExplicitVrLittleEndian => "1.2.840.10008.1.2.1",
            TransferSyntaxChoice::ImplicitVrLittleEndian => "1.2.840.10008.1.2",
        }
    }
}

/// Options for [`write_series`] and [`write_enhanced`].
///
/// UIDs left `None` are derived deterministically (`2.25.…`) from the
/// volume's content and geometry, so writing the same volume twice gives
/// the same files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DicomWriteOptions {
    /// Modality: `CT` or `MR` (also picks the Enhanced SOP class).
    pub modality: String,
    /// Stored pixel type.
    pub stored: StoredType,
    /// `(slope, intercept)` of the Modality LUT; `None` picks them so that
    /// integer volumes are stored exactly and others use the full range.
    pub rescale: Option<(f64, f64)>,
    /// Transfer syntax.
    pub transfer_syntax: TransferSyntaxChoice,
    /// SeriesInstanceUID.
    pub series_uid: Option<String>,
    /// StudyInstanceUID.
    pub study_uid: Option<String>,
    /// FrameOfReferenceUID.
    pub frame_of_reference_uid: Option<String>,
    /// SOPInstanceUIDs, one per slice (single-frame) or one (Enhanced).
    pub sop_uids: Option<Vec<String>>,
    /// PatientID (also used as PatientName).
    pub patient_id: String,
    /// PatientAge, DICOM `nnnY` form.
    pub patient_age: Option<String>,
    /// PatientSex (`M`, `F`, `O`).
    pub patient_sex: Option<String>,
    /// SeriesDescription.
    pub series_description: String,
    /// Write InstanceNumber in reverse slice order (to test that readers
    /// do not rely on it).
    pub reverse_instance_numbers: bool,
    /// Explicit InstanceNumbers, one per slice (overrides
    /// `reverse_instance_numbers`); for shuffled numbering.
    pub instance_numbers: Option<Vec<u32>>,
}

impl Default for DicomWriteOptions {
    fn default() -> Self {
        Self {
            modality: "MR".into(),
            stored: StoredType::I16,
            rescale: None,
            transfer_syntax: TransferSyntaxChoice::ExplicitVrLittleEndian,
            series_uid: None,
            study_uid: None,
            frame_of_reference_uid: None,
            sop_uids: None,
            patient_id: "ANONYMOUS".into(),
            patient_age: None,
            patient_sex: None,
            series_description: String::new(),
            reverse_instance_numbers: false,
            instance_numbers: None,
        }
    }
}

impl DicomWriteOptions {
    /// Sets the modality (`CT`, `MR`).
    pub fn with_modality(mut self, m: impl Into<String>) -> Self {
        self.modality = m.into();
        self
    }
    /// Sets the stored type.
    pub fn with_stored(mut self, s: StoredType) -> Self {
        self.stored = s;
        self
    }
    /// Fixes the rescale slope and intercept.
    pub fn with_rescale(mut self, slope: f64, intercept: f64) -> Self {
        self.rescale = Some((slope, intercept));
        self
    }
    /// Sets the transfer syntax.
    pub fn with_transfer_syntax(mut self, ts: TransferSyntaxChoice) -> Self {
        self.transfer_syntax = ts;
        self
    }
    /// Sets the SeriesInstanceUID.
    pub fn with_series_uid(mut self, uid: impl Into<String>) -> Self {
        self.series_uid = Some(uid.into());
        self
    }
    /// Sets the StudyInstanceUID.
    pub fn with_study_uid(mut self, uid: impl Into<String>) -> Self {
        self.study_uid = Some(uid.into());
        self
    }
    /// Sets the SOPInstanceUIDs.
    pub fn with_sop_uids(mut self, uids: Vec<String>) -> Self {
        self.sop_uids = Some(uids);
        self
    }
    /// Sets the PatientID.
    pub fn with_patient_id(mut self, id: impl Into<String>) -> Self {
        self.patient_id = id.into();
        self
    }
    /// Sets the SeriesDescription.
    pub fn with_series_description(mut self, d: impl Into<String>) -> Self {
        self.series_description = d.into();
        self
    }
    /// Sets explicit InstanceNumbers, one per slice.
    pub fn with_instance_numbers(mut self, n: Vec<u32>) -> Self {
        self.instance_numbers = Some(n);
        self
    }
    /// Sets PatientAge (DICOM `nnnY`) and PatientSex (`M`, `F`, `O`).
    pub fn with_patient(mut self, age: Option<String>, sex: Option<String>) -> Self {
        self.patient_age = age;
        self.patient_sex = sex;
        self
    }
    /// Numbers instances against the slice order.
    pub fn with_reverse_instance_numbers(mut self, r: bool) -> Self {
        self.reverse_instance_numbers = r;
        self
    }
}

/// One written instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenInstance {
    /// The file.
    pub path: PathBuf,
    /// Its SOPInstanceUID.
    pub sop_uid: String,
}

/// Formats a DS value in at most 16 characters with the most precision.
fn ds(v: f64) -> String {
    for prec in (0..=15).rev() {
        let mut s = format!("{v:.prec$}");
        if s.contains('.') {
            while s.ends_with('0') {
                s.pop();
            }
            if s.ends_with('.') {
                s.pop();
            }
        }
        if s == "-0" {
            s = "0".into();
        }
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{v:.6e}")
}

fn ds_multi(v: &[f64]) -> String {
    v.iter().map(|x| ds(*x)).collect::<Vec<_>>().join("\\")
}

fn uid_from(parts: &impl Hash, salt: &str) -> String {
    let mut h1 = DefaultHasher::new();
    (parts, salt, 1u8).hash(&mut h1);
    let mut h2 = DefaultHasher::new();
    (parts, salt, 2u8).hash(&mut h2);
    let v = (u128::from(h1.finish()) << 64) | u128::from(h2.finish());
    format!("2.25.{v}")
}

fn put_str(obj: &mut InMemDicomObject, tag: Tag, vr: VR, v: impl Into<String>) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v.into())));
}

fn put_u16(obj: &mut InMemDicomObject, tag: Tag, v: u16) {
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
}

fn put_seq(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

/// Geometry of the slices in LPS, checked to be writable as DICOM.
struct SliceGeometry {
    iop: [f64; 6],
    pixel_spacing: [f64; 2],
    step: [f64; 3],
    origin: [f64; 3],
    thickness: f64,
}

fn slice_geometry(vol: &Volume<f32>, path: &Path) -> Result<SliceGeometry> {
    let m = vol.affine().to_lps_matrix();
    let col = |c: usize| [m[0][c], m[1][c], m[2][c]];
    let norm = |v: [f64; 3]| dot(v, v).sqrt();
    let (ci, cj, ck) = (col(0), col(1), col(2));
    let (si, sj, sk) = (norm(ci), norm(cj), norm(ck));
    let r = ci.map(|x| x / si);
    let c = cj.map(|x| x / sj);
    let bad = |reason: String| Error::DicomWrite {
        path: path.to_path_buf(),
        reason,
    };
    if dot(r, c).abs() > 1e-6 {
        return Err(bad(
            "the i and j axes are not orthogonal; DICOM cannot store a sheared slice".into(),
        ));
    }
    let n = cross(r, c);
    if (dot(ck, n) / sk).abs() < 1.0 - 1e-9 {
        return Err(bad("the k axis is not along the slice normal (tilted stack)".into()));
    }
    Ok(SliceGeometry {
        iop: [r[0], r[1], r[2], c[0], c[1], c[2]],
        pixel_spacing: [sj, si],
        step: ck,
        origin: [m[0][3], m[1][3], m[2][3]],
        thickness: sk,
    })
}

/// Picks the rescale and converts values to stored integers.
fn to_stored(vol: &Volume<f32>, opts: &DicomWriteOptions, path: &Path) -> Result<((f64, f64), Vec<u16>)> {
    let data = vol.as_slice();
    if let Some(bad) = data.iter().position(|v| !v.is_finite()) {
        return Err(Error::DicomWrite {
            path: path.to_path_buf(),
            reason: format!("voxel {bad} is not finite"),
        });
    }
    let (lo, hi) = opts.stored.range();
    let (slope, intercept) = match opts.rescale {
        Some(r) => r,
        None => {
            let min = data.iter().fold(f64::INFINITY, |a, v| a.min(f64::from(*v)));
            let max = data.iter().fold(f64::NEG_INFINITY, |a, v| a.max(f64::from(*v)));
            let integral = data.iter().all(|v| v.fract() == 0.0);
            if integral && min >= lo && max <= hi {
                (1.0, 0.0)
            } else if integral && max - min <= hi - lo {
                (1.0, min - lo)
            } else {
                let s = if max > min { (max - min) / (hi - lo) } else { 1.0 };
                (s, min - lo * s)
            }
        }
    };
    if !(slope.is_finite() && slope != 0.0 && intercept.is_finite()) {
        return Err(Error::DicomWrite {
            path: path.to_path_buf(),
            reason: format!("invalid rescale slope {slope} / intercept {intercept}"),
        });
    }
    let stored = data
        .iter()
        .map(|v| {
            let s = ((f64::from(*v) - intercept) / slope).round().clamp(lo, hi);
            match opts.stored {
                StoredType::U16 => s as u16,
                StoredType::I16 => (s as i16) as u16,
            }
        })
        .collect();
    Ok(((slope, intercept), stored))
}

struct Uids {
    study: String,
    series: String,
    frame_of_reference: String,
}

fn uids(vol: &Volume<f32>, opts: &DicomWriteOptions) -> Uids {
    let mut h = DefaultHasher::new();
    vol.as_slice().iter().for_each(|v| v.to_bits().hash(&mut h));
    vol.affine()
        .matrix()
        .iter()
        .flatten()
        .for_each(|v| v.to_bits().hash(&mut h));
    opts.patient_id.hash(&mut h);
    let key = h.finish();
    Uids {
        study: opts.study_uid.clone().unwrap_or_else(|| uid_from(&key, "study")),
        series: opts.series_uid.clone().unwrap_or_else(|| uid_from(&key, "series")),
        frame_of_reference: opts
            .frame_of_reference_uid
            .clone()
            .unwrap_or_else(|| uid_from(&key, "for")),
    }
}

/// The attributes common to every instance of the series.
fn common(opts: &DicomWriteOptions, u: &Uids, rows: usize, cols: usize) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    put_str(&mut o, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
    put_str(&mut o, tags::PATIENT_NAME, VR::PN, opts.patient_id.clone());
    put_str(&mut o, tags::PATIENT_ID, VR::LO, opts.patient_id.clone());
    if let Some(a) = &opts.patient_age {
        put_str(&mut o, tags::PATIENT_AGE, VR::AS, a.clone());
    }
    if let Some(s) = &opts.patient_sex {
        put_str(&mut o, tags::PATIENT_SEX, VR::CS, s.clone());
    }
    put_str(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, u.study.clone());
    put_str(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, u.series.clone());
    put_str(
        &mut o,
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        u.frame_of_reference.clone(),
    );
    put_str(&mut o, tags::MODALITY, VR::CS, opts.modality.clone());
    put_str(&mut o, tags::MANUFACTURER, VR::LO, "aneu");
    put_str(
        &mut o,
        tags::SERIES_DESCRIPTION,
        VR::LO,
        opts.series_description.clone(),
    );
    put_str(&mut o, tags::SERIES_NUMBER, VR::IS, "1");
    put_str(&mut o, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
    put_u16(&mut o, tags::SAMPLES_PER_PIXEL, 1);
    put_u16(&mut o, tags::ROWS, rows as u16);
    put_u16(&mut o, tags::COLUMNS, cols as u16);
    put_u16(&mut o, tags::BITS_ALLOCATED, 16);
    put_u16(&mut o, tags::BITS_STORED, 16);
    put_u16(&mut o, tags::HIGH_BIT, 15);
    put_u16(
        &mut o,
        tags::PIXEL_REPRESENTATION,
        u16::from(opts.stored == StoredType::I16),
    );
    o
}

fn write_file(obj: InMemDicomObject, sop_class: &str, sop_uid: &str, ts: &str, path: &Path) -> Result<()> {
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(ts)
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop_uid)
        .implementation_class_uid("1.2.826.0.1.3680043.10.1529.1");
    let file = obj.with_meta(meta).map_err(|e| Error::DicomWrite {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    crate::write_atomic_with(path, |tmp| {
        file.write_to_file(tmp).map_err(|e| Error::DicomWrite {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    })
}

fn check_dims(vol: &Volume<f32>, path: &Path) -> Result<()> {
    let s = vol.size();
    if s.ni > 65535 || s.nj > 65535 {
        return Err(Error::DicomWrite {
            path: path.to_path_buf(),
            reason: format!("{} x {} slices do not fit DICOM's 16-bit Rows/Columns", s.nj, s.ni),
        });
    }
    Ok(())
}

fn check_sop_uids(opts: &DicomWriteOptions, n: usize, path: &Path) -> Result<()> {
    match &opts.sop_uids {
        Some(u) if u.len() != n => Err(Error::DicomWrite {
            path: path.to_path_buf(),
            reason: format!("{} SOPInstanceUIDs given for {n} instances", u.len()),
        }),
        _ => Ok(()),
    }
}

/// Writes a volume as a single-frame series into `dir`, one
/// `<SOPInstanceUID>.dcm` per slice (the RSNA layout), with
/// ImagePositionPatient, ImageOrientationPatient, PixelSpacing,
/// SliceThickness, SpacingBetweenSlices, InstanceNumber and the rescale.
///
/// Files are written to a temporary name and renamed, so a killed run
/// leaves no half-written `.dcm`.
///
/// # Errors
/// [`Error::DicomWrite`] if the geometry cannot be stored (sheared or
/// tilted grids), a value is not finite, or a file cannot be written.
pub fn write_series(
    vol: &Volume<f32>,
    dir: impl AsRef<Path>,
    opts: &DicomWriteOptions,
) -> Result<Vec<WrittenInstance>> {
    let dir = dir.as_ref();
    check_dims(vol, dir)?;
    let g = slice_geometry(vol, dir)?;
    let size = vol.size();
    check_sop_uids(opts, size.nk, dir)?;
    let ((slope, intercept), stored) = to_stored(vol, opts, dir)?;
    let u = uids(vol, opts);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let sop_class = if opts.modality == "CT" {
        "1.2.840.10008.5.1.4.1.1.2"
    } else {
        "1.2.840.10008.5.1.4.1.1.4"
    };
    let plane = size.ni * size.nj;
    let mut out = Vec::with_capacity(size.nk);
    for k in 0..size.nk {
        let sop = match &opts.sop_uids {
            Some(v) => v[k].clone(),
            None => format!("{}.{}", u.series, k + 1),
        };
        let mut o = common(opts, &u, size.nj, size.ni);
        put_str(&mut o, tags::SOP_CLASS_UID, VR::UI, sop_class);
        put_str(&mut o, tags::SOP_INSTANCE_UID, VR::UI, sop.clone());
        put_str(&mut o, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL");
        let inst = match &opts.instance_numbers {
            Some(v) => v.get(k).map_or(k + 1, |&n| n as usize),
            None if opts.reverse_instance_numbers => size.nk - k,
            None => k + 1,
        };
        put_str(&mut o, tags::INSTANCE_NUMBER, VR::IS, inst.to_string());
        let ipp: Vec<f64> = (0..3).map(|a| g.origin[a] + k as f64 * g.step[a]).collect();
        put_str(&mut o, tags::IMAGE_POSITION_PATIENT, VR::DS, ds_multi(&ipp));
        put_str(&mut o, tags::IMAGE_ORIENTATION_PATIENT, VR::DS, ds_multi(&g.iop));
        put_str(&mut o, tags::PIXEL_SPACING, VR::DS, ds_multi(&g.pixel_spacing));
        put_str(&mut o, tags::SLICE_THICKNESS, VR::DS, ds(g.thickness));
        put_str(&mut o, tags::SPACING_BETWEEN_SLICES, VR::DS, ds(g.thickness));
        put_str(&mut o, tags::RESCALE_INTERCEPT, VR::DS, ds(intercept));
        put_str(&mut o, tags::RESCALE_SLOPE, VR::DS, ds(slope));
        put_str(
            &mut o,
            tags::RESCALE_TYPE,
            VR::LO,
            if opts.modality == "CT" { "HU" } else { "US" },
        );
        let px = stored[k * plane..(k + 1) * plane].to_vec();
        o.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(px.into()),
        ));
        let path = dir.join(format!("{sop}.dcm"));
        write_file(o, sop_class, &sop, opts.transfer_syntax.uid(), &path)?;
        out.push(WrittenInstance { path, sop_uid: sop });
    }
    Ok(out)
}

/// Writes a volume as one Enhanced CT/MR multi-frame file: orientation,
/// pixel spacing and rescale in the shared functional groups, each frame's
/// position in its PlanePositionSequence. Frame f is slice k = f.
///
/// # Errors
/// As [`write_series`].
pub fn write_enhanced(vol: &Volume<f32>, path: impl AsRef<Path>, opts: &DicomWriteOptions) -> Result<WrittenInstance> {
    let path = path.as_ref();
    check_dims(vol, path)?;
    let g = slice_geometry(vol, path)?;
    let size = vol.size();
    check_sop_uids(opts, 1, path)?;
    let ((slope, intercept), stored) = to_stored(vol, opts, path)?;
    let u = uids(vol, opts);
    let sop_class = if opts.modality == "CT" {
        "1.2.840.10008.5.1.4.1.1.2.1"
    } else {
        "1.2.840.10008.5.1.4.1.1.4.1"
    };
    let sop = match &opts.sop_uids {
        Some(v) => v[0].clone(),
        None => format!("{}.1", u.series),
    };
    let mut o = common(opts, &u, size.nj, size.ni);
    put_str(&mut o, tags::SOP_CLASS_UID, VR::UI, sop_class);
    put_str(&mut o, tags::SOP_INSTANCE_UID, VR::UI, sop.clone());
    put_str(&mut o, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\VOLUME\\NONE");
    put_str(&mut o, tags::INSTANCE_NUMBER, VR::IS, "1");
    put_str(&mut o, tags::NUMBER_OF_FRAMES, VR::IS, size.nk.to_string());

    let mut measures = InMemDicomObject::new_empty();
    put_str(&mut measures, tags::PIXEL_SPACING, VR::DS, ds_multi(&g.pixel_spacing));
    put_str(&mut measures, tags::SLICE_THICKNESS, VR::DS, ds(g.thickness));
    put_str(&mut measures, tags::SPACING_BETWEEN_SLICES, VR::DS, ds(g.thickness));
    let mut orient = InMemDicomObject::new_empty();
    put_str(&mut orient, tags::IMAGE_ORIENTATION_PATIENT, VR::DS, ds_multi(&g.iop));
    let mut pvt = InMemDicomObject::new_empty();
    put_str(&mut pvt, tags::RESCALE_INTERCEPT, VR::DS, ds(intercept));
    put_str(&mut pvt, tags::RESCALE_SLOPE, VR::DS, ds(slope));
    put_str(
        &mut pvt,
        tags::RESCALE_TYPE,
        VR::LO,
        if opts.modality == "CT" { "HU" } else { "US" },
    );
    let mut shared = InMemDicomObject::new_empty();
    put_seq(&mut shared, tags::PIXEL_MEASURES_SEQUENCE, vec![measures]);
    put_seq(&mut shared, tags::PLANE_ORIENTATION_SEQUENCE, vec![orient]);
    put_seq(&mut shared, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, vec![pvt]);
    put_seq(&mut o, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]);

    let per_frame = (0..size.nk)
        .map(|k| {
            let mut pos = InMemDicomObject::new_empty();
            let ipp: Vec<f64> = (0..3).map(|a| g.origin[a] + k as f64 * g.step[a]).collect();
            put_str(&mut pos, tags::IMAGE_POSITION_PATIENT, VR::DS, ds_multi(&ipp));
            let mut content = InMemDicomObject::new_empty();
            content.put(DataElement::new(
                tags::IN_STACK_POSITION_NUMBER,
                VR::UL,
                PrimitiveValue::from((k + 1) as u32),
            ));
            let mut f = InMemDicomObject::new_empty();
            put_seq(&mut f, tags::FRAME_CONTENT_SEQUENCE, vec![content]);
            put_seq(&mut f, tags::PLANE_POSITION_SEQUENCE, vec![pos]);
            f
        })
        .collect();
    put_seq(&mut o, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame);
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(stored.into()),
    ));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    write_file(o, sop_class, &sop, opts.transfer_syntax.uid(), path)?;
    Ok(WrittenInstance {
        path: path.to_path_buf(),
        sop_uid: sop,
    })
}

#[cfg(test)]
mod tests {
    use super::ds;

    #[test]
    fn ds_fits_sixteen_chars_and_keeps_precision() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -123.456_789_012_345_67,
            0.123_456_789_012_345_68,
            1e-20,
            98_765_432.123_456_79,
            -1.5e-7,
        ] {
            let s = ds(v);
            assert!(s.len() <= 16, "{s}");
            let back: f64 = s.parse().unwrap();
            assert!((back - v).abs() <= 1e-9 * v.abs().max(1.0), "{v} -> {s}");
        }
    }
}

//! NIfTI-1 reading and writing (`.nii` and `.nii.gz`).
//!
//! Reading prefers the sform over the qform (as nibabel's
//! `get_best_affine` does), applies `scl_slope`/`scl_inter`, and re-lays
//! nifti-rs's Fortran-ordered `[x, y, z]` array as C-ordered `[k, j, i]`.
//! A `.nii.gz` is decompressed to the end of the gzip stream, so that its
//! CRC-32 and length trailer are checked; NaN or infinite scaling factors
//! or voxel values are errors.
//! Writing stores the affine in both the sform and the qform (the qform is
//! the rotation part; it is left unset for sheared affines, which a
//! quaternion cannot represent), so that nibabel and 3D Slicer see the same
//! geometry.

use std::path::Path;

use std::io::Read;

use ndarray::Array3;
use nifti::writer::WriterOptions;
use nifti::{InMemNiftiObject, IntoNdArray, NiftiHeader, NiftiObject, NiftiType, ReaderOptions};

use crate::geometry::{Affine, VoxelIndex};
use crate::volume::Volume;
use crate::{Error, Limits, Result};

fn nifti_err(path: &Path, e: nifti::NiftiError) -> Error {
    match e {
        nifti::NiftiError::Io(source) => Error::Io {
            path: path.to_path_buf(),
            source,
        },
        e => Error::Nifti {
            path: path.to_path_buf(),
            source: Box::new(e),
        },
    }
}

fn bytes_per_voxel(datatype: i16) -> Option<u64> {
    // NIfTI-1 datatype codes: u8, i8 | i16, u16 | i32, u32, f32 | i64, u64, f64
    Some(match datatype {
        2 | 256 => 1,
        4 | 512 => 2,
        8 | 768 | 16 => 4,
        1024 | 1280 | 64 => 8,
        _ => return None,
    })
}

/// The smallest and largest value of an integer NIfTI datatype; `None`
/// for floating-point types.
fn integer_range(datatype: i16) -> Option<(f64, f64)> {
    Some(match datatype {
        2 => (0.0, f64::from(u8::MAX)),
        256 => (f64::from(i8::MIN), f64::from(i8::MAX)),
        4 => (f64::from(i16::MIN), f64::from(i16::MAX)),
        512 => (0.0, f64::from(u16::MAX)),
        8 => (f64::from(i32::MIN), f64::from(i32::MAX)),
        768 => (0.0, f64::from(u32::MAX)),
        1024 => (i64::MIN as f64, i64::MAX as f64),
        1280 => (0.0, u64::MAX as f64),
        _ => return None,
    })
}

/// Checks `scl_slope` / `scl_inter`: both finite (NIfTI-1 leaves NaN to
/// no rule, and nifti-rs would propagate it into every voxel), and, when
/// scaling applies (`scl_slope != 0`; 0 means "no scaling" in NIfTI-1),
/// the datatype's whole integer range mapped to finite 32-bit floats.
fn check_scaling(path: &Path, h: &NiftiHeader) -> Result<()> {
    let invalid = |tag: &'static str, reason: String| Error::InvalidTag {
        path: path.to_path_buf(),
        tag,
        reason,
    };
    let (slope, inter) = (f64::from(h.scl_slope), f64::from(h.scl_inter));
    if !slope.is_finite() {
        return Err(invalid("scl_slope", format!("{slope} is not a finite number")));
    }
    if !inter.is_finite() {
        return Err(invalid("scl_inter", format!("{inter} is not a finite number")));
    }
    if slope == 0.0 {
        return Ok(());
    }
    if let Some((lo, hi)) = integer_range(h.datatype) {
        let (a, b) = (lo * slope + inter, hi * slope + inter);
        let max = f64::from(f32::MAX);
        if !(a.abs() <= max && b.abs() <= max) {
            return Err(invalid(
                "scl_slope",
                format!(
                    "scl_slope {slope:e} and scl_inter {inter:e} map the stored range [{lo}, {hi}] to [{a:e}, {b:e}], beyond 32-bit floats"
                ),
            ));
        }
    }
    Ok(())
}

/// Reads a `.nii.gz` in one pass and to the end of the gzip stream: the
/// decompressor checks each member's CRC-32 and length only when it
/// reaches the trailer, which nifti-rs (reading exactly the voxels it
/// needs) never does. At most `max_extra` bytes past the image are read
/// (and discarded).
fn read_gz(path: &Path, max_extra: u64) -> Result<InMemNiftiObject> {
    let corrupt = |source: std::io::Error| Error::CorruptGzip {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut dec = flate2::bufread::MultiGzDecoder::new(raw.as_slice());
    let obj = InMemNiftiObject::from_reader(&mut dec).map_err(|e| match e {
        nifti::NiftiError::Io(source) => corrupt(source),
        e => nifti_err(path, e),
    })?;
    let extra =
        std::io::copy(&mut (&mut dec).take(max_extra.saturating_add(1)), &mut std::io::sink()).map_err(corrupt)?;
    if extra > max_extra {
        return Err(Error::LimitExceeded {
            path: path.to_path_buf(),
            what: "file bytes",
            requested: extra,
            limit: max_extra,
        });
    }
    Ok(obj)
}

/// The affine NIfTI readers use: the sform if `sform_code > 0`, else the
/// qform if `qform_code > 0`, else nibabel's fall-back (x flipped, centred).
///
/// # Errors
/// [`Error::InvalidAffine`] if the chosen affine is singular or not finite.
pub fn header_affine(h: &NiftiHeader) -> Result<Affine> {
    if h.sform_code > 0 {
        let r = |v: [f32; 4]| v.map(f64::from);
        return Affine::from_matrix([r(h.srow_x), r(h.srow_y), r(h.srow_z), [0.0, 0.0, 0.0, 1.0]]);
    }
    let px = [f64::from(h.pixdim[1]), f64::from(h.pixdim[2]), f64::from(h.pixdim[3])];
    if h.qform_code > 0 {
        let (b, c, d) = (f64::from(h.quatern_b), f64::from(h.quatern_c), f64::from(h.quatern_d));
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let rot = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let zoom = [px[0], px[1], px[2] * qfac];
        let mut lin = [[0.0; 3]; 3];
        for r in 0..3 {
            for c in 0..3 {
                lin[r][c] = rot[r][c] * zoom[c];
            }
        }
        let t = [f64::from(h.quatern_x), f64::from(h.quatern_y), f64::from(h.quatern_z)];
        return Affine::from_parts(lin, t);
    }
    // nibabel's get_base_affine: x flipped, origin at the grid centre.
    let z = px.map(|v| if v > 0.0 { v } else { 1.0 });
    let n = [h.dim[1], h.dim[2], h.dim[3]].map(|d| f64::from(d.max(1)));
    let lin = [[-z[0], 0.0, 0.0], [0.0, z[1], 0.0], [0.0, 0.0, z[2]]];
    let t = [
        z[0] * (n[0] - 1.0) / 2.0,
        -z[1] * (n[1] - 1.0) / 2.0,
        -z[2] * (n[2] - 1.0) / 2.0,
    ];
    Affine::from_parts(lin, t)
}

/// Reads a 3D NIfTI image as `f32` with default [`Limits`].
///
/// ```no_run
/// let vol = aneu_io::read_nifti("image.nii.gz")?;
/// println!("{}", vol.affine().axis_codes_string());
/// # Ok::<(), aneu_io::Error>(())
/// ```
///
/// # Errors
/// See [`read_nifti_with_limits`].
pub fn read_nifti(path: impl AsRef<Path>) -> Result<Volume<f32>> {
    read_nifti_with_limits(path, &Limits::default())
}

/// Reads a 3D NIfTI image (u8, i8, i16, u16, i32, u32, i64, u64, f32 or
/// f64 voxels; a 4D image with one volume is accepted) as `f32`, with the
/// scaling applied.
///
/// # Errors
/// [`Error::Io`], [`Error::Nifti`] for a malformed file,
/// [`Error::CorruptGzip`] for a `.nii.gz` whose deflate data or CRC-32 /
/// length trailer is wrong, [`Error::Unsupported`] for 4D data or other
/// data types, [`Error::LimitExceeded`] (checked from the header, before
/// the data is read), [`Error::InvalidNiftiHeader`] for an unusable
/// affine, [`Error::InvalidTag`] for a NaN or infinite `scl_slope` /
/// `scl_inter` (or one that overflows 32-bit floats),
/// [`Error::NonFiniteVoxels`] for NaN or infinite voxel values.
pub fn read_nifti_with_limits(path: impl AsRef<Path>, limits: &Limits) -> Result<Volume<f32>> {
    let path = path.as_ref();
    let file_len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    limits.check_file(path, file_len)?;
    let h = NiftiHeader::from_file(path).map_err(|e| nifti_err(path, e))?;
    let ndim = h.dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            reason: format!("dim[0] = {ndim}"),
        });
    }
    let dims: Vec<u64> = (1..=usize::from(ndim)).map(|d| u64::from(h.dim[d])).collect();
    if dims.iter().take(3).any(|&d| d == 0) {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            reason: format!("zero-sized dimension in {dims:?}"),
        });
    }
    if dims.iter().skip(3).any(|&d| d > 1) {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            reason: format!("{}D image {dims:?}; only 3D volumes are read", ndim),
        });
    }
    let bpv = bytes_per_voxel(h.datatype).ok_or_else(|| Error::Unsupported {
        path: path.to_path_buf(),
        reason: format!("NIfTI datatype {}", h.datatype),
    })?;
    let n: u64 = dims.iter().take(3).product();
    limits.check_volume(path, n, 4)?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    let need = (h.vox_offset.max(352.0) as u64).saturating_add(n.saturating_mul(bpv));
    if !gz && file_len < need {
        return Err(Error::Nifti {
            path: path.to_path_buf(),
            source: Box::new(nifti::NiftiError::IncompatibleLength(file_len as usize, need as usize)),
        });
    }
    if gz {
        limits.check_file(path, need)?;
    }
    let affine = header_affine(&h).map_err(|e| Error::InvalidNiftiHeader {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    check_scaling(path, &h)?;
    // A header-only file ("ni1": the voxels are in a .img beside it) is
    // left to nifti-rs, which finds the pair.
    let obj = if gz && &h.magic != b"ni1\0" {
        read_gz(path, limits.max_file_bytes.saturating_sub(need))?
    } else {
        ReaderOptions::new().read_file(path).map_err(|e| nifti_err(path, e))?
    };
    let arr = obj
        .into_volume()
        .into_ndarray::<f32>()
        .map_err(|e| nifti_err(path, e))?;
    let sh = arr.shape();
    let shape = (sh[0], sh.get(1).copied().unwrap_or(1), sh.get(2).copied().unwrap_or(1));
    let arr = arr
        .into_shape_with_order((shape, ndarray::Order::ColumnMajor))
        .map_err(|e| Error::InvalidVolume { reason: e.to_string() })?;
    // Fortran [x, y, z] → C [k, j, i]: reversing the axes of a Fortran
    // array gives a C-contiguous view, so this is a no-copy re-lay.
    let data: Array3<f32> = arr.reversed_axes();
    // NaN is no "missing value" marker for aneu: every step downstream
    // needs finite voxels, so a non-finite one is an error here.
    if let Some(at) = data.iter().position(|v| !v.is_finite()) {
        let (_, nj, ni) = data.dim();
        let count = data.iter().skip(at).filter(|v| !v.is_finite()).count() as u64;
        return Err(Error::NonFiniteVoxels {
            path: path.to_path_buf(),
            count,
            first: VoxelIndex::new(at % ni.max(1), (at / ni.max(1)) % nj.max(1), at / (ni * nj).max(1)),
        });
    }
    Volume::new(data, affine)
}

/// Voxel types that [`write_nifti`] can store.
pub trait NiftiElement: bytemuck::Pod + Clone {
    /// The NIfTI datatype code.
    const TYPE: NiftiType;
}

impl NiftiElement for u8 {
    const TYPE: NiftiType = NiftiType::Uint8;
}
impl NiftiElement for i16 {
    const TYPE: NiftiType = NiftiType::Int16;
}
impl NiftiElement for u16 {
    const TYPE: NiftiType = NiftiType::Uint16;
}
impl NiftiElement for i32 {
    const TYPE: NiftiType = NiftiType::Int32;
}
impl NiftiElement for f32 {
    const TYPE: NiftiType = NiftiType::Float32;
}
impl NiftiElement for f64 {
    const TYPE: NiftiType = NiftiType::Float64;
}

/// Unit quaternion (b, c, d) and qfac of a direction matrix, as NIfTI's
/// `nifti_mat44_to_quatern` computes it. `None` if the columns are not
/// orthonormal.
fn quaternion(dir: [[f64; 3]; 3]) -> Option<([f64; 3], f64)> {
    let col = |c: usize| [dir[0][c], dir[1][c], dir[2][c]];
    let dotc = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let (c0, c1, c2) = (col(0), col(1), col(2));
    if dotc(c0, c1).abs() > 1e-5 || dotc(c0, c2).abs() > 1e-5 || dotc(c1, c2).abs() > 1e-5 {
        return None;
    }
    let det = dir[0][0] * (dir[1][1] * dir[2][2] - dir[1][2] * dir[2][1])
        - dir[0][1] * (dir[1][0] * dir[2][2] - dir[1][2] * dir[2][0])
        + dir[0][2] * (dir[1][0] * dir[2][1] - dir[1][1] * dir[2][0]);
    let mut r = dir;
    let qfac = if det < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
        -1.0
    } else {
        1.0
    };
    let (r11, r12, r13) = (r[0][0], r[0][1], r[0][2]);
    let (r21, r22, r23) = (r[1][0], r[1][1], r[1][2]);
    let (r31, r32, r33) = (r[2][0], r[2][1], r[2][2]);
    let trace = r11 + r22 + r33 + 1.0;
    let a: f64;
    let (mut b, mut c, mut d): (f64, f64, f64);
    if trace > 0.5 {
        a = 0.5 * trace.sqrt();
        b = 0.25 * (r32 - r23) / a;
        c = 0.25 * (r13 - r31) / a;
        d = 0.25 * (r21 - r12) / a;
    } else {
        let xd = 1.0 + r11 - (r22 + r33);
        let yd = 1.0 + r22 - (r11 + r33);
        let zd = 1.0 + r33 - (r11 + r22);
        if xd > 1.0 {
            b = 0.5 * xd.sqrt();
            c = 0.25 * (r12 + r21) / b;
            d = 0.25 * (r13 + r31) / b;
            a = 0.25 * (r32 - r23) / b;
        } else if yd > 1.0 {
            c = 0.5 * yd.sqrt();
            b = 0.25 * (r12 + r21) / c;
            d = 0.25 * (r23 + r32) / c;
            a = 0.25 * (r13 - r31) / c;
        } else {
            d = 0.5 * zd.sqrt();
            b = 0.25 * (r13 + r31) / d;
            c = 0.25 * (r23 + r32) / d;
            a = 0.25 * (r21 - r12) / d;
        }
        if a < 0.0 {
            b = -b;
            c = -c;
            d = -d;
        }
    }
    Some(([b, c, d], qfac))
}

/// Builds the NIfTI-1 header for a volume's geometry.
fn header_for(affine: &Affine) -> NiftiHeader {
    let m = affine.matrix();
    let sp = affine.spacing();
    let f = |r: usize| [m[r][0] as f32, m[r][1] as f32, m[r][2] as f32, m[r][3] as f32];
    let mut h = NiftiHeader {
        sform_code: 1,
        srow_x: f(0),
        srow_y: f(1),
        srow_z: f(2),
        xyzt_units: 2 | 8,
        ..NiftiHeader::default()
    };
    h.pixdim = [1.0, sp[0] as f32, sp[1] as f32, sp[2] as f32, 1.0, 1.0, 1.0, 1.0];
    if let Some((q, qfac)) = quaternion(affine.direction()) {
        h.qform_code = 1;
        h.quatern_b = q[0] as f32;
        h.quatern_c = q[1] as f32;
        h.quatern_d = q[2] as f32;
        h.quatern_x = m[0][3] as f32;
        h.quatern_y = m[1][3] as f32;
        h.quatern_z = m[2][3] as f32;
        h.pixdim[0] = qfac as f32;
    } else {
        h.qform_code = 0;
    }
    let mut descrip = b"aneu".to_vec();
    descrip.resize(80, 0);
    h.descrip = descrip;
    h
}

/// Writes a volume as NIfTI-1 (`.nii`, or gzip-compressed if the path ends
/// in `.gz`), with the affine in the sform and the qform. The file is
/// written under a temporary name beside it and renamed, so readers never
/// see a half-written file; the temporary file is removed on every error
/// path. An existing `path` is replaced only if it is a regular file: a
/// symbolic link, a folder, a device (such as `/dev/full`) or a FIFO is
/// refused.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use aneu_io::{Affine, Volume, read_nifti, write_nifti};
/// let v = Volume::new(ndarray::Array3::<f32>::ones((3, 4, 5)), Affine::identity()).unwrap();
/// let p = dir.path().join("v.nii.gz");
/// write_nifti(&v, &p).unwrap();
/// assert_eq!(read_nifti(&p).unwrap(), v);
/// ```
///
/// # Errors
/// [`Error::UnsafeOutput`] for a target that is not a regular file;
/// [`Error::Io`] or [`Error::Nifti`] if the file cannot be written.
pub fn write_nifti<T: NiftiElement>(vol: &Volume<T>, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    crate::check_writable_target(path)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("volume.nii.gz");
    let gz = name.ends_with(".gz");
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let h = header_for(vol.affine());
    // [k, j, i] C-order viewed as [i, j, k]; the writer transposes it back
    // and streams it in memory order.
    let ijk = vol.data().reversed_axes();
    let expected_len = 352 + (vol.data().len() * std::mem::size_of::<T>()) as u64;
    // `.aneu-tmp-<pid>-<n>.nii[.gz]` whatever `path` is called: the one
    // name nifti-rs writes to unchanged.
    let ext = if gz { "nii.gz" } else { "nii" };
    crate::output::write_atomic_named(
        path,
        |unique| format!("{unique}.{ext}"),
        |tmp| {
            WriterOptions::new(tmp)
                .reference_header(&h)
                .compress(gz)
                .write_nifti_with_type(&ijk, T::TYPE)
                .map_err(|e| nifti_err(path, e))?;
            // nifti-rs drops its buffered writer of a `.nii` without flushing
            // it explicitly, which hides a failed last write (a full disk):
            // the size tells.
            if !gz {
                let len = std::fs::metadata(tmp).map_err(|e| Error::io(tmp, e))?.len();
                if len != expected_len {
                    return Err(Error::io(
                        path,
                        std::io::Error::other(format!("wrote {len} bytes of {expected_len}")),
                    ));
                }
            }
            Ok(())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_name_is_written_exactly_there() {
        let dir = tempfile::tempdir().unwrap();
        let v = Volume::new(ndarray::Array3::<f32>::ones((2, 3, 4)), Affine::identity()).unwrap();
        for name in ["v.nii.gz", "v.nii", "noext", "x.gz", "a.b.nii", "V.NII"] {
            let target = dir.path().join(name);
            write_nifti(&v, &target).unwrap();
            assert_eq!(read_nifti(&target).unwrap(), v, "{name}");
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["V.NII", "a.b.nii", "noext", "v.nii", "v.nii.gz", "x.gz"]);
    }

    #[test]
    fn quaternion_round_trip_through_header() {
        let c = 0.4f64.cos();
        let s = 0.4f64.sin();
        for flip in [1.0, -1.0] {
            let a = Affine::from_parts(
                [
                    [c * 0.9, -s * 1.1, 0.0],
                    [s * 0.9, c * 1.1, 0.0],
                    [0.0, 0.0, 2.0 * flip],
                ],
                [1.0, 2.0, 3.0],
            )
            .unwrap();
            let mut h = header_for(&a);
            h.sform_code = 0;
            let q = header_affine(&h).unwrap();
            assert!(q.max_abs_diff(&a) < 1e-5, "{:?} vs {:?}", q.matrix(), a.matrix());
        }
    }
}

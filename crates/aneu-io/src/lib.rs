//! # aneu-io
//!
//! Image I/O for [aneu](https://github.com/aneu-rs/aneu), with one geometry
//! convention throughout:
//!
//! * [`Volume<T>`] holds C-contiguous data indexed `[k, j, i]` (slice, row,
//!   column) and an [`Affine`] from voxel (i, j, k) to **RAS+ millimetres**,
//!   as a NIfTI sform does. DICOM's LPS is converted at the reader.
//! * Points are named types: [`Voxel`] `{ i, j, k }` and [`WorldPoint`]
//!   `{ x, y, z }`.
//! * [`DicomSeries::read`] reads a folder (single-frame or Enhanced
//!   multi-frame, compressed or not) with the slices sorted along the
//!   normal and the spacing taken from the positions; [`read_nifti`] and
//!   [`write_nifti`] handle `.nii`/`.nii.gz`.
//! * [`RsnaDataset`] opens the RSNA Intracranial Aneurysm Detection layout,
//!   and localizers `(SOPInstanceUID, x, y[, f])` map to world points and
//!   voxels through each slice's own geometry.
//!
//! Readers never panic on bad input: every failure is a typed [`Error`]
//! naming the file and the reason, and every size read from a header is
//! checked against [`Limits`] before allocation.
//!
//! ```
//! use aneu_io::{Affine, DicomSeries, DicomWriteOptions, Volume, write_series};
//! use ndarray::Array3;
//! # let dir = tempfile::tempdir().unwrap();
//! // A 4 × 3 × 2 volume, 0.5 mm in-plane, 2 mm slices, LPS-oriented.
//! let affine = Affine::from_parts(
//!     [[-0.5, 0.0, 0.0], [0.0, -0.5, 0.0], [0.0, 0.0, 2.0]],
//!     [10.0, 20.0, -30.0],
//! )?;
//! let data = Array3::from_shape_fn((2, 3, 4), |(k, j, i)| (100 * k + 10 * j + i) as f32);
//! let vol = Volume::new(data, affine)?;
//! write_series(&vol, dir.path(), &DicomWriteOptions::default())?;
//!
//! let series = DicomSeries::read(dir.path())?;
//! assert_eq!(series.volume.data(), vol.data());
//! assert!(series.volume.affine().max_abs_diff(&affine) < 1e-9);
//! assert_eq!(series.volume.affine().axis_codes_string(), "LPS");
//! # Ok::<(), aneu_io::Error>(())
//! ```

#![forbid(unsafe_code)]

mod error;
mod geometry;
mod limits;
mod nifti_io;
mod output;
mod volume;

pub mod dicom;
mod filter;
pub mod rsna;

pub use crate::dicom::WrittenInstance;
pub use crate::dicom::{
    DicomSeries, DicomWriteOptions, ReadOptions, SeriesMeta, SeriesSummary, SliceEntry, SliceIndex, StoredType,
    TransferSyntaxChoice, read_stored_frames, write_enhanced, write_series,
};
pub use error::{AtPath, Error, FileError, Result};
pub use filter::gaussian_smooth;
pub use geometry::{Affine, AxisCode, GridSize, Voxel, VoxelIndex, WorldPoint};
pub use limits::Limits;
pub use nifti_io::{NiftiElement, header_affine, read_nifti, read_nifti_with_limits, write_nifti};
pub use output::{
    OUTPUT_MARKER, check_disjoint, check_writable_target, claim_output_dir, write_atomic, write_atomic_with,
};
pub use rsna::{
    ANEURYSM_PRESENT, DatasetIssue, Localizer, Location, MAX_VESSEL_LABEL, MappedLocalizer, Modality, Rejection,
    RsnaDataset, SegmentationFiles, SeriesLabels, VESSEL_LABELS, list_series_folders, parse_coordinates,
    read_localizers_csv, read_train_csv, read_vessel_labels, write_localizers_csv, write_train_csv,
};
pub use volume::Volume;

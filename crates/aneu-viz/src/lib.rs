//! # aneu-viz
//!
//! Pictures a radiologist can read, from aneu's volumes and predictions:
//!
//! * [`Scene`] reorients an image (and its probability map) to canonical
//!   RAS exactly, then cuts [`View`]s: axial, coronal and sagittal slices
//!   through any world point, whole-volume and slab MIPs, in
//!   [`Convention::Radiological`] or [`Convention::Neurological`] display,
//!   with their edges labelled (R/L, A/P, S/I);
//! * [`render`] draws a view with a grey [`Window`] (presets per
//!   modality, or automatic), the probability heatmap with a colour bar,
//!   ground-truth centres in green, candidates in cyan, and the focal cube
//!   in red (the seed viewer's conventions), to an `image::RgbImage`;
//! * [`write_series_report`] and [`write_dataset_report`] write
//!   self-contained HTML pages (images embedded; an offline slice viewer in
//!   plain JavaScript with sliders, an overlay toggle, and candidate rows
//!   that jump to their slices).
//!
//! ```
//! use aneu_io::{Affine, Volume, WorldPoint};
//! use aneu_viz::{Convention, Plane, RenderOptions, Scene, Window, render};
//! use ndarray::Array3;
//! // a bright voxel on the patient's right (+x in RAS)
//! let mut a = Array3::<f32>::zeros((20, 20, 20));
//! a[[10, 10, 15]] = 1.0;
//! let scene = Scene::new(&Volume::new(a, Affine::identity())?, None)?;
//! let view = scene.slice_at(Plane::Axial, WorldPoint::new(15.0, 10.0, 10.0), Convention::Radiological);
//! assert_eq!(view.labels, ['R', 'L', 'A', 'P']);
//! let (row, col, _) = view.project(WorldPoint::new(15.0, 10.0, 10.0));
//! assert!(col < 10.0); // the patient's right is on the screen's left
//! assert_eq!(view.pixels[[row as usize, col as usize]], 1.0);
//! let img = render(&view, &RenderOptions::new(Window { centre: 0.5, width: 1.0 }))?;
//! assert_eq!(img.width(), 40); // 20 mm at 2 pixels per mm
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod render;
mod report;
mod view;

pub use render::{Marker, RenderOptions, Window, colours, data_uri, heat, png_bytes, render, to_pixel};
pub use report::{
    DatasetRow, ReportOptions, ReportSummary, SeriesReport, report_dataset, write_dataset_report, write_series_report,
};
pub use view::{Convention, Plane, Scene, View};

use std::path::PathBuf;

/// Everything that can go wrong while rendering.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two volumes that must share a grid do not.
    #[error("grid: {0}")]
    Grid(String),
    /// A rendering option is invalid, or encoding failed.
    #[error("render: {0}")]
    Render(String),
    /// A file could not be written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An error from aneu-io.
    #[error(transparent)]
    Io(#[from] aneu_io::Error),
    /// An error from aneu-preproc (re-preprocessing a series for display).
    #[error(transparent)]
    Preproc(#[from] aneu_preproc::Error),
    /// An error from aneu-bundle (reading the prediction's model bundle).
    #[error(transparent)]
    Bundle(#[from] aneu_bundle::Error),
    /// An error from aneu-infer (reading predictions).
    #[error(transparent)]
    Infer(#[from] aneu_infer::Error),
}

impl From<aneu_io::FileError> for Error {
    fn from(e: aneu_io::FileError) -> Self {
        Error::File {
            path: e.path,
            source: e.source,
        }
    }
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! # aneu
//!
//! Intracranial aneurysm detection in 3D angiography, in Rust. This
//! umbrella crate re-exports the workspace crates under one name:
//!
//! * [`io`] — [`aneu_io`]: DICOM series (single-frame, Enhanced
//!   multi-frame, compressed) and NIfTI to volumes with exact RAS geometry,
//!   the RSNA dataset layout, and localizer mapping.
//! * [`phantom`] — [`aneu_phantom`]: synthetic CTA / TOF-MRA / T1post / T2
//!   head phantoms with a Circle of Willis, aneurysms and distractors,
//!   written as RSNA-layout datasets with ground truth.
//! * [`preproc`] — [`aneu_preproc`]: skull stripping, N4, normalisation,
//!   resampling with SimpleITK parity, and the restartable pipeline.
//! * [`patch`] — [`aneu_patch`]: patch sampling (jittered positives;
//!   uniform, vessel and hard negatives), sliding-window grids and
//!   label-consistent augmentation.
//! * [`models`] — [`aneu_models`]: the Burn networks (Simple3dCnn,
//!   TinyUNet3d, UNet3d with dense and location heads) and the 3D ops
//!   Burn lacks.
//! * [`metrics`] — [`aneu_metrics`]: classification, calibration, RSNA
//!   weighted AUC, FROC and localisation metrics, exact to scikit-learn.
//! * [`train`] — [`aneu_train`]: JSON training configs, patient-grouped
//!   splits, losses, schedules, early stopping, checkpoints and model
//!   bundles.
//! * [`infer`] — [`aneu_infer`]: sliding-window inference, candidates in
//!   mm and DICOM coordinates, the 14 RSNA outputs, calibration, TTA,
//!   ensembles and evaluation.
//! * [`viz`] — [`aneu_viz`]: orthogonal slices and MIPs with orientation
//!   labels, overlays, PNG output and self-contained HTML reports.
//!
//!
//! The umbrella crate's own module, [`benchmark`], composes them into the
//! detection benchmark: fresh phantoms, each bundle's predictions, and
//! every detection figure with its bootstrap interval.
//!
//! ```
//! use aneu::io::{Affine, Voxel};
//! let a = Affine::identity();
//! assert_eq!(a.voxel_to_world(Voxel::new(1.0, 2.0, 3.0)).z, 3.0);
//! ```

pub mod benchmark;

pub use aneu_bundle as bundle;
pub use aneu_infer as infer;
pub use aneu_io as io;
pub use aneu_metrics as metrics;
pub use aneu_models as models;
pub use aneu_patch as patch;
pub use aneu_phantom as phantom;
pub use aneu_preproc as preproc;
pub use aneu_train as train;
pub use aneu_viz as viz;

//! # aneu-infer
//!
//! Whole-scan inference for aneu's model bundles:
//!
//! 1. **Sliding window** ([`SlidingWindow`]): nnU-Net step placement,
//!    windows restricted to the mask, zero padding at the borders, and
//!    blending by max, mean or a Gaussian centre weight. Dense models give
//!    voxel maps; patch classifiers spread their score over the window's
//!    centre or the whole window.
//! 2. **Candidates** ([`find_peaks`]): local maxima above a floor, a
//!    sub-voxel centroid, and non-maximum suppression in mm. Each
//!    candidate gets the 13 location probabilities of the location head
//!    on a patch centred on it, its world point, and its position on the
//!    original DICOM grid as `(SOPInstanceUID, x, y)` ([`world_to_dicom`],
//!    the RSNA localizer in reverse).
//! 3. **Scan outputs** ([`ScanPrediction`]): `Aneurysm Present` by an
//!    [`Aggregator`] (max, mean, p95, top-k mean, noisy-or), each location
//!    from candidate score × location probability, and thresholds
//!    calibrated on the validation split ([`calibrate_on_validation`]).
//!    With a vessel head, each candidate also carries what it says about
//!    the neighbourhood ([`VesselFeatures`]: artery probability, distance
//!    to the artery wall, local artery radius), and a [`Rescorer`] fitted
//!    at calibration ([`fit_rescorer`]) can rescore the candidates from
//!    those features and the detector's scores.
//! 4. **TTA and ensembles** ([`Tta`], [`Predictor::new`] with several
//!    bundles): flips undone on the maps, left ↔ right swapped back on the
//!    locations, members averaged.
//! 5. **Datasets** ([`predict_dataset`], [`evaluate`]): resumable and
//!    shardable; `submission.csv` in the RSNA column order, a JSON file per
//!    series, optional probability maps, and the full
//!    [`aneu_metrics::EvaluationReport`].
//!
//! The sliding window is independent of Burn, so it can be checked with a
//! plain closure:
//!
//! ```
//! use aneu_infer::{Blend, SlidingWindow, WindowOutput};
//! use aneu_io::{Affine, Volume};
//! use aneu_patch::Case;
//! use ndarray::Array3;
//! let img = Volume::new(Array3::from_shape_fn((30, 30, 30), |(k, j, i)| (k * j + i) as f32), Affine::identity())?;
//! let case = Case::new("demo", img.clone(), img.map(|_| 1u8), vec![])?;
//! let window = SlidingWindow::default().with_blend(Blend::Mean).with_overlap(0.25);
//! let map = window.run(&case, 16, false, |batch| {
//!     Ok((0..batch.len()).map(|n| WindowOutput::Dense(batch.window(n, 0))).collect())
//! })?;
//! assert!(map.iter().zip(img.data().iter()).all(|(a, b)| (a - b).abs() <= 1e-3 * b.abs().max(1.0)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With a trained bundle (`aneu-bundle`; `aneu-train` writes them):
//!
//! ```no_run
//! use aneu_infer::{InferConfig, Predictor, Tta};
//! use burn::backend::Flex;
//! let config = InferConfig { tta: Some(Tta::FlipLr), ..Default::default() };
//! let predictor = Predictor::<Flex>::from_dirs(&["fold0/bundle", "fold1/bundle"], config, &Default::default())?;
//! let p = predictor.predict_dir("rsna/series/1.2.826.0.1")?;
//! for c in &p.scan.candidates {
//!     println!("{:.3} at {:?} mm, {:?} on {:?}", c.score, c.world, c.location, c.dicom);
//! }
//! # Ok::<(), aneu_infer::Error>(())
//! ```

mod calibrate;
mod candidates;
mod dataset;
mod error;
mod labeller;
mod locate;
mod predict;
mod rescore;
mod sides;
mod window;

pub use aneu_bundle::{Locator, Rescorer, Tta};
pub use calibrate::{
    LABELLER_VOXELS_PER_SERIES, Labelled, ThresholdMethod, calibrate_on_series, calibrate_on_validation,
    calibrate_thresholds, fit_artery_labeller, fit_locator, fit_rescorer,
};
pub use candidates::{CandidateOptions, Peak, find_peaks, plateau_centroid};
pub use dataset::{
    EvaluateOptions, PredictOptions, PredictSummary, RunInfo, SeriesFile, evaluate, predict_dataset, read_predictions,
};
pub use error::{Error, Result};
pub use labeller::{
    BACKGROUND, LABELLER_FEATURES, check_labeller, label_arteries, labeller_class, labeller_classes, labeller_features,
};
pub use locate::{
    LOCATOR_CLASSES, LOCATOR_FEATURES, check_locator, fit_softmax, locate, locator_class, locator_features,
};
pub use predict::{
    Aggregator, Detection, DicomPoint, InferConfig, Prediction, Predictor, ScanPrediction, TERRITORY_RADIUS, aggregate,
    scan_locations, territory, world_to_dicom,
};
pub use rescore::{
    FEATURE_NAMES, LOCAL_RADIUS_MM, RescorerOptions, VesselFeatures, candidate_features, check_rescorer, fit_logistic,
    logit,
};
pub use sides::{Midline, Sides, mask_centre};
pub use window::{Blend, SlidingWindow, Spread, WindowBatch, WindowOutput, window_input};

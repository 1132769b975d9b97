//! Whole datasets: resumable, shardable prediction to `submission.csv`
//! and per-series JSON, and evaluation against an RSNA-layout truth.
//!
//! ```text
//! out/
//!   run.json                 the inference config, bundles, thresholds and run hash
//!   submission.csv           SeriesInstanceUID, the 13 locations, Aneurysm Present
//!   errors.csv               SeriesInstanceUID, error (series that failed)
//!   <uid>.json               ScanPrediction: scores, candidates in mm and DICOM (SOP, x, y)
//!   <uid>_prob.nii.gz        the probability map (with prob_maps)
//!   <uid>_arteries.nii.gz    the artery label map, uint8 (with InferConfig::arteries and a vessel head)
//! ```
//! A shard `I/N` of several writes `submission-I-of-N.csv` and
//! `errors-I-of-N.csv`; [`evaluate`] reads every `<uid>.json`.

use aneu_io::AtPath;
use std::path::{Path, PathBuf};

use aneu_io::{DicomSeries, Modality, RsnaDataset};
use aneu_metrics::{
    BootstrapOptions, ClassificationReport, DetectionReport, EvaluationReport, FrocOptions, Lesion, RSNA_COLUMNS,
    RsnaTable, ScanDetections, rsna_weighted_auc,
};
use aneu_preproc::{Preprocessed, Shard, read_stored};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::format_err;
use crate::predict::{InferConfig, Predictor, ScanPrediction};
use crate::{Error, Result};

/// Options of [`predict_dataset`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PredictOptions {
    /// Also write `<uid>_prob.nii.gz`.
    pub prob_maps: bool,
    /// This shard only.
    pub shard: Shard,
    /// Only these series (all when `None`).
    pub series: Option<Vec<String>>,
    /// A folder written by `aneu_preproc::preprocess_dataset`: a series
    /// stored there (`<dir>/<uid>/`) with the bundles' config hash and the
    /// series' modality is read instead of preprocessed again. Its DICOM
    /// folder is still read, for the candidates' DICOM positions. The
    /// predictions are the same either way (only `seconds` differs).
    pub preprocessed: Option<PathBuf>,
}

/// What [`predict_dataset`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredictSummary {
    /// Series predicted in this call.
    pub done: usize,
    /// Series skipped because an identical run had predicted them.
    pub skipped: usize,
    /// Series that failed, or that the input names but that cannot be
    /// predicted (a malformed row, an entry that is not a folder); listed
    /// in `errors.csv`.
    pub failed: usize,
    /// Series listed (in `train.csv` or [`PredictOptions::series`])
    /// without a folder; listed in `errors.csv`.
    pub missing: usize,
    /// `(uid, error)` of each failed or missing series.
    pub errors: Vec<(String, String)>,
}

impl std::fmt::Display for PredictSummary {
    /// The one-line summary a prediction run ends with.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "done {}, skipped {}, failed {}, listed but missing {}",
            self.done, self.skipped, self.failed, self.missing
        )
    }
}

/// `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// [`Predictor::run_hash`].
    pub run_hash: String,
    /// The inference config.
    pub config: InferConfig,
    /// The bundle folders.
    pub bundles: Vec<PathBuf>,
    /// The thresholds.
    pub thresholds: aneu_bundle::Thresholds,
}

/// The per-series file: the prediction and the run that made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesFile {
    /// [`Predictor::run_hash`] of the run.
    pub run_hash: String,
    /// The prediction.
    #[serde(flatten)]
    pub prediction: ScanPrediction,
}

struct Input {
    key: String,
    dir: PathBuf,
    modality: Option<Modality>,
}

/// An input to predict, or why it cannot be (and whether it is missing).
type Named = std::result::Result<Input, (String, bool)>;

/// The series of `input`, and the inputs it names that cannot be
/// predicted (`(key, reason, listed but missing)`).
type Inputs = (Vec<Input>, Vec<(String, String, bool)>);

fn inputs(input: &Path) -> Result<Inputs> {
    let series_root = input.join("series");
    if input.join("train.csv").exists() {
        // labelled: the dataset's own accounting (rows, folders, links)
        let ds = RsnaDataset::open(input)?;
        let v = ds
            .series_uids()
            .map(|u| Input {
                key: u.to_string(),
                dir: ds.series_dir(u),
                modality: ds.labels(u).map(|l| l.modality),
            })
            .collect();
        let rejected = ds
            .rejections()
            .iter()
            .map(|r| {
                (
                    r.series_uid.clone().unwrap_or_default(),
                    r.issue.to_string(),
                    r.is_missing(),
                )
            })
            .collect();
        Ok((v, rejected))
    } else if series_root.is_dir() {
        let (folders, issues) = aneu_io::list_series_folders(&series_root)?;
        let v = folders
            .into_iter()
            .map(|(key, dir)| Input {
                key,
                dir,
                modality: None,
            })
            .collect();
        let rejected = issues
            .iter()
            .map(|i| {
                let key = match i {
                    aneu_io::DatasetIssue::NotASeriesFolder { path, .. } => path
                        .file_name()
                        .map_or(String::new(), |n| n.to_string_lossy().to_string()),
                    _ => i.series_uid().unwrap_or_default().to_string(),
                };
                (key, i.to_string(), false)
            })
            .collect();
        Ok((v, rejected))
    } else if input.exists() {
        let key = input
            .file_name()
            .map_or("series".into(), |n| n.to_string_lossy().to_string());
        Ok((
            vec![Input {
                key,
                dir: input.to_path_buf(),
                modality: None,
            }],
            Vec::new(),
        ))
    } else {
        Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"))
            .at(input)
            .map_err(Error::from)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(aneu_io::write_atomic(path, bytes)?)
}

/// Whether `out` looks like a [`predict_dataset`] output written before
/// output folders were marked: it holds a `run.json` that parses.
fn earlier_predict_output(out: &Path) -> bool {
    std::fs::read_to_string(out.join("run.json")).is_ok_and(|t| serde_json::from_str::<RunInfo>(&t).is_ok())
}

fn read_series_file(p: &Path) -> Result<SeriesFile> {
    let t = std::fs::read_to_string(p).at(p)?;
    serde_json::from_str(&t).map_err(|e| format_err(p, e))
}

/// Predicts every series of `input` (an RSNA-layout root with `series/`,
/// or one series folder) in this shard, writing the files listed in the
/// module docs. A series already predicted by an identical run (same
/// [`Predictor::run_hash`]) is skipped, so a killed run resumes; a series
/// that fails is listed in `errors.csv` and the others go on.
/// `progress(finished, total)` is called after each series.
///
/// Nothing is lost: every series folder (links followed), `train.csv`
/// row and series of [`PredictOptions::series`] is predicted or listed in
/// `errors.csv` with its reason (listed but missing, malformed row, not
/// a folder, failed). `out` may not overlap `input`, and must be new,
/// empty or an earlier prediction output.
///
/// # Errors
/// Only for the dataset as a whole: an unreadable `train.csv`, an input
/// that does not exist, an output folder that overlaps the input, holds
/// other files or cannot be written.
pub fn predict_dataset<B: Backend>(
    input: impl AsRef<Path>,
    predictor: &Predictor<B>,
    out: impl AsRef<Path>,
    opts: &PredictOptions,
    progress: &dyn Fn(usize, usize),
) -> Result<PredictSummary> {
    let out = out.as_ref();
    if opts.shard.count == 0 || opts.shard.index >= opts.shard.count {
        return Err(Error::InvalidConfig(format!(
            "shard {}/{} is out of range",
            opts.shard.index, opts.shard.count
        )));
    }
    let (all, rejected) = inputs(input.as_ref())?;
    aneu_io::check_disjoint(input.as_ref(), out)?;
    aneu_io::claim_output_dir(out, "predict", earlier_predict_output)?;
    let hash = predictor.run_hash()?;
    let run = RunInfo {
        run_hash: hash.clone(),
        config: predictor.config().clone(),
        bundles: predictor.bundles().map(|b| b.dir.clone()).collect(),
        thresholds: predictor.thresholds().clone(),
    };
    write_atomic(
        &out.join("run.json"),
        serde_json::to_string_pretty(&run).unwrap_or_default().as_bytes(),
    )?;
    // every named input, in key order, then this shard's share
    let mut named: Vec<(String, Named)> = all.into_iter().map(|i| (i.key.clone(), Ok(i))).collect();
    named.extend(
        rejected
            .into_iter()
            .map(|(k, reason, missing)| (k, Err((reason, missing)))),
    );
    if let Some(wanted) = &opts.series {
        named.retain(|(k, _)| wanted.contains(k));
        for w in wanted {
            if !named.iter().any(|(k, _)| k == w) {
                named.push((
                    w.clone(),
                    Err(("listed but missing: no such series in the input".into(), true)),
                ));
            }
        }
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut mine = Vec::new();
    let mut summary = PredictSummary::default();
    for (n, (key, entry)) in named.into_iter().enumerate() {
        if n % opts.shard.count != opts.shard.index {
            continue;
        }
        match entry {
            Ok(i) => mine.push(i),
            Err((reason, missing)) => {
                if missing {
                    summary.missing += 1;
                } else {
                    summary.failed += 1;
                }
                summary.errors.push((key, reason));
            }
        }
    }
    let total = mine.len();
    let mut rows: Vec<ScanPrediction> = Vec::new();
    for (n, inp) in mine.iter().enumerate() {
        let json = out.join(format!("{}.json", inp.key));
        let prior = json.exists().then(|| read_series_file(&json).ok()).flatten();
        let map_ok = (!opts.prob_maps || out.join(format!("{}_prob.nii.gz", inp.key)).exists())
            && (!predictor.makes_arteries() || out.join(format!("{}_arteries.nii.gz", inp.key)).exists());
        match prior {
            Some(f) if f.run_hash == hash && map_ok => {
                summary.skipped += 1;
                rows.push(f.prediction);
            }
            _ => match predict_one(predictor, inp, out, opts, &hash) {
                Ok(p) => {
                    summary.done += 1;
                    rows.push(p);
                }
                Err(e) => {
                    tracing::warn!(series = %inp.key, error = %e, "prediction failed");
                    summary.failed += 1;
                    summary.errors.push((inp.key.clone(), e.to_string()));
                }
            },
        }
        progress(n + 1, total);
    }
    let suffix = if opts.shard.count > 1 {
        format!("-{}-of-{}", opts.shard.index, opts.shard.count)
    } else {
        String::new()
    };
    let sub = out.join(format!("submission{suffix}.csv"));
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |p: &Path, e: csv::Error| format_err(p, e);
    let mut header = vec!["SeriesInstanceUID".to_string()];
    header.extend(RSNA_COLUMNS.iter().map(|s| s.to_string()));
    w.write_record(&header).map_err(|e| csv_err(&sub, e))?;
    for r in &rows {
        let mut rec = vec![r.series_uid.clone()];
        rec.extend(r.rsna_row().iter().map(|v| format!("{v:.6}")));
        w.write_record(&rec).map_err(|e| csv_err(&sub, e))?;
    }
    let bytes = w.into_inner().map_err(|e| format_err(&sub, e))?;
    write_atomic(&sub, &bytes)?;
    let ep = out.join(format!("errors{suffix}.csv"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["SeriesInstanceUID", "error"])
        .map_err(|e| csv_err(&ep, e))?;
    for (u, e) in &summary.errors {
        w.write_record([u, e]).map_err(|e| csv_err(&ep, e))?;
    }
    let bytes = w.into_inner().map_err(|e| format_err(&ep, e))?;
    write_atomic(&ep, &bytes)?;
    Ok(summary)
}

fn predict_one<B: Backend>(
    predictor: &Predictor<B>,
    inp: &Input,
    out: &Path,
    opts: &PredictOptions,
    hash: &str,
) -> Result<ScanPrediction> {
    let wrap = |e: Error| Error::Series {
        series: inp.key.clone(),
        source: Box::new(e),
    };
    let series = DicomSeries::read(&inp.dir).map_err(|e| wrap(e.into()))?;
    let t0 = std::time::Instant::now();
    let modality = inp.modality.unwrap_or_else(|| Modality::guess(&series.meta));
    let p = match stored_series(opts, &inp.key, predictor, modality) {
        Some(pre) => {
            let mut p = predictor.predict_preprocessed(pre, Some(&series)).map_err(wrap)?;
            p.scan.seconds = t0.elapsed().as_secs_f64();
            p
        }
        None => predictor.predict_series(&series, Some(modality)).map_err(wrap)?,
    };
    if opts.prob_maps {
        aneu_io::write_nifti(&p.probability, out.join(format!("{}_prob.nii.gz", inp.key)))
            .map_err(|e| wrap(e.into()))?;
    }
    if let Some(a) = &p.arteries {
        aneu_io::write_nifti(a, out.join(format!("{}_arteries.nii.gz", inp.key))).map_err(|e| wrap(e.into()))?;
    }
    let mut scan = p.scan;
    // the file is named by the folder; the UID inside is the series' own
    if scan.series_uid.is_empty() {
        scan.series_uid.clone_from(&inp.key);
    }
    let f = SeriesFile {
        run_hash: hash.to_string(),
        prediction: scan,
    };
    let json = serde_json::to_string_pretty(&f).map_err(|e| format_err(&out.join(&inp.key), e))?;
    write_atomic(&out.join(format!("{}.json", inp.key)), json.as_bytes())?;
    Ok(f.prediction)
}

/// The series `key` from [`PredictOptions::preprocessed`], when it is
/// stored there with the predictor's config hash and `modality`
/// ([`read_stored`]).
fn stored_series<B: Backend>(
    opts: &PredictOptions,
    key: &str,
    predictor: &Predictor<B>,
    modality: Modality,
) -> Option<Preprocessed> {
    let dir = opts.preprocessed.as_ref()?;
    let stored = predictor
        .preprocess_config()
        .hash()
        .and_then(|hash| read_stored(dir, key, &hash, modality));
    match stored {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(series = %key, error = %e, "unreadable preprocessed series: preprocessing again");
            None
        }
    }
}

/// Reads every `<uid>.json` that [`predict_dataset`] wrote in `dir`.
///
/// # Errors
/// [`Error::File`] or [`Error::Format`] naming the file.
pub fn read_predictions(dir: impl AsRef<Path>) -> Result<Vec<ScanPrediction>> {
    let dir = dir.as_ref();
    let rd = std::fs::read_dir(dir).at(dir)?;
    let mut files: Vec<PathBuf> = Vec::new();
    for e in rd {
        let p = e.at(dir)?.path();
        let name = p.file_name().map_or(String::new(), |n| n.to_string_lossy().to_string());
        if name.ends_with(".json") && name != "run.json" && !name.starts_with('.') {
            files.push(p);
        }
    }
    files.sort();
    files
        .iter()
        .map(|p| read_series_file(p).map(|f| f.prediction))
        .collect()
}

/// Options of [`evaluate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvaluateOptions {
    /// The FROC hit rule. RSNA localizers are points without a radius, so
    /// the default counts a candidate within 10 mm of one as a hit.
    pub froc: FrocOptions,
    /// Bootstrap intervals of the AUC and of the sensitivity at 1 FP per
    /// scan, when set.
    pub bootstrap: Option<BootstrapOptions>,
}

impl Default for EvaluateOptions {
    fn default() -> Self {
        Self {
            froc: FrocOptions::default().with_min_hit_distance_mm(10.0),
            bootstrap: None,
        }
    }
}

/// Scores the predictions in `predictions` (a [`predict_dataset`] output)
/// against the labels and localizers of the RSNA-layout `truth`: the
/// scan-level report at the predictions' threshold, the RSNA weighted AUC,
/// and FROC with localisation errors (truth points are mapped through
/// their DICOM series, which are read for the positive scans).
/// Predicted series without a label row, and localizers that do not map
/// onto their series, are left out of the figures and listed in
/// [`EvaluationReport::left_out`].
///
/// # Errors
/// Reading errors; [`Error::InvalidConfig`] when no predicted series has
/// a label; metric errors (one class only, say).
pub fn evaluate(
    predictions: impl AsRef<Path>,
    truth: impl AsRef<Path>,
    opts: &EvaluateOptions,
) -> Result<EvaluationReport> {
    let preds = read_predictions(predictions)?;
    let ds = RsnaDataset::open(truth)?;
    let mut outcomes = Vec::new();
    let mut left_out = Vec::new();
    let mut threshold = 0.5;
    for p in &preds {
        let Some(l) = ds.labels(&p.series_uid) else {
            left_out.push(format!(
                "series {}: predicted, but the truth has no label for it",
                p.series_uid
            ));
            continue;
        };
        threshold = p.threshold;
        let mut lesions = Vec::new();
        if !ds.localizers(&p.series_uid).is_empty() {
            let s = ds.read_series(&p.series_uid).map_err(|e| Error::Series {
                series: p.series_uid.clone(),
                source: Box::new(e.into()),
            })?;
            for m in ds.map_localizers(&s) {
                match m {
                    Ok(m) => lesions.push(Lesion {
                        centre: m.world.to_array(),
                        radius_mm: 0.0,
                    }),
                    Err(e) => left_out.push(format!("series {}: a localizer that does not map: {e}", p.series_uid)),
                }
            }
        }
        outcomes.push((p, p.outcome(l, lesions)));
    }
    if outcomes.is_empty() {
        return Err(Error::InvalidConfig(
            "no predicted series has a label in the truth".into(),
        ));
    }
    let labels: Vec<f64> = outcomes.iter().map(|(_, o)| f64::from(u8::from(o.present))).collect();
    let scores: Vec<f64> = outcomes.iter().map(|(_, o)| o.score).collect();
    let (mut t_table, mut p_table) = (RsnaTable::new(), RsnaTable::new());
    for (p, o) in &outcomes {
        t_table.insert(p.series_uid.clone(), o.truth_row());
        p_table.insert(p.series_uid.clone(), o.predicted_row());
    }
    let scans: Vec<ScanDetections> = outcomes.into_iter().map(|(_, o)| o.detections).collect();
    let scan = ClassificationReport::compute(&labels, &scores, threshold, opts.bootstrap.as_ref())?;
    let detection = if scans.iter().any(|s| !s.lesions.is_empty()) {
        Some(DetectionReport::compute(
            &scans,
            &opts.froc,
            opts.bootstrap.as_ref().map(|b| (1.0, b)),
        )?)
    } else {
        None
    };
    let rsna = rsna_weighted_auc(&t_table, &p_table).ok();
    Ok(EvaluationReport {
        patch: None,
        scan: Some(scan),
        detection,
        rsna,
        left_out,
    })
}

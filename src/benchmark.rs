//! The detection benchmark: the yardstick that every claim about detection
//! quality cites.
//!
//! [`run_benchmark`] generates a fresh evaluation set of phantoms per
//! modality (their seeds are written into the output and nothing in aneu
//! trains on them), runs each model bundle over it from DICOM
//! (preprocessing with the bundle's own config, sliding windows,
//! candidates) and scores the predictions against the phantoms' ground
//! truth: scan AUC, RSNA weighted AUC, mean location AUC, FROC sensitivity
//! at 0.125–8 false positives per scan (the ADAM hit rule with the
//! aneurysms' true radii) and the median localisation error, each with a
//! 95 % bootstrap interval over scans, per modality and over all
//! modalities ([`aneu_metrics::BenchmarkFigures`]). A bundle with a vessel
//! head also writes its artery label map per series
//! ([`aneu_infer::InferConfig::arteries`], which the benchmark turns on),
//! scored against the phantoms' vessel segmentations
//! (`segmentations/<uid>/<uid>_cowseg.nii.gz`, put on the prediction's
//! grid by nearest neighbour in world space): the artery Dice (the mean
//! over the arteries each scan holds) and the vessel Dice (any artery
//! against background). Such a bundle's series whose map or segmentation
//! is missing stop the run with [`BenchmarkError::Unscored`], naming the
//! series: no series leaves the Dice figures unsaid.
//!
//! Every step resumes: the phantoms are generated once, each bundle's
//! predictions are [`aneu_infer::predict_dataset`]'s, which skips the
//! series it has predicted, and the report is rewritten after each model.
//!
//! ```text
//! <out>/benchmark.json               the config, the phantom seeds, every figure
//! <out>/benchmark.md                 the same as Markdown tables
//! <out>/phantoms/<MODALITY>/         the evaluation set (RSNA layout + ground_truth/; MRA, CTA, MRI_T2, MRI_T1post)
//! <out>/predictions/<label>/<MODALITY>/  each bundle's predict_dataset output (with <uid>_arteries.nii.gz)
//! ```
//!
//! Use it through the example:
//!
//! ```sh
//! cargo run --release --example benchmark_detection -- --bundle models/NAME --out bench [--n 120] [--modality MRA,CTA]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aneu_infer::{InferConfig, PredictOptions, Predictor, predict_dataset, read_predictions};
use aneu_io::{AtPath, Modality, RsnaDataset};
use aneu_metrics::{
    BenchmarkFigures, BootstrapOptions, FrocOptions, Interval, LabelOverlap, Lesion, PairedDifference, ScanOutcome,
    SizeBin, SizeSensitivity,
};
use aneu_phantom::{AppearanceRange, PhantomConfig, SizePreset, generate, read_truth};
use burn::prelude::Backend;
use serde::{Deserialize, Serialize};

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchmarkError {
    /// Generating the phantoms failed.
    #[error("generating the phantoms: {0}")]
    Phantom(#[from] aneu_phantom::Error),
    /// Reading the dataset or writing the report failed.
    #[error(transparent)]
    Io(#[from] aneu_io::Error),
    /// A file or folder of the output could not be read or written.
    #[error(transparent)]
    File(#[from] aneu_io::FileError),
    /// Loading a bundle or predicting failed (a whole run, not one series:
    /// series that fail are listed in the report).
    #[error(transparent)]
    Infer(#[from] aneu_infer::Error),
    /// A JSON file of the benchmark could not be read or written.
    #[error(transparent)]
    Json(#[from] aneu_bundle::Error),
    /// The figures could not be computed.
    #[error("scoring: {0}")]
    Metrics(#[from] aneu_metrics::Error),
    /// A series' reference vessel labels could not be put on its
    /// prediction's grid.
    #[error("series {series}: scoring the artery map: {source}")]
    Arteries {
        /// The series.
        series: String,
        /// Why.
        source: Box<aneu_preproc::Error>,
    },
    /// A series lacks what its artery map is scored with: the map itself
    /// (the bundle has a vessel head, so inference must have written it)
    /// or the phantom's reference segmentation.
    #[error("series {series}: the artery map cannot be scored: {reason}")]
    Unscored {
        /// The series.
        series: String,
        /// What is missing.
        reason: String,
    },
    /// The config is invalid, or the output folder holds a benchmark made
    /// with another config.
    #[error("{0}")]
    Config(String),
}

/// `Result` with [`BenchmarkError`].
pub type BenchmarkResult<T> = std::result::Result<T, BenchmarkError>;

/// What the benchmark evaluates on and how it scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BenchmarkConfig {
    /// Phantoms per modality.
    pub n: usize,
    /// The benchmark's seed; modality `m` uses the phantom seed
    /// [`BenchmarkConfig::phantom_seed`]. Keep it out of every training
    /// set: the default, 9 000 001, is used by nothing else in aneu.
    pub seed: u64,
    /// The modalities, each its own phantom set.
    pub modalities: Vec<Modality>,
    /// The phantoms' grid.
    pub size: SizePreset,
    /// The share of phantoms with aneurysms.
    pub positive_rate: f64,
    /// The phantoms' appearance ranges: [`AppearanceRange::Outside`]
    /// tests a model on contrast, noise and blur beyond its training
    /// phantoms', on the same anatomy as the standard set of the same
    /// seed (so [`BenchmarkConfig::phantom_seed`] is shared).
    pub appearance: AppearanceRange,
    /// How the bundles are run. [`run_benchmark`] sets
    /// [`InferConfig::arteries`], so that bundles with a vessel head make
    /// the artery maps it scores.
    pub infer: InferConfig,
    /// The hit rule (an aneurysm is hit by a candidate within
    /// `max(radius, min_hit_distance_mm)` of its centre) and the FP rates.
    pub froc: FrocOptions,
    /// The intervals.
    pub bootstrap: BootstrapOptions,
}

impl Default for BenchmarkConfig {
    fn default() -> Self {
        Self {
            n: 120,
            seed: 9_000_001,
            modalities: vec![Modality::Mra, Modality::Cta],
            size: SizePreset::Small,
            positive_rate: 0.5,
            appearance: AppearanceRange::Standard,
            infer: InferConfig::default(),
            froc: FrocOptions::default(),
            bootstrap: BootstrapOptions::default(),
        }
    }
}

impl BenchmarkConfig {
    /// The phantom seed of `modality`: the benchmark's seed plus the
    /// modality's position in [`Modality::ALL`] times 1 000 003, so that
    /// each modality's set is its own and adding a modality changes no
    /// other set.
    pub fn phantom_seed(&self, modality: Modality) -> u64 {
        let k = Modality::ALL.iter().position(|&m| m == modality).unwrap_or(0) as u64;
        self.seed.wrapping_add(k * 1_000_003)
    }

    /// The phantom config of `modality`.
    pub fn phantoms(&self, modality: Modality) -> PhantomConfig {
        PhantomConfig::new(self.n, self.phantom_seed(modality), self.size)
            .with_positive_rate(self.positive_rate)
            .with_modalities(&[modality])
            .with_appearance(self.appearance)
    }

    /// Checks the options.
    ///
    /// # Errors
    /// [`BenchmarkError::Config`] naming the bad option.
    pub fn validate(&self) -> BenchmarkResult<()> {
        if self.n < 2 {
            return Err(BenchmarkError::Config(format!("n = {}: at least 2 phantoms", self.n)));
        }
        if self.modalities.is_empty() {
            return Err(BenchmarkError::Config("no modality".into()));
        }
        if !(self.positive_rate > 0.0 && self.positive_rate < 1.0) {
            return Err(BenchmarkError::Config(format!(
                "positive_rate = {}: both classes are needed",
                self.positive_rate
            )));
        }
        self.infer.validate()?;
        Ok(())
    }
}

/// One row of a model's results: one modality, or all of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkRow {
    /// The modality; `None` for all modalities together.
    pub modality: Option<Modality>,
    /// The figures with their intervals.
    pub figures: BenchmarkFigures,
}

/// One row of a bundle's comparison with the first bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedRow {
    /// The modality; `None` for all modalities together.
    pub modality: Option<Modality>,
    /// This bundle's figures minus the first bundle's, on the scans both
    /// predicted, with paired intervals.
    pub difference: PairedDifference,
}

/// One bundle's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    /// The bundle folder, as given.
    pub bundle: PathBuf,
    /// Its name in the report and under `predictions/`.
    pub label: String,
    /// One row per modality, then all modalities (when more than one).
    pub rows: Vec<BenchmarkRow>,
    /// Series that could not be predicted, with the reason; they are not in
    /// the figures.
    pub failed: Vec<(String, String)>,
    /// Mean seconds per series (DICOM to prediction, preprocessing
    /// included), over the series predicted in this run; `None` when every
    /// series had been predicted before.
    pub seconds_per_series: Option<f64>,
    /// Against the first bundle, scan by scan: one row per modality, then
    /// all modalities (when more than one); empty for the first bundle.
    #[serde(default)]
    pub versus_first: Vec<PairedRow>,
}

/// The benchmark's report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkReport {
    /// The config it ran with.
    pub config: BenchmarkConfig,
    /// Each modality's phantom seed (never train on these).
    pub phantom_seeds: Vec<(Modality, u64)>,
    /// One result per bundle, in the order given.
    pub models: Vec<ModelResult>,
}

fn cell(i: Option<Interval>, digits: usize) -> String {
    match i {
        Some(i) => format!("{:.d$} [{:.d$}, {:.d$}]", i.estimate, i.low, i.high, d = digits),
        None => "—".into(),
    }
}

/// A difference with its interval, signed.
fn signed_cell(i: Option<Interval>, digits: usize) -> String {
    match i {
        Some(i) => format!("{:+.d$} [{:+.d$}, {:+.d$}]", i.estimate, i.low, i.high, d = digits),
        None => "—".into(),
    }
}

/// A size bin as a table cell: "under 3 mm", "3–5 mm", "7 mm or more".
fn size_bin_name(b: &SizeBin) -> String {
    match (b.min_diameter_mm, b.max_diameter_mm) {
        (lo, Some(hi)) if lo <= 0.0 => format!("under {hi} mm"),
        (lo, Some(hi)) => format!("{lo}–{hi} mm"),
        (lo, None) => format!("{lo} mm or more"),
    }
}

/// The rows of a by-size table: each bin, its aneurysms, and `cell` of
/// its sensitivity (or difference) at 0.5, 1 and 2 false positives per
/// scan.
fn size_rows(bins: &[SizeSensitivity], cell: fn(Option<Interval>, usize) -> String) -> String {
    bins.iter()
        .map(|b| {
            format!(
                "| {} | {} | {} | {} | {} |\n",
                size_bin_name(&b.bin),
                b.aneurysms,
                cell(b.sensitivity(0.5), 2),
                cell(b.sensitivity(1.0), 2),
                cell(b.sensitivity(2.0), 2),
            )
        })
        .collect()
}

impl BenchmarkReport {
    /// The report as Markdown: the set, then one table per bundle.
    pub fn to_markdown(&self) -> String {
        let c = &self.config;
        let mut s = format!(
            "# Detection benchmark\n\n{} `{:?}` phantoms per modality ({} appearance, positive rate {}), seeds {}; \
             {} % bootstrap intervals over scans ({} resamples, seed {}); a candidate hits an aneurysm \
             within max(radius, {} mm) of its centre.\n",
            c.n,
            c.size,
            c.appearance,
            c.positive_rate,
            self.phantom_seeds
                .iter()
                .map(|(m, s)| format!("{} {s}", m.name()))
                .collect::<Vec<_>>()
                .join(", "),
            c.bootstrap.confidence * 100.0,
            c.bootstrap.resamples,
            c.bootstrap.seed,
            c.froc.min_hit_distance_mm,
        );
        for m in &self.models {
            s += &format!("\n## {} (`{}`)\n\n", m.label, m.bundle.display());
            s += "| modality | scans (positive) | aneurysms | scan AUC | RSNA weighted AUC | mean location AUC | \
                  sensitivity at 0.5 FP/scan | at 1 | at 2 | median localisation error (mm) |\n";
            s += "|---|---|---|---|---|---|---|---|---|---|\n";
            for r in &m.rows {
                let f = &r.figures;
                s += &format!(
                    "| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    r.modality.map_or("all", Modality::name),
                    f.scans,
                    f.positives,
                    f.aneurysms,
                    cell(f.scan_auc, 3),
                    cell(f.rsna_weighted_auc, 3),
                    cell(f.mean_location_auc, 3),
                    cell(f.sensitivity(0.5), 2),
                    cell(f.sensitivity(1.0), 2),
                    cell(f.sensitivity(2.0), 2),
                    cell(f.median_localisation_error_mm, 2),
                );
            }
            if let Some(all) = m.rows.last().filter(|r| !r.figures.by_size.is_empty()) {
                s += "\nBy aneurysm size (all scans; each size's aneurysms at the whole model's false-positive \
                      rates):\n\n| dome diameter | aneurysms | sensitivity at 0.5 FP/scan | at 1 | at 2 |\n|---|---|---|---|---|\n";
                s += &size_rows(&all.figures.by_size, cell);
            }
            if m.rows.iter().any(|r| r.figures.segmented > 0) {
                s += "\n| modality | scans segmented | artery Dice (mean over the arteries a scan holds) | \
                      vessel Dice (any artery against background) |\n|---|---|---|---|\n";
                for r in &m.rows {
                    let f = &r.figures;
                    s += &format!(
                        "| {} | {} | {} | {} |\n",
                        r.modality.map_or("all", Modality::name),
                        f.segmented,
                        cell(f.artery_dice, 3),
                        cell(f.vessel_dice, 3),
                    );
                }
                if let Some(all) = m.rows.last().filter(|r| !r.figures.dice_by_label.is_empty()) {
                    s += "\n| artery | scans holding it | Dice | its voxels: named right | its other side | \
                          another artery | missed |\n|---|---|---|---|---|---|---|\n";
                    for l in &all.figures.dice_by_label {
                        let artery = aneu_io::Location::from_vessel_label(l.label);
                        let name = artery.map_or_else(|| format!("label {}", l.label), |a| a.name().to_string());
                        let shares = all
                            .figures
                            .confusion
                            .get(&l.label)
                            .map(|row| VoxelShares::of(l.label, artery, row));
                        s += &format!(
                            "| {name} | {} | {} | {} |\n",
                            l.scans,
                            cell(l.dice, 3),
                            shares.map_or_else(|| "— | — | — | —".into(), |v| v.cells())
                        );
                    }
                }
            }
            if let (false, Some(first)) = (m.versus_first.is_empty(), self.models.first()) {
                s += &format!(
                    "\nAgainst `{}` on the same scans (this model minus that one; paired bootstrap: an \
                     interval that excludes 0 is a difference):\n\n",
                    first.label
                );
                s += "| modality | scans | Δ scan AUC | Δ mean location AUC | Δ sensitivity at 0.5 FP/scan | at 1 | \
                      at 2 | Δ artery Dice |\n";
                s += "|---|---|---|---|---|---|---|---|\n";
                for r in &m.versus_first {
                    let d = &r.difference;
                    s += &format!(
                        "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                        r.modality.map_or("all", Modality::name),
                        d.scans,
                        signed_cell(d.scan_auc, 3),
                        signed_cell(d.mean_location_auc, 3),
                        signed_cell(d.sensitivity(0.5), 2),
                        signed_cell(d.sensitivity(1.0), 2),
                        signed_cell(d.sensitivity(2.0), 2),
                        signed_cell(d.artery_dice, 3),
                    );
                }
            }
            if let Some(all) = m.versus_first.last().filter(|r| !r.difference.by_size.is_empty()) {
                s += "\n| dome diameter (all scans) | aneurysms | Δ sensitivity at 0.5 FP/scan | at 1 | at 2 |\n\
                      |---|---|---|---|---|\n";
                s += &size_rows(&all.difference.by_size, signed_cell);
            }
            if let Some(t) = m.seconds_per_series {
                s += &format!("\n{t:.1} s per series (DICOM to prediction).\n");
            }
            if !m.failed.is_empty() {
                s += &format!("\n{} series failed and are not scored:\n\n", m.failed.len());
                for (u, e) in &m.failed {
                    s += &format!("* `{u}`: {e}\n");
                }
            }
        }
        s
    }

    fn write(&self, out: &Path) -> BenchmarkResult<()> {
        aneu_bundle::write_json(&out.join("benchmark.json"), self)?;
        aneu_io::write_atomic(&out.join("benchmark.md"), self.to_markdown().as_bytes())?;
        Ok(())
    }
}

/// A stage of [`run_benchmark`], for progress display.
#[derive(Clone, Debug, PartialEq)]
pub enum BenchmarkProgress {
    /// Generating the phantoms of a modality (nothing to do when they are
    /// there).
    Phantoms(Modality),
    /// Predicting: bundle label, modality, series done, series in all.
    Predict(String, Modality, usize, usize),
    /// Scoring a bundle.
    Score(String),
}

/// A modality's folder name (`MRA`, `CTA`, `MRI_T2`, `MRI_T1post`).
fn folder(m: Modality) -> String {
    m.name().replace(' ', "_")
}

/// The bundles' labels: their folder names, made unique.
fn labels(bundles: &[PathBuf]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (n, b) in bundles.iter().enumerate() {
        let name = b
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty() && s != "." && s != "..")
            .unwrap_or_else(|| "bundle".into());
        let unique = if out.contains(&name) {
            format!("{name}-{n}")
        } else {
            name
        };
        out.push(unique);
    }
    out
}

/// Generates the phantoms of every modality, once. A folder made with
/// another config is refused, never reused or overwritten.
fn ensure_phantoms(config: &BenchmarkConfig, out: &Path, progress: &dyn Fn(BenchmarkProgress)) -> BenchmarkResult<()> {
    let stamp = out.join("benchmark-config.json");
    match std::fs::metadata(&stamp) {
        Ok(_) => {
            let old: BenchmarkConfig = aneu_bundle::read_json(&stamp)?;
            if (old.n, old.seed, old.size, old.positive_rate, old.appearance)
                != (
                    config.n,
                    config.seed,
                    config.size,
                    config.positive_rate,
                    config.appearance,
                )
            {
                return Err(BenchmarkError::Config(format!(
                    "{} holds a benchmark of {} {:?} phantoms from seed {} (positive rate {}, {} appearance); \
                     use another --out for another set",
                    out.display(),
                    old.n,
                    old.size,
                    old.seed,
                    old.positive_rate,
                    old.appearance
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if out.exists() && std::fs::read_dir(out).at(out)?.next().is_some() {
                return Err(BenchmarkError::Config(format!(
                    "{} is not empty and holds no benchmark: refusing to write into it",
                    out.display()
                )));
            }
            std::fs::create_dir_all(out).at(out)?;
            aneu_bundle::write_json(&stamp, config)?;
        }
        Err(source) => return Err(aneu_io::FileError { path: stamp, source }.into()),
    }
    for &m in &config.modalities {
        let root = out.join("phantoms").join(folder(m));
        progress(BenchmarkProgress::Phantoms(m));
        if !root.join("train.csv").exists() {
            generate(&config.phantoms(m), &root)?;
        }
    }
    Ok(())
}

/// Scores one modality's predictions (`predictions` holds them, with
/// their artery maps when `arteries`) against the phantoms' ground truth.
/// Every labelled series is scored or listed in `failed`.
fn outcomes(
    root: &Path,
    predictions: &Path,
    failed: &[(String, String)],
    arteries: bool,
) -> BenchmarkResult<Vec<(String, ScanOutcome)>> {
    let preds = read_predictions(predictions)?;
    let ds = RsnaDataset::open(root)?;
    let mut scored = Vec::with_capacity(preds.len());
    for p in &preds {
        let labels = ds.labels(&p.series_uid).ok_or_else(|| {
            BenchmarkError::Config(format!(
                "a prediction for {} that the phantoms do not hold",
                p.series_uid
            ))
        })?;
        let truth = read_truth(root, &p.series_uid)?;
        let aneurysms = truth
            .aneurysms
            .iter()
            .map(|a| Lesion {
                centre: a.centre_world.to_array(),
                radius_mm: a.radius_mm,
            })
            .collect();
        let mut outcome = p.outcome(labels, aneurysms);
        if arteries {
            outcome.arteries = Some(artery_overlap(&ds, &p.series_uid, predictions)?);
        }
        scored.push((p.series_uid.clone(), outcome));
    }
    let labelled = ds.all_labels().count();
    if preds.len() + failed.len() != labelled {
        return Err(BenchmarkError::Config(format!(
            "{}: {} series, but {} predicted and {} failed",
            root.display(),
            labelled,
            preds.len(),
            failed.len()
        )));
    }
    Ok(scored)
}

/// Where a reference artery's voxels went in the predicted map, as
/// fractions of them.
struct VoxelShares {
    right: f64,
    other_side: Option<f64>,
    other_artery: f64,
    missed: f64,
}

impl VoxelShares {
    /// From `label`'s row of the confusion matrix; `artery` names its
    /// other side (none for midline arteries and unknown labels).
    fn of(label: u8, artery: Option<aneu_io::Location>, row: &BTreeMap<u8, u64>) -> Self {
        let twin = artery.map(aneu_io::Location::mirrored).filter(|&t| Some(t) != artery);
        let twin = twin.map(aneu_io::Location::vessel_label);
        let total = row.values().sum::<u64>().max(1) as f64;
        let share = |keep: &dyn Fn(u8) -> bool| {
            row.iter().filter(|(p, _)| keep(**p)).map(|(_, n)| *n).sum::<u64>() as f64 / total
        };
        VoxelShares {
            right: share(&|p| p == label),
            other_side: twin.map(|t| share(&|p| p == t)),
            other_artery: share(&|p| p != 0 && p != label && Some(p) != twin),
            missed: share(&|p| p == 0),
        }
    }

    /// Four Markdown table cells, in percent.
    fn cells(&self) -> String {
        let pct = |v: f64| format!("{:.0} %", 100.0 * v);
        format!(
            "{} | {} | {} | {}",
            pct(self.right),
            self.other_side.map_or_else(|| "—".into(), pct),
            pct(self.other_artery),
            pct(self.missed)
        )
    }
}

/// The artery map that [`predict_dataset`] wrote for `uid` in `dir`
/// against the series' reference vessel labels, on the map's grid.
///
/// # Errors
/// [`BenchmarkError::Unscored`] when either is missing.
fn artery_overlap(ds: &RsnaDataset, uid: &str, dir: &Path) -> BenchmarkResult<LabelOverlap> {
    let unscored = |reason: String| BenchmarkError::Unscored {
        series: uid.to_string(),
        reason,
    };
    let path = dir.join(format!("{uid}_arteries.nii.gz"));
    if !path.exists() {
        return Err(unscored(format!("{} is missing", path.display())));
    }
    let Some(truth) = ds.read_vessel_labels(uid)? else {
        return Err(unscored("the phantoms hold no vessel segmentation of it".into()));
    };
    let predicted = aneu_io::read_nifti(&path)?.map(|&v| v as u8);
    let truth = aneu_preproc::labels_on_grid(&truth, predicted.affine(), predicted.size()).map_err(|source| {
        BenchmarkError::Arteries {
            series: uid.to_string(),
            source: Box::new(source),
        }
    })?;
    Ok(LabelOverlap::of(truth.as_slice(), predicted.as_slice())?)
}

/// The scored scans of one row: its modality (`None` for all of them) and
/// each series' UID with its outcome.
type ScoredSet = (Option<Modality>, Vec<(String, ScanOutcome)>);

/// A bundle's sets of outcomes against the first bundle's, set by set,
/// on the series that both predicted.
fn paired_rows(first: &[ScoredSet], sets: &[ScoredSet], config: &BenchmarkConfig) -> BenchmarkResult<Vec<PairedRow>> {
    let mut rows = Vec::new();
    for ((modality, a), (_, b)) in first.iter().zip(sets) {
        let theirs: std::collections::HashMap<&str, &ScanOutcome> = a.iter().map(|(u, o)| (u.as_str(), o)).collect();
        let (mut xa, mut xb) = (Vec::new(), Vec::new());
        for (uid, o) in b {
            if let Some(t) = theirs.get(uid.as_str()) {
                xa.push((*t).clone());
                xb.push(o.clone());
            }
        }
        if xa.is_empty() {
            continue;
        }
        rows.push(PairedRow {
            modality: *modality,
            difference: PairedDifference::compute(&xa, &xb, &config.froc, &config.bootstrap)?,
        });
    }
    Ok(rows)
}

/// Runs the benchmark of `bundles` into `out` (see the module's
/// documentation), resuming what an earlier run with the same config left.
///
/// # Errors
/// An invalid config; an `out` folder that is not empty and holds no
/// benchmark, or holds one of another set; a bundle that does not load;
/// an I/O error. A series that fails to predict is not an error: it is
/// listed in [`ModelResult::failed`].
pub fn run_benchmark<B: Backend>(
    bundles: &[PathBuf],
    out: impl AsRef<Path>,
    config: &BenchmarkConfig,
    device: &B::Device,
    progress: &dyn Fn(BenchmarkProgress),
) -> BenchmarkResult<BenchmarkReport> {
    let out = out.as_ref();
    config.validate()?;
    let config = &BenchmarkConfig {
        infer: InferConfig {
            arteries: true,
            ..config.infer.clone()
        },
        ..config.clone()
    };
    if bundles.is_empty() {
        return Err(BenchmarkError::Config("no bundle".into()));
    }
    ensure_phantoms(config, out, progress)?;
    let mut report = BenchmarkReport {
        config: config.clone(),
        phantom_seeds: config.modalities.iter().map(|&m| (m, config.phantom_seed(m))).collect(),
        models: Vec::new(),
    };
    // the first bundle's outcomes, which every later one is paired with
    let mut first: Option<Vec<ScoredSet>> = None;
    for (bundle, label) in bundles.iter().zip(labels(bundles)) {
        let predictor = Predictor::<B>::from_dirs(&[bundle], config.infer.clone(), device)?;
        let mut per_modality = Vec::new();
        let mut failed = Vec::new();
        let (mut seconds, mut timed) = (0.0, 0usize);
        for &m in &config.modalities {
            let root = out.join("phantoms").join(folder(m));
            let dir = out.join("predictions").join(&label).join(folder(m));
            let t = Instant::now();
            let s = predict_dataset(&root, &predictor, &dir, &PredictOptions::default(), &|n, total| {
                progress(BenchmarkProgress::Predict(label.clone(), m, n, total))
            })?;
            if s.done > 0 {
                seconds += t.elapsed().as_secs_f64();
                timed += s.done;
            }
            progress(BenchmarkProgress::Score(label.clone()));
            per_modality.push((m, outcomes(&root, &dir, &s.errors, predictor.makes_arteries())?));
            failed.extend(s.errors);
        }
        // the rows: each modality, then all of them together
        let mut sets: Vec<ScoredSet> = per_modality.iter().map(|(m, o)| (Some(*m), o.clone())).collect();
        if per_modality.len() > 1 {
            sets.push((None, per_modality.into_iter().flat_map(|(_, o)| o).collect()));
        }
        let mut rows = Vec::new();
        for (modality, o) in &sets {
            let o: Vec<ScanOutcome> = o.iter().map(|(_, o)| o.clone()).collect();
            rows.push(BenchmarkRow {
                modality: *modality,
                figures: BenchmarkFigures::compute(&o, &config.froc, &config.bootstrap)?,
            });
        }
        let versus_first = match &first {
            Some(first) => paired_rows(first, &sets, config)?,
            None => Vec::new(),
        };
        report.models.push(ModelResult {
            bundle: bundle.clone(),
            label,
            rows,
            failed,
            seconds_per_series: (timed > 0).then(|| seconds / timed as f64),
            versus_first,
        });
        if first.is_none() {
            first = Some(sets);
        }
        report.write(out)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_folder_names() {
        let b = [
            PathBuf::from("models/a"),
            PathBuf::from("runs/x/a"),
            PathBuf::from("b/"),
            PathBuf::from(".."),
        ];
        assert_eq!(labels(&b), ["a", "a-1", "b", "bundle"]);
    }

    /// A series' artery map is scored against its segmentation (the
    /// segmentation itself as the map scores Dice 1), and a missing map or
    /// segmentation is an error that names the series.
    #[test]
    fn an_artery_map_is_scored_or_its_series_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("phantoms");
        generate(
            &PhantomConfig::new(1, 7_950_001, SizePreset::Tiny).with_modalities(&[Modality::Mra]),
            &root,
        )
        .unwrap();
        let ds = RsnaDataset::open(&root).unwrap();
        let uid = ds.all_labels().next().unwrap().series_uid.clone();
        let preds = dir.path().join("predictions");
        std::fs::create_dir_all(&preds).unwrap();
        let unscored = |r: BenchmarkResult<LabelOverlap>| match r {
            Err(BenchmarkError::Unscored { series, reason }) => {
                assert_eq!(series, uid);
                reason
            }
            other => panic!("{other:?}"),
        };
        assert!(unscored(artery_overlap(&ds, &uid, &preds)).ends_with("is missing"));

        let truth = ds.read_vessel_labels(&uid).unwrap().unwrap();
        aneu_io::write_nifti(&truth, preds.join(format!("{uid}_arteries.nii.gz"))).unwrap();
        let o = artery_overlap(&ds, &uid, &preds).unwrap();
        assert_eq!((o.mean_dice(), o.foreground_dice()), (Some(1.0), Some(1.0)));

        std::fs::remove_dir_all(root.join("segmentations")).unwrap();
        let ds = RsnaDataset::open(&root).unwrap();
        assert!(unscored(artery_overlap(&ds, &uid, &preds)).contains("no vessel segmentation"));
    }

    /// A lateral artery's voxels split into itself, its other side, other
    /// arteries and background; a midline artery has no other side.
    #[test]
    fn voxel_shares_name_the_other_side() {
        use aneu_io::Location;
        let (l, r, b) = (
            Location::LeftMca.vessel_label(),
            Location::RightMca.vessel_label(),
            Location::BasilarTip.vessel_label(),
        );
        let row: BTreeMap<u8, u64> = [(l, 30), (r, 50), (b, 10), (0, 10)].into();
        let v = VoxelShares::of(l, Some(Location::LeftMca), &row);
        assert_eq!(
            (v.right, v.other_side, v.other_artery, v.missed),
            (0.3, Some(0.5), 0.1, 0.1)
        );
        assert_eq!(v.cells(), "30 % | 50 % | 10 % | 10 %");
        let v = VoxelShares::of(b, Some(Location::BasilarTip), &row);
        assert_eq!((v.right, v.other_side, v.other_artery), (0.1, None, 0.8));
        assert!(v.cells().contains("| — |"));
    }

    #[test]
    fn size_bins_read_as_diameters() {
        let names: Vec<String> = aneu_metrics::SIZE_BINS.iter().map(size_bin_name).collect();
        assert_eq!(names, ["under 3 mm", "3–5 mm", "5–7 mm", "7 mm or more"]);
    }

    #[test]
    fn every_modality_has_its_own_seed() {
        let c = BenchmarkConfig::default();
        let seeds: std::collections::BTreeSet<u64> = Modality::ALL.iter().map(|&m| c.phantom_seed(m)).collect();
        assert_eq!(seeds.len(), 4);
        assert!(BenchmarkConfig { n: 1, ..c.clone() }.validate().is_err());
        assert!(
            BenchmarkConfig {
                positive_rate: 1.0,
                ..c.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            BenchmarkConfig {
                modalities: vec![],
                ..c
            }
            .validate()
            .is_err()
        );
    }
}

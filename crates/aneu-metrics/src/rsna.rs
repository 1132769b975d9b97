//! The RSNA Intracranial Aneurysm Detection score: a weighted mean of 14
//! column-wise ROC AUCs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::curves::roc_auc;
use crate::error::{Error, Result};

/// The 14 label columns in RSNA order: the 13 locations, then
/// `Aneurysm Present` (the same names as `aneu_io::Location`).
pub const RSNA_COLUMNS: [&str; 14] = [
    "Left Infraclinoid Internal Carotid Artery",
    "Right Infraclinoid Internal Carotid Artery",
    "Left Supraclinoid Internal Carotid Artery",
    "Right Supraclinoid Internal Carotid Artery",
    "Left Middle Cerebral Artery",
    "Right Middle Cerebral Artery",
    "Anterior Communicating Artery",
    "Left Anterior Cerebral Artery",
    "Right Anterior Cerebral Artery",
    "Left Posterior Communicating Artery",
    "Right Posterior Communicating Artery",
    "Basilar Tip",
    "Other Posterior Circulation",
    "Aneurysm Present",
];

/// Weight of each column: 1 per location, 13 for `Aneurysm Present`.
pub const RSNA_WEIGHTS: [f64; 14] = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 13.0];

/// A table of 14 values per series, keyed by SeriesInstanceUID (labels or
/// predicted probabilities).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RsnaTable {
    rows: BTreeMap<String, [f64; 14]>,
}

impl RsnaTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a series' 14 values, in [`RSNA_COLUMNS`] order.
    pub fn insert(&mut self, uid: impl Into<String>, values: [f64; 14]) {
        self.rows.insert(uid.into(), values);
    }

    /// The number of series.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The values of a series.
    pub fn get(&self, uid: &str) -> Option<&[f64; 14]> {
        self.rows.get(uid)
    }

    /// Series UIDs in order.
    pub fn uids(&self) -> impl Iterator<Item = &str> {
        self.rows.keys().map(String::as_str)
    }

    /// Reads a CSV with a `SeriesInstanceUID` column and the 14 RSNA
    /// columns, matched **by name** (other columns, such as `PatientAge` or
    /// `Modality` in `train.csv`, are ignored; the order does not matter).
    ///
    /// # Errors
    /// [`Error::Csv`]; [`Error::InvalidCsv`] for a missing column, a
    /// repeated series, or a value that is not a finite number.
    pub fn read_csv(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let csv_err = |source| Error::Csv {
            path: path.to_path_buf(),
            source,
        };
        let mut rdr = csv::Reader::from_path(path).map_err(csv_err)?;
        let header: Vec<String> = rdr
            .headers()
            .map_err(csv_err)?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let find = |name: &str| -> Result<usize> {
            header.iter().position(|h| h == name).ok_or_else(|| Error::InvalidCsv {
                path: path.to_path_buf(),
                line: 1,
                reason: format!("no column {name:?}"),
            })
        };
        let uid_col = find("SeriesInstanceUID")?;
        let cols: Vec<usize> = RSNA_COLUMNS.iter().map(|c| find(c)).collect::<Result<_>>()?;
        let mut table = Self::new();
        for rec in rdr.records() {
            let rec = rec.map_err(csv_err)?;
            let line = rec.position().map_or(0, |p| p.line());
            let bad = |reason: String| Error::InvalidCsv {
                path: path.to_path_buf(),
                line,
                reason,
            };
            let uid = rec.get(uid_col).map(str::trim).unwrap_or_default().to_string();
            if uid.is_empty() {
                return Err(bad("empty SeriesInstanceUID".into()));
            }
            let mut v = [0.0; 14];
            for (n, &c) in cols.iter().enumerate() {
                let s = rec.get(c).map(str::trim).unwrap_or_default();
                v[n] = s
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| bad(format!("{}: {s:?} is not a finite number", RSNA_COLUMNS[n])))?;
            }
            if table.rows.insert(uid.clone(), v).is_some() {
                return Err(bad(format!("series {uid} appears twice")));
            }
        }
        Ok(table)
    }
}

/// The RSNA score and its parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RsnaScore {
    /// The weighted mean AUC over the columns where it is defined.
    pub score: f64,
    /// Each column's AUC, `None` where the truth holds one class only.
    pub column_auc: Vec<Option<f64>>,
    /// Columns left out because their truth holds one class only.
    pub skipped: Vec<String>,
}

/// The RSNA weighted multi-label AUC:
/// `Σ_c w_c · AUC_c / Σ_c w_c` with weight 13 for `Aneurysm Present` and 1
/// for each location, which is `0.5 · AUC(AP) + 0.5 · mean(location AUCs)`.
///
/// **Single-class columns.** The official metric (scikit-learn's
/// `roc_auc_score`) raises when a column of the truth holds one class only,
/// which happens for rare locations in small validation folds. Here such a
/// column is left out of both sums and named in [`RsnaScore::skipped`]; the
/// score is the weighted mean of the columns that are defined.
///
/// Series are matched by UID; both tables must hold the same series.
///
/// # Errors
/// [`Error::UidMismatch`] when the series differ; [`Error::Empty`];
/// [`Error::InvalidLabel`] for a truth value other than 0/1;
/// [`Error::SingleClass`] when no column is defined.
pub fn rsna_weighted_auc(truth: &RsnaTable, pred: &RsnaTable) -> Result<RsnaScore> {
    if truth.is_empty() {
        return Err(Error::Empty { what: "truth table" });
    }
    let t: BTreeSet<&str> = truth.uids().collect();
    let p: BTreeSet<&str> = pred.uids().collect();
    let missing: Vec<&&str> = t.difference(&p).collect();
    let extra: Vec<&&str> = p.difference(&t).collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(Error::UidMismatch {
            missing: missing.len(),
            first_missing: missing.first().map(|s| s.to_string()),
            extra: extra.len(),
            first_extra: extra.first().map(|s| s.to_string()),
        });
    }
    let (mut num, mut den) = (0.0, 0.0);
    let mut column_auc = Vec::with_capacity(14);
    let mut skipped = Vec::new();
    for c in 0..14 {
        let labels: Vec<f64> = truth.rows.values().map(|v| v[c]).collect();
        let scores: Vec<f64> = truth
            .rows
            .keys()
            .map(|u| pred.rows.get(u).map_or(f64::NAN, |v| v[c]))
            .collect();
        match roc_auc(&labels, &scores) {
            Ok(a) => {
                num += RSNA_WEIGHTS[c] * a;
                den += RSNA_WEIGHTS[c];
                column_auc.push(Some(a));
            }
            Err(Error::SingleClass { .. }) => {
                skipped.push(RSNA_COLUMNS[c].to_string());
                column_auc.push(None);
            }
            Err(e) => return Err(e),
        }
    }
    if den == 0.0 {
        return Err(Error::SingleClass {
            what: "RSNA score (every column)",
            class: 0,
        });
    }
    Ok(RsnaScore {
        score: num / den,
        column_auc,
        skipped,
    })
}

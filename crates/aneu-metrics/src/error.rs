//! The error type of `aneu-metrics`.

use std::path::PathBuf;

/// What can go wrong when computing a metric. Bad input is always an
/// error, never a panic and never a silent NaN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input holds no element.
    #[error("{what} is empty")]
    Empty {
        /// Which input.
        what: &'static str,
    },
    /// Two inputs that must pair up have different lengths.
    #[error("{what}: {left} vs {right} elements")]
    LengthMismatch {
        /// Which inputs.
        what: &'static str,
        /// Length of the first.
        left: usize,
        /// Length of the second.
        right: usize,
    },
    /// A score (or other number) is NaN or infinite.
    #[error("{what}[{index}] = {value} is not finite")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// Position of the value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A label is neither 0 nor 1.
    #[error("label[{index}] = {value} is not 0 or 1")]
    InvalidLabel {
        /// Position of the label.
        index: usize,
        /// The value.
        value: f64,
    },
    /// The metric needs both classes and the labels hold one only.
    #[error("{what} needs both positive and negative labels; all are {class}")]
    SingleClass {
        /// Which metric.
        what: &'static str,
        /// The only class present (0 or 1).
        class: u8,
    },
    /// A parameter is out of its range.
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
    /// A CSV file could not be read.
    #[error("{path}: CSV: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: csv::Error,
    },
    /// A CSV file holds a value that cannot be used.
    #[error("{path}:{line}: {reason}")]
    InvalidCsv {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The two tables do not hold the same series.
    #[error(
        "series mismatch: {missing} missing from the predictions (first {first_missing:?}), {extra} extra (first {first_extra:?})"
    )]
    UidMismatch {
        /// Series in the truth but not in the predictions.
        missing: usize,
        /// The first of them.
        first_missing: Option<String>,
        /// Series in the predictions but not in the truth.
        extra: usize,
        /// The first of them.
        first_extra: Option<String>,
    },
}

/// `Result` with [`enum@Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks paired labels and scores: same length, not empty, finite scores,
/// labels 0 or 1. Returns the labels as booleans.
pub(crate) fn check_binary(labels: &[f64], scores: &[f64]) -> Result<Vec<bool>> {
    if labels.is_empty() {
        return Err(Error::Empty { what: "labels" });
    }
    if labels.len() != scores.len() {
        return Err(Error::LengthMismatch {
            what: "labels and scores",
            left: labels.len(),
            right: scores.len(),
        });
    }
    check_finite("scores", scores)?;
    labels
        .iter()
        .enumerate()
        .map(|(index, &v)| {
            if v == 0.0 {
                Ok(false)
            } else if v == 1.0 {
                Ok(true)
            } else {
                Err(Error::InvalidLabel { index, value: v })
            }
        })
        .collect()
}

pub(crate) fn check_finite(what: &'static str, v: &[f64]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            what,
            index,
            value: v[index],
        }),
        None => Ok(()),
    }
}

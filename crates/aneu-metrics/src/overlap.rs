//! Overlap of label maps: per-label and foreground Dice, for vessel
//! segmentations scored against reference labels.
//!
//! Counts accumulate over any number of voxel lists (patches of a
//! validation set, or one scan), so the same numbers serve a training's
//! pooled validation Dice and a benchmark's per-scan Dice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// True positives, false positives and false negatives of one label.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlapCounts {
    /// Voxels both maps give the label.
    pub true_positive: u64,
    /// Voxels only the prediction gives it.
    pub false_positive: u64,
    /// Voxels only the reference gives it.
    pub false_negative: u64,
}

impl OverlapCounts {
    /// `2 TP / (2 TP + FP + FN)`; `None` when neither map holds the label.
    ///
    /// ```
    /// let c = aneu_metrics::OverlapCounts { true_positive: 3, false_positive: 1, false_negative: 1 };
    /// assert_eq!(c.dice(), Some(0.75));
    /// assert_eq!(aneu_metrics::OverlapCounts::default().dice(), None);
    /// ```
    pub fn dice(&self) -> Option<f64> {
        let d = 2 * self.true_positive + self.false_positive + self.false_negative;
        (d > 0).then(|| 2.0 * self.true_positive as f64 / d as f64)
    }
}

/// The overlap of a predicted label map with a reference, label by label
/// (0 is background) and for the foreground (any label against 0).
///
/// ```
/// use aneu_metrics::LabelOverlap;
/// let truth = [0, 1, 1, 2, 2, 0];
/// let pred = [0, 1, 2, 2, 2, 1];
/// let mut o = LabelOverlap::default();
/// o.add(&truth, &pred)?;
/// assert_eq!(o.dice(1), Some(0.5)); // TP 1, FP 1, FN 1
/// assert_eq!(o.dice(2), Some(0.8)); // TP 2, FP 1, FN 0
/// assert_eq!(o.mean_dice(), Some(0.65));
/// assert_eq!(o.foreground_dice(), Some(8.0 / 9.0)); // TP 4, FP 1, FN 0
/// // where each reference label's voxels went
/// assert_eq!(o.confusion[&1][&2], 1);
/// assert_eq!(o.confusion[&2][&2], 2);
/// # Ok::<(), aneu_metrics::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelOverlap {
    /// Counts per label (background left out), for every label either map
    /// holds.
    pub labels: BTreeMap<u8, OverlapCounts>,
    /// Counts of the foreground: any label against background.
    pub foreground: OverlapCounts,
    /// The confusion matrix's rows of the labels the reference holds
    /// (background left out): for each such label, the voxels the
    /// prediction gave each label, background (0) included. It shows what
    /// the Dice alone cannot: whether an artery is missed or named as
    /// another (its other side, say).
    #[serde(default)]
    pub confusion: BTreeMap<u8, BTreeMap<u8, u64>>,
}

impl LabelOverlap {
    /// The overlap of `predicted` with `truth`, voxel by voxel.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when the two lists differ in length.
    pub fn of(truth: &[u8], predicted: &[u8]) -> Result<Self> {
        let mut o = Self::default();
        o.add(truth, predicted)?;
        Ok(o)
    }

    /// Adds the voxels of another pair of maps.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when the two lists differ in length.
    pub fn add(&mut self, truth: &[u8], predicted: &[u8]) -> Result<()> {
        if truth.len() != predicted.len() {
            return Err(Error::LengthMismatch {
                what: "reference and predicted labels",
                left: truth.len(),
                right: predicted.len(),
            });
        }
        for (&t, &p) in truth.iter().zip(predicted) {
            if t != 0 {
                *self.confusion.entry(t).or_default().entry(p).or_default() += 1;
            }
            match (t != 0, p != 0) {
                (true, true) => self.foreground.true_positive += 1,
                (false, true) => self.foreground.false_positive += 1,
                (true, false) => self.foreground.false_negative += 1,
                (false, false) => continue,
            }
            if t == p {
                self.labels.entry(t).or_default().true_positive += 1;
                continue;
            }
            if p != 0 {
                self.labels.entry(p).or_default().false_positive += 1;
            }
            if t != 0 {
                self.labels.entry(t).or_default().false_negative += 1;
            }
        }
        Ok(())
    }

    /// The Dice of one label; `None` when neither map holds it.
    pub fn dice(&self, label: u8) -> Option<f64> {
        self.labels.get(&label).and_then(OverlapCounts::dice)
    }

    /// The mean Dice over the labels the reference holds (MONAI's
    /// `DiceMetric` with `ignore_empty`): a label only the prediction holds
    /// adds no term of its own, though its voxels lower the foreground's
    /// and the true labels' scores. `None` when the reference is all
    /// background.
    pub fn mean_dice(&self) -> Option<f64> {
        let d: Vec<f64> = self
            .labels
            .values()
            .filter(|c| c.true_positive + c.false_negative > 0)
            .filter_map(OverlapCounts::dice)
            .collect();
        (!d.is_empty()).then(|| d.iter().sum::<f64>() / d.len() as f64)
    }

    /// The Dice of the foreground (every label against background),
    /// whatever label each voxel got; `None` when both maps are all
    /// background.
    pub fn foreground_dice(&self) -> Option<f64> {
        self.foreground.dice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Identical maps score 1, disjoint ones 0; a reference of background
    /// only has no mean; counts from two halves equal those of the whole.
    #[test]
    fn dice_matches_its_definition() {
        let t = [0u8, 3, 3, 3, 7, 7, 0, 0];
        let same = LabelOverlap::of(&t, &t).unwrap();
        assert_eq!((same.mean_dice(), same.foreground_dice()), (Some(1.0), Some(1.0)));
        let shifted = [7u8, 0, 0, 0, 3, 3, 3, 3];
        let o = LabelOverlap::of(&t, &shifted).unwrap();
        assert_eq!(o.dice(3), Some(0.0));
        assert_eq!(o.dice(7), Some(0.0));
        assert_eq!(o.mean_dice(), Some(0.0));
        // foreground: TP 2 (voxels 4, 5), FP 3 (0, 6, 7), FN 3 (1, 2, 3)
        assert_eq!(o.foreground_dice(), Some(0.4));
        // rows of the reference's labels: all three 3s went to 0, both 7s to 3
        let row = |l: u8| o.confusion[&l].iter().map(|(&k, &v)| (k, v)).collect::<Vec<_>>();
        assert_eq!(o.confusion.len(), 2);
        assert_eq!(row(3), [(0, 3)]);
        assert_eq!(row(7), [(3, 2)]);
        let empty = LabelOverlap::of(&[0u8; 4], &[0, 5, 0, 0]).unwrap();
        assert_eq!(empty.mean_dice(), None);
        assert_eq!(empty.foreground_dice(), Some(0.0));
        assert_eq!(empty.dice(5), Some(0.0));
        let mut halves = LabelOverlap::of(&t[..3], &shifted[..3]).unwrap();
        halves.add(&t[3..], &shifted[3..]).unwrap();
        assert_eq!(halves, o);
        assert!(LabelOverlap::of(&t, &t[1..]).is_err());
    }
}

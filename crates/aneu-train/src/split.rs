//! Patient-grouped, stratified train/validation/test splits and k-fold
//! cross-validation, written to disk so that a run can be reproduced.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

pub use aneu_bundle::Split;

use crate::config::SplitConfig;
use crate::data::CaseInfo;
use crate::{Error, Result};

/// Splits by patient: every series of a patient lands in the same part.
/// Patients are stratified by (any series positive, modality of their
/// first series), and each stratum is divided by the configured fractions
/// (largest remainder), or into `k` folds after the test share is taken.
///
/// # Errors
/// [`Error::Data`] when no series is given.
pub fn make_split(cases: &[CaseInfo], cfg: &SplitConfig) -> Result<Split> {
    if cases.is_empty() {
        return Err(Error::Data("no series to split".into()));
    }
    // patients, in first-seen order, with their series
    let mut patients: BTreeMap<&str, Vec<&CaseInfo>> = BTreeMap::new();
    for c in cases {
        patients.entry(c.patient_id.as_str()).or_default().push(c);
    }
    let mut strata: BTreeMap<(bool, String), Vec<&str>> = BTreeMap::new();
    for (p, series) in &patients {
        let key = (series.iter().any(|s| s.positive), format!("{:?}", series[0].modality));
        strata.entry(key).or_default().push(p);
    }
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut part_of: BTreeMap<&str, usize> = BTreeMap::new(); // 0 train, 1 val, 2 test
    for pats in strata.values_mut() {
        pats.shuffle(&mut rng);
        let n = pats.len();
        match cfg.folds {
            None => {
                let counts = largest_remainder(n, &[cfg.train, cfg.val, cfg.test]);
                let mut it = pats.iter();
                for (part, &c) in counts.iter().enumerate() {
                    for p in it.by_ref().take(c) {
                        part_of.insert(p, part);
                    }
                }
            }
            Some(k) => {
                let n_test = largest_remainder(n, &[1.0 - cfg.test, cfg.test])[1];
                for (idx, p) in pats.iter().enumerate() {
                    let part = if idx < n_test {
                        2
                    } else if (idx - n_test) % k == cfg.fold {
                        1
                    } else {
                        0
                    };
                    part_of.insert(p, part);
                }
            }
        }
    }
    let mut split = Split::default();
    for c in cases {
        let part = part_of.get(c.patient_id.as_str()).copied().unwrap_or(0);
        [&mut split.train, &mut split.val, &mut split.test][part].push(c.series_uid.clone());
    }
    for v in [&mut split.train, &mut split.val, &mut split.test] {
        v.sort();
    }
    Ok(split)
}

/// Extends a split to series it does not know: every series `split` lists
/// keeps its part, a new series of a patient `split` already placed joins
/// that patient's part, and the other new series are split by `cfg`
/// ([`make_split`]). A second stage uses it on its first stage's split: the
/// first stage's validation scans stay unseen by both stages, and scans the
/// first stage never saw (fresh data, where its candidates are those of new
/// scans) are divided like any dataset, none dropped.
///
/// ```
/// use aneu_train::{Split, SplitConfig, extend_split, CaseInfo};
/// let info = |u: &str| CaseInfo {
///     series_uid: u.into(), patient_id: u.into(), modality: aneu_io::Modality::Mra,
///     positive: false, config_hash: String::new(),
/// };
/// let first = Split { train: vec!["a".into()], val: vec!["b".into()], test: vec![] };
/// let s = extend_split(&first, &[info("a"), info("b"), info("c")], &SplitConfig::default())?;
/// assert_eq!(s.val, vec!["b".to_string()]);
/// assert_eq!(s.train.len() + s.val.len() + s.test.len(), 3); // "c" has a part too
/// # Ok::<(), aneu_train::Error>(())
/// ```
///
/// # Errors
/// As [`make_split`].
pub fn extend_split(split: &Split, cases: &[CaseInfo], cfg: &SplitConfig) -> Result<Split> {
    let part_of_series: BTreeMap<&str, usize> = [&split.train, &split.val, &split.test]
        .iter()
        .enumerate()
        .flat_map(|(p, v)| v.iter().map(move |u| (u.as_str(), p)))
        .collect();
    let part_of_patient: BTreeMap<&str, usize> = cases
        .iter()
        .filter_map(|c| Some((c.patient_id.as_str(), *part_of_series.get(c.series_uid.as_str())?)))
        .collect();
    let mut out = split.clone();
    let mut fresh = Vec::new();
    for c in cases
        .iter()
        .filter(|c| !part_of_series.contains_key(c.series_uid.as_str()))
    {
        match part_of_patient.get(c.patient_id.as_str()) {
            Some(&p) => [&mut out.train, &mut out.val, &mut out.test][p].push(c.series_uid.clone()),
            None => fresh.push(c.clone()),
        }
    }
    if !fresh.is_empty() {
        let f = make_split(&fresh, cfg)?;
        out.train.extend(f.train);
        out.val.extend(f.val);
        out.test.extend(f.test);
    }
    for v in [&mut out.train, &mut out.val, &mut out.test] {
        v.sort();
    }
    Ok(out)
}

/// `n` items over weights, by largest remainder.
fn largest_remainder(n: usize, w: &[f64]) -> Vec<usize> {
    let total: f64 = w.iter().sum();
    let exact: Vec<f64> = w.iter().map(|x| n as f64 * x / total.max(1e-12)).collect();
    let mut out: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut rest = n.saturating_sub(out.iter().sum());
    let mut order: Vec<usize> = (0..w.len()).collect();
    order.sort_by(|a, b| {
        (exact[*b] - out[*b] as f64)
            .total_cmp(&(exact[*a] - out[*a] as f64))
            .then(a.cmp(b))
    });
    for a in order.into_iter().cycle() {
        if rest == 0 {
            break;
        }
        if w[a] > 0.0 {
            out[a] += 1;
            rest -= 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aneu_io::Modality;

    fn infos() -> Vec<CaseInfo> {
        (0..60)
            .map(|n| CaseInfo {
                series_uid: format!("s{n:02}"),
                patient_id: format!("p{}", n / 2), // two series per patient
                modality: if n % 3 == 0 { Modality::Cta } else { Modality::Mra },
                positive: (n / 2) % 4 == 0,
                config_hash: String::new(),
            })
            .collect()
    }

    #[test]
    fn patients_stay_together_and_fractions_hold() {
        let c = infos();
        let s = make_split(&c, &SplitConfig::default()).unwrap();
        assert_eq!(s.train.len() + s.val.len() + s.test.len(), 60);
        let part = |uid: &str| {
            if s.train.iter().any(|u| u == uid) {
                0
            } else if s.val.iter().any(|u| u == uid) {
                1
            } else {
                2
            }
        };
        for pair in c.chunks(2) {
            assert_eq!(
                part(&pair[0].series_uid),
                part(&pair[1].series_uid),
                "patient split across parts"
            );
        }
        assert!((s.train.len() as f64 / 60.0 - 0.7).abs() < 0.1, "{}", s.train.len());
        assert!(!s.val.is_empty() && !s.test.is_empty());
        // positives reach every part
        let pos = |v: &[String]| {
            v.iter()
                .filter(|u| c.iter().any(|i| &i.series_uid == *u && i.positive))
                .count()
        };
        assert!(pos(&s.train) > 0 && pos(&s.val) > 0);
        // the same seed, the same split; another seed, another split
        assert_eq!(make_split(&c, &SplitConfig::default()).unwrap(), s);
        assert_ne!(
            make_split(
                &c,
                &SplitConfig {
                    seed: 7,
                    ..Default::default()
                }
            )
            .unwrap(),
            s
        );
    }

    #[test]
    fn folds_partition_the_non_test_patients() {
        let c = infos();
        let k = 5;
        let mut seen_val: Vec<String> = Vec::new();
        let mut test: Option<Vec<String>> = None;
        for fold in 0..k {
            let s = make_split(
                &c,
                &SplitConfig {
                    folds: Some(k),
                    fold,
                    ..Default::default()
                },
            )
            .unwrap();
            if let Some(t) = &test {
                assert_eq!(t, &s.test, "the test part does not depend on the fold");
            }
            test = Some(s.test.clone());
            seen_val.extend(s.val.iter().cloned());
            assert_eq!(s.train.len() + s.val.len() + s.test.len(), 60);
        }
        seen_val.sort();
        let mut expect: Vec<String> = c
            .iter()
            .map(|i| i.series_uid.clone())
            .filter(|u| !test.as_ref().unwrap().contains(u))
            .collect();
        expect.sort();
        assert_eq!(seen_val, expect, "every non-test series is validated exactly once");
    }

    #[test]
    fn an_extended_split_keeps_known_parts_and_places_every_new_series() {
        let c = infos();
        // the first 20 series are known: the first patient-pairs in train,
        // the rest in validation
        let first = Split {
            train: c[..10].iter().map(|i| i.series_uid.clone()).collect(),
            val: c[10..19].iter().map(|i| i.series_uid.clone()).collect(),
            test: Vec::new(),
        };
        let s = extend_split(&first, &c, &SplitConfig::default()).unwrap();
        assert_eq!(
            s.train.len() + s.val.len() + s.test.len(),
            60,
            "none dropped, none twice"
        );
        for u in &first.train {
            assert!(s.train.contains(u));
        }
        for u in &first.val {
            assert!(s.val.contains(u));
        }
        // s19 is new, but its patient (p9, with s18) was in validation
        assert!(s.val.contains(&"s19".to_string()));
        // the 40 series no one knew are split by the fractions
        let fresh: Vec<&String> = s.train.iter().filter(|u| u.as_str() >= "s20").collect();
        assert!((fresh.len() as f64 / 40.0 - 0.7).abs() < 0.1, "{}", fresh.len());
        // a split that knows every series is returned as it is
        assert_eq!(extend_split(&s, &c, &SplitConfig::default()).unwrap(), s);
    }
}

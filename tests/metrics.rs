//! aneu-metrics against scikit-learn 1.9.1 (fixtures made by
//! `tests/data/metrics/make_sklearn_fixtures.py`), hand-worked cases,
//! properties, and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aneu::metrics::*;
use proptest::prelude::*;
use serde_json::Value;

fn fixtures() -> Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/metrics/sklearn.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| match x {
            Value::String(s) if s == "inf" => f64::INFINITY,
            x => x.as_f64().unwrap(),
        })
        .collect()
}

fn close(a: f64, b: f64, what: &str) {
    assert!(a == b || (a - b).abs() <= 1e-12, "{what}: {a} vs {b}");
}

fn close_all(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths {} vs {}", a.len(), b.len());
    for (n, (x, y)) in a.iter().zip(b).enumerate() {
        close(*x, *y, &format!("{what}[{n}]"));
    }
}

#[test]
fn matches_scikit_learn() {
    let f = fixtures();
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let y = floats(&c["labels"]);
        let s = floats(&c["scores"]);
        let t = c["threshold"].as_f64().unwrap();
        let m = Confusion::at_threshold(&y, &s, t).unwrap();
        let k = &c["confusion"];
        assert_eq!(
            (m.tp, m.fp, m.tn, m.fn_),
            (
                k["tp"].as_u64().unwrap(),
                k["fp"].as_u64().unwrap(),
                k["tn"].as_u64().unwrap(),
                k["fn"].as_u64().unwrap()
            ),
            "{name}"
        );
        close(
            m.accuracy(),
            c["accuracy"].as_f64().unwrap(),
            &format!("{name} accuracy"),
        );
        close(
            m.sensitivity(),
            c["recall"].as_f64().unwrap(),
            &format!("{name} recall"),
        );
        close(
            m.precision(),
            c["precision"].as_f64().unwrap(),
            &format!("{name} precision"),
        );
        close(m.f1(), c["f1"].as_f64().unwrap(), &format!("{name} f1"));
        close(m.f2(), c["f2"].as_f64().unwrap(), &format!("{name} f2"));
        close(m.mcc(), c["mcc"].as_f64().unwrap(), &format!("{name} mcc"));
        close(
            m.balanced_accuracy(),
            c["balanced_accuracy"].as_f64().unwrap(),
            &format!("{name} balanced"),
        );
        match c.get("auc") {
            Some(a) => {
                close(roc_auc(&y, &s).unwrap(), a.as_f64().unwrap(), &format!("{name} auc"));
                for (key, drop) in [("roc", true), ("roc_full", false)] {
                    let r = roc_curve(&y, &s, drop).unwrap();
                    close_all(&r.fpr, &floats(&c[key]["fpr"]), &format!("{name} {key} fpr"));
                    close_all(&r.tpr, &floats(&c[key]["tpr"]), &format!("{name} {key} tpr"));
                    close_all(
                        &r.thresholds,
                        &floats(&c[key]["thresholds"]),
                        &format!("{name} {key} thr"),
                    );
                }
            }
            None => assert!(matches!(roc_auc(&y, &s), Err(Error::SingleClass { .. })), "{name}"),
        }
        match c.get("ap") {
            Some(a) => {
                close(
                    average_precision(&y, &s).unwrap(),
                    a.as_f64().unwrap(),
                    &format!("{name} ap"),
                );
                let p = pr_curve(&y, &s).unwrap();
                close_all(
                    &p.precision,
                    &floats(&c["pr"]["precision"]),
                    &format!("{name} pr precision"),
                );
                close_all(&p.recall, &floats(&c["pr"]["recall"]), &format!("{name} pr recall"));
                close_all(
                    &p.thresholds,
                    &floats(&c["pr"]["thresholds"]),
                    &format!("{name} pr thresholds"),
                );
            }
            None => assert!(
                matches!(average_precision(&y, &s), Err(Error::SingleClass { .. })),
                "{name}"
            ),
        }
    }
}

/// Platt scaling against scikit-learn's `_sigmoid_calibration` (the fit
/// behind `CalibratedClassifierCV(method="sigmoid")`): two optimisers of one
/// convex loss, so the parameters agree to optimiser tolerance.
#[test]
fn platt_matches_scikit_learn() {
    let f = fixtures();
    let cases = f["cases"].as_array().unwrap();
    for p in f["platt"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let c = cases.iter().find(|c| c["name"] == p["name"]).unwrap();
        let fit = PlattScaling::fit(&floats(&c["labels"]), &floats(&c["scores"])).unwrap();
        let (a, b) = (p["a"].as_f64().unwrap(), p["b"].as_f64().unwrap());
        assert!(
            (fit.a - a).abs() < 1e-4 * a.abs().max(1.0),
            "{name}: a {} vs {a}",
            fit.a
        );
        assert!(
            (fit.b - b).abs() < 1e-4 * b.abs().max(1.0),
            "{name}: b {} vs {b}",
            fit.b
        );
    }
}

/// Logits drawn from a known temperature: the fit recovers it.
#[test]
fn temperature_recovers_the_truth() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(7);
    let t_true = 2.5;
    let (mut y, mut z) = (Vec::new(), Vec::new());
    for _ in 0..20000 {
        let logit: f64 = rng.random_range(-8.0..8.0);
        let p = 1.0 / (1.0 + (-logit / t_true).exp());
        y.push(if rng.random::<f64>() < p { 1.0 } else { 0.0 });
        z.push(logit);
    }
    let t = Temperature::fit(&y, &z).unwrap();
    assert!((t.t - t_true).abs() < 0.1, "{}", t.t);
    // calibrated probabilities have a small ECE; the raw ones do not
    let cal: Vec<f64> = z.iter().map(|&v| t.apply(v)).collect();
    let raw: Vec<f64> = z.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect();
    let (e_cal, e_raw) = (
        expected_calibration_error(&y, &cal, 10).unwrap(),
        expected_calibration_error(&y, &raw, 10).unwrap(),
    );
    assert!(e_cal < 0.02 && e_raw > 0.05, "{e_cal} {e_raw}");
    // anti-correlated logits have no positive temperature
    let neg: Vec<f64> = z.iter().map(|v| -v).collect();
    assert!(Temperature::fit(&y, &neg).is_err());
}

#[test]
fn reliability_bins_by_hand() {
    let y = [0.0, 1.0, 1.0, 0.0, 1.0];
    let p = [0.05, 0.15, 0.12, 0.95, 1.0];
    let b = reliability_bins(&y, &p, 10).unwrap();
    assert_eq!(b[0].count, 1);
    assert_eq!(b[1].count, 2);
    assert!((b[1].mean_predicted - 0.135).abs() < 1e-12 && b[1].fraction_positive == 1.0);
    assert_eq!(b[9].count, 2);
    assert!((b[9].fraction_positive - 0.5).abs() < 1e-12);
    let ece = expected_calibration_error(&y, &p, 10).unwrap();
    let want = 0.2 * 0.05 + 0.4 * (1.0 - 0.135) + 0.4 * (0.975 - 0.5);
    assert!((ece - want).abs() < 1e-12, "{ece} vs {want}");
}

/// Thresholds chosen on a validation set, applied to a test set.
#[test]
fn operating_points_chosen_on_one_set_applied_to_another() {
    let val_y = [0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0];
    let val_s = [0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.9];
    // Youden: at 0.6 sens 3/4, spec 1 → J 0.75; at 0.35 sens 1, spec 3/4 → J 0.75: tie → higher threshold
    let y = youden_threshold(&val_y, &val_s).unwrap();
    assert_eq!(y.threshold, 0.6);
    // F2 at 0.35: tp 4 fp 1 fn 0 → 20/21; at 0.6: tp 3 fn 1 → 15/19
    let f2 = f_beta_threshold(&val_y, &val_s, 2.0).unwrap();
    assert_eq!(f2.threshold, 0.35);
    assert!((f2.confusion.f2() - 20.0 / 21.0).abs() < 1e-12);
    let s90 = threshold_for_sensitivity(&val_y, &val_s, 0.9).unwrap();
    assert_eq!(s90.threshold, 0.35);
    assert_eq!(threshold_for_sensitivity(&val_y, &val_s, 0.5).unwrap().threshold, 0.7);
    let test_y = [1.0, 1.0, 0.0, 0.0];
    let test_s = [0.65, 0.5, 0.45, 0.05];
    let at = |t| Confusion::at_threshold(&test_y, &test_s, t).unwrap();
    assert_eq!(at(y.threshold).sensitivity(), 0.5);
    assert_eq!(at(f2.threshold).sensitivity(), 1.0);
    assert_eq!(at(f2.threshold).specificity(), 0.5);
}

fn scan(c: &[([f64; 3], f64)], l: &[([f64; 3], f64)]) -> ScanDetections {
    ScanDetections {
        candidates: c.iter().map(|&(point, score)| Candidate { point, score }).collect(),
        lesions: l
            .iter()
            .map(|&(centre, radius_mm)| Lesion { centre, radius_mm })
            .collect(),
    }
}

/// Hand-worked: one aneurysm hit twice (the second hit is not a false
/// positive), a candidate between two aneurysms within neither (a false
/// positive) and one within both (detects both), and a negative scan.
#[test]
fn froc_by_hand() {
    let scans = vec![
        // A at origin r = 3: hit at 0.9 (1 mm off) and again at 0.5; FP at 0.7
        scan(
            &[([1.0, 0.0, 0.0], 0.9), ([0.0, 2.0, 0.0], 0.5), ([30.0, 0.0, 0.0], 0.7)],
            &[([0.0; 3], 3.0)],
        ),
        // B1 at x = 0, B2 at x = 10, r = 2: a candidate at x = 5 hits neither (FP, 0.8);
        // C1 at z = 100, C2 at z = 104, r = 2.5: a candidate at z = 102 hits both (0.6)
        scan(
            &[([5.0, 0.0, 0.0], 0.8), ([0.0, 0.0, 102.0], 0.6)],
            &[
                ([0.0; 3], 2.0),
                ([10.0, 0.0, 0.0], 2.0),
                ([0.0, 0.0, 100.0], 2.5),
                ([0.0, 0.0, 104.0], 2.5),
            ],
        ),
        // a negative scan with one FP at 0.4
        scan(&[([0.0; 3], 0.4)], &[]),
    ];
    let f = froc(&scans, &FrocOptions::default().with_min_hit_distance_mm(1.0)).unwrap();
    assert_eq!((f.lesions, f.scans), (5, 3));
    // events by score: 0.9 hit(A), 0.8 FP, 0.7 FP, 0.6 hit(C1) + hit(C2), 0.4 FP
    let pts: Vec<(f64, f64, f64)> = f
        .curve
        .iter()
        .map(|p| (p.threshold, p.fp_per_scan, p.sensitivity))
        .collect();
    assert_eq!(
        pts,
        vec![
            (0.9, 0.0, 0.2),
            (0.8, 1.0 / 3.0, 0.2),
            (0.7, 2.0 / 3.0, 0.2),
            (0.6, 2.0 / 3.0, 0.6),
            (0.4, 1.0, 0.6)
        ]
    );
    let at: Vec<f64> = f.sensitivity_at.iter().map(|p| p.1).collect();
    assert_eq!(at, vec![0.2, 0.2, 0.2, 0.6, 0.6, 0.6, 0.6]);
    assert!((f.mean_sensitivity - (0.2 * 3.0 + 0.6 * 4.0) / 7.0).abs() < 1e-12);
    // localisation: A at 1 mm, C1 and C2 at 2 mm each
    let mut e = f.localisation_errors_mm.clone();
    e.sort_by(f64::total_cmp);
    assert_eq!(e, vec![1.0, 2.0, 2.0]);
    assert!((f.mean_localisation_error_mm().unwrap() - 5.0 / 3.0).abs() < 1e-12);
    // a tiny aneurysm of unknown size is hit within the minimum distance
    let tiny = [scan(&[([1.5, 0.0, 0.0], 0.5)], &[([0.0; 3], 0.0)])];
    assert_eq!(froc(&tiny, &FrocOptions::default()).unwrap().sensitivity_at[0].1, 1.0);
    assert_eq!(
        froc(&tiny, &FrocOptions::default().with_min_hit_distance_mm(1.0))
            .unwrap()
            .sensitivity_at[6]
            .1,
        0.0
    );
}

/// A hand-computed RSNA score on 6 series. `Aneurysm Present` AUC 8/9,
/// Left MCA AUC 1, Basilar Tip AUC 0.5 (all scores tied), Acom AUC 0.0;
/// the other 10 locations hold no positive and are left out. Score =
/// (13·8/9 + 1 + 0.5 + 0) / 16.
#[test]
fn rsna_score_by_hand() {
    let mut truth = RsnaTable::new();
    let mut pred = RsnaTable::new();
    let (mca, acom, bas, ap) = (4, 6, 11, 13);
    let rows: [(&str, [f64; 4], [f64; 4]); 6] = [
        // uid, truth (mca, acom, bas, ap), pred (mca, acom, bas, ap)
        ("s1", [1.0, 0.0, 0.0, 1.0], [0.9, 0.8, 0.5, 0.8]),
        ("s2", [0.0, 1.0, 0.0, 1.0], [0.2, 0.1, 0.5, 0.35]),
        ("s3", [0.0, 0.0, 1.0, 1.0], [0.3, 0.7, 0.5, 0.9]),
        ("s4", [0.0, 0.0, 0.0, 0.0], [0.1, 0.6, 0.5, 0.1]),
        ("s5", [0.0, 0.0, 0.0, 0.0], [0.4, 0.5, 0.5, 0.3]),
        ("s6", [0.0, 0.0, 0.0, 0.0], [0.0, 0.9, 0.5, 0.5]),
    ];
    for (uid, t, p) in rows {
        let (mut tv, mut pv) = ([0.0; 14], [0.3; 14]);
        for (n, c) in [mca, acom, bas, ap].into_iter().enumerate() {
            tv[c] = t[n];
            pv[c] = p[n];
        }
        truth.insert(uid, tv);
        pred.insert(uid, pv);
    }
    let s = rsna_weighted_auc(&truth, &pred).unwrap();
    assert!((s.column_auc[ap].unwrap() - 8.0 / 9.0).abs() < 1e-12);
    assert_eq!(s.column_auc[mca], Some(1.0));
    assert_eq!(s.column_auc[bas], Some(0.5));
    assert_eq!(s.column_auc[acom], Some(0.0));
    assert_eq!(s.skipped.len(), 10);
    let want = (13.0 * 8.0 / 9.0 + 1.0 + 0.5 + 0.0) / 16.0;
    assert!((s.score - want).abs() < 1e-12, "{} vs {want}", s.score);

    // through CSV files in the RSNA column order (with train.csv's extra columns)
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, t: &RsnaTable, extra: bool| {
        let mut text = String::from("SeriesInstanceUID");
        if extra {
            text.push_str(",PatientAge,PatientSex,Modality");
        }
        for c in RSNA_COLUMNS {
            text.push(',');
            text.push_str(c);
        }
        text.push('\n');
        for u in t.uids() {
            text.push_str(u);
            if extra {
                text.push_str(",60,Female,CTA");
            }
            for v in t.get(u).unwrap() {
                text.push_str(&format!(",{v}"));
            }
            text.push('\n');
        }
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let tp = write("train.csv", &truth, true);
    let pp = write("pred.csv", &pred, false);
    let s2 = rsna_weighted_auc(&RsnaTable::read_csv(&tp).unwrap(), &RsnaTable::read_csv(&pp).unwrap()).unwrap();
    assert_eq!(s2, s);

    // missing and extra series
    let mut p2 = pred.clone();
    p2.insert("s7", [0.5; 14]);
    let e = rsna_weighted_auc(&truth, &p2).unwrap_err();
    assert!(
        matches!(
            e,
            Error::UidMismatch {
                missing: 0,
                extra: 1,
                ..
            }
        ),
        "{e}"
    );
    let mut t2 = truth.clone();
    t2.insert("s8", [0.0; 14]);
    assert!(matches!(
        rsna_weighted_auc(&t2, &pred),
        Err(Error::UidMismatch { missing: 1, .. })
    ));
    // a bad value in a CSV names the file and line
    std::fs::write(
        dir.path().join("bad.csv"),
        std::fs::read_to_string(&pp).unwrap().replace("0.9", "nan"),
    )
    .unwrap();
    let e = RsnaTable::read_csv(dir.path().join("bad.csv")).unwrap_err();
    assert!(
        matches!(e, Error::InvalidCsv { .. }) && e.to_string().contains("bad.csv"),
        "{e}"
    );
}

/// aneu-metrics keeps its own copy of the 14 RSNA names (it may not depend
/// on aneu-io); they must equal aneu-io's.
#[test]
fn rsna_columns_equal_aneu_io_locations() {
    let mut io: Vec<&str> = aneu::io::Location::ALL.iter().map(|l| l.name()).collect();
    io.push(aneu::io::ANEURYSM_PRESENT);
    assert_eq!(io, RSNA_COLUMNS.to_vec());
}

#[test]
fn bad_input_is_a_typed_error() {
    assert!(matches!(roc_auc(&[], &[]), Err(Error::Empty { .. })));
    assert!(matches!(
        roc_auc(&[0.0, 1.0], &[0.5]),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        roc_auc(&[0.0, 1.0], &[0.5, f64::NAN]),
        Err(Error::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        roc_auc(&[0.0, 2.0], &[0.5, 0.6]),
        Err(Error::InvalidLabel { index: 1, .. })
    ));
    assert!(matches!(
        roc_auc(&[0.0, 0.5], &[0.5, 0.6]),
        Err(Error::InvalidLabel { .. })
    ));
    assert!(matches!(
        roc_auc(&[1.0, 1.0], &[0.5, 0.6]),
        Err(Error::SingleClass { class: 1, .. })
    ));
    assert!(matches!(
        Confusion::at_threshold(&[0.0], &[0.5], f64::NAN),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        average_precision(&[0.0, 0.0], &[0.5, 0.6]),
        Err(Error::SingleClass { .. })
    ));
    assert!(matches!(
        expected_calibration_error(&[0.0], &[1.5], 10),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(froc(&[], &FrocOptions::default()), Err(Error::Empty { .. })));
    let s = [scan(&[([0.0, f64::NAN, 0.0], 0.5)], &[([0.0; 3], 1.0)])];
    assert!(matches!(
        froc(&s, &FrocOptions::default()),
        Err(Error::NonFinite { .. })
    ));
    let s = [scan(&[([0.0; 3], 0.5)], &[])];
    assert!(matches!(
        froc(&s, &FrocOptions::default()),
        Err(Error::SingleClass { .. })
    ));
    assert!(matches!(
        f_beta_threshold(&[0.0, 1.0], &[0.1, 0.2], 0.0),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        rsna_weighted_auc(&RsnaTable::new(), &RsnaTable::new()),
        Err(Error::Empty { .. })
    ));
}

#[test]
fn report_renders_json_and_markdown() {
    let y = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0];
    let s = [0.1, 0.3, 0.35, 0.8, 0.5, 0.9, 0.2, 0.6];
    let opts = BootstrapOptions::default().with_resamples(200).with_seed(3);
    let scan_r = ClassificationReport::compute(&y, &s, 0.5, Some(&opts)).unwrap();
    let scans = vec![scan(&[([0.0; 3], 0.9), ([9.0, 0.0, 0.0], 0.3)], &[([0.0; 3], 2.0)])];
    let det = DetectionReport::compute(&scans, &FrocOptions::default(), None).unwrap();
    let r = EvaluationReport {
        scan: Some(scan_r.clone()),
        detection: Some(det),
        ..Default::default()
    };
    let json = r.to_json().unwrap();
    let back: EvaluationReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    let md = r.to_markdown();
    assert!(
        md.contains("### Scan level") && md.contains("| F2 |") && md.contains("95 % CI"),
        "{md}"
    );
    assert!(md.contains("| **mean** | **1.0000** |"), "{md}");
    let i = scan_r.auc_interval.unwrap();
    assert!(i.low <= scan_r.auc.unwrap() && scan_r.auc.unwrap() <= i.high);
    // same seed, same interval
    assert_eq!(
        ClassificationReport::compute(&y, &s, 0.5, Some(&opts))
            .unwrap()
            .auc_interval,
        Some(i)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// AUC is invariant under strictly increasing transforms, and
    /// AUC(−s) = 1 − AUC(s).
    #[test]
    fn auc_invariances(data in prop::collection::vec((any::<bool>(), 0u8..20), 2..60)) {
        let y: Vec<f64> = data.iter().map(|d| f64::from(u8::from(d.0))).collect();
        let s: Vec<f64> = data.iter().map(|d| f64::from(d.1) / 19.0).collect();
        prop_assume!(y.contains(&1.0) && y.contains(&0.0));
        let a = roc_auc(&y, &s).unwrap();
        let t: Vec<f64> = s.iter().map(|v| (3.0 * v).exp() - 7.0).collect();
        prop_assert!((roc_auc(&y, &t).unwrap() - a).abs() < 1e-12);
        let n: Vec<f64> = s.iter().map(|v| -v).collect();
        prop_assert!((roc_auc(&y, &n).unwrap() - (1.0 - a)).abs() < 1e-12);
    }

    /// FROC sensitivity never decreases as the allowed FP rate grows.
    #[test]
    fn froc_is_monotone(cands in prop::collection::vec((0usize..4, -20.0f64..20.0, 0.0f64..1.0), 1..40),
                        lesions in prop::collection::vec((0usize..4, -20.0f64..20.0, 0.5f64..5.0), 1..8)) {
        let mut scans = vec![ScanDetections::default(); 4];
        for (s, x, score) in cands { scans[s].candidates.push(Candidate { point: [x, 0.0, 0.0], score }); }
        for (s, x, r) in lesions { scans[s].lesions.push(Lesion { centre: [x, 0.0, 0.0], radius_mm: r }); }
        let rates: Vec<f64> = (0..30).map(|i| f64::from(i) * 0.25).collect();
        let f = froc(&scans, &FrocOptions::default().with_fp_rates(rates)).unwrap();
        for w in f.sensitivity_at.windows(2) { prop_assert!(w[1].1 >= w[0].1); }
        for w in f.curve.windows(2) {
            prop_assert!(w[1].fp_per_scan >= w[0].fp_per_scan && w[1].sensitivity >= w[0].sensitivity);
        }
    }

    /// The bootstrap interval contains the point estimate.
    #[test]
    fn bootstrap_contains_estimate(data in prop::collection::vec((any::<bool>(), 0.0f64..1.0), 6..40), seed in any::<u64>()) {
        let y: Vec<f64> = data.iter().map(|d| f64::from(u8::from(d.0))).collect();
        let s: Vec<f64> = data.iter().map(|d| d.1).collect();
        prop_assume!(y.iter().filter(|&&v| v == 1.0).count() >= 2 && y.iter().filter(|&&v| v == 0.0).count() >= 2);
        let i = auc_interval(&y, &s, &BootstrapOptions::default().with_resamples(100).with_seed(seed)).unwrap();
        prop_assert!(i.low <= i.estimate && i.estimate <= i.high);
        prop_assert!(i.low >= 0.0 && i.high <= 1.0);
    }
}

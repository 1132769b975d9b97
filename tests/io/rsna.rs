//! The RSNA layout: a small dataset with the problems of the real one
//! (a series without a folder, a folder without a row, a malformed
//! coordinates string, a localizer on a missing instance, mixed
//! orientations inside one series) — each reported, none fatal.

use aneu::io::{
    Affine, DatasetIssue, DicomWriteOptions, Error, Localizer, Location, Modality, RsnaDataset, SeriesLabels, Volume,
    write_enhanced, write_localizers_csv, write_series, write_train_csv,
};
use ndarray::Array3;

fn vol(origin: [f64; 3]) -> Volume<f32> {
    let a = Affine::from_parts([[-0.5, 0.0, 0.0], [0.0, 0.0, 0.7], [0.0, -0.6, 0.0]], origin).unwrap();
    Volume::new(
        Array3::from_shape_fn((4, 5, 6), |(k, j, i)| (k * 100 + j * 10 + i) as f32),
        a,
    )
    .unwrap()
}

fn labels(uid: &str, m: Modality, loc: Option<Location>) -> SeriesLabels {
    let mut locations = [false; 13];
    if let Some(l) = loc {
        locations[l.index()] = true;
    }
    SeriesLabels {
        series_uid: uid.into(),
        patient_age: Some(61),
        patient_sex: Some("Female".into()),
        modality: m,
        locations,
        aneurysm_present: loc.is_some(),
    }
}

#[test]
fn rsna_dataset_reports_problems_and_maps_localizers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let series = root.join("series");
    // 1.1: a coronal single-frame CTA series
    let w1 = write_series(
        &vol([10.0, 20.0, 30.0]),
        series.join("1.1"),
        &DicomWriteOptions::default().with_series_uid("1.1").with_modality("CT"),
    )
    .unwrap();
    // 1.2: one Enhanced multi-frame MRA file
    let w2 = write_enhanced(
        &vol([-5.0, 0.0, 12.0]),
        series.join("1.2").join("mf.dcm"),
        &DicomWriteOptions::default().with_series_uid("1.2"),
    )
    .unwrap();
    // 1.3: two stacks with different orientations in one series
    let o3 = DicomWriteOptions::default().with_series_uid("1.3");
    write_series(&vol([0.0; 3]), series.join("1.3"), &o3).unwrap();
    let axial = Volume::new(Array3::<f32>::zeros((4, 5, 6)), Affine::identity()).unwrap();
    let sops = (0..4).map(|k| format!("1.3.9.{k}")).collect();
    write_series(&axial, series.join("1.3"), &o3.with_sop_uids(sops)).unwrap();
    // 1.9: a folder without a label row
    write_series(
        &vol([0.0; 3]),
        series.join("1.9"),
        &DicomWriteOptions::default().with_series_uid("1.9"),
    )
    .unwrap();

    write_train_csv(
        root.join("train.csv"),
        &[
            labels("1.1", Modality::Cta, Some(Location::AcomA)),
            labels("1.2", Modality::Mra, Some(Location::BasilarTip)),
            labels("1.3", Modality::MriT2, None),
            labels("1.4", Modality::MriT1post, None), // no folder
        ],
    )
    .unwrap();
    let loc = |s: &str, sop: &str, x, y, f, l| Localizer {
        series_uid: s.into(),
        sop_uid: sop.into(),
        x,
        y,
        frame: f,
        location: l,
    };
    write_localizers_csv(
        root.join("train_localizers.csv"),
        &[
            loc("1.1", &w1[2].sop_uid, 3.25, 1.5, None, Location::AcomA),
            loc("1.1", "9.9.9", 1.0, 1.0, None, Location::AcomA), // missing SOP
            loc("1.2", &w2.sop_uid, 4.0, 2.0, Some(3), Location::BasilarTip),
        ],
    )
    .unwrap();
    // a malformed row, appended by hand
    let mut text = std::fs::read_to_string(root.join("train_localizers.csv")).unwrap();
    text.push_str("1.2,1.2.1,\"{'x': 4.0}\",Basilar Tip\n");
    std::fs::write(root.join("train_localizers.csv"), text).unwrap();

    let ds = RsnaDataset::open(root).unwrap();
    let issues = ds.issues();
    assert!(
        issues.contains(&DatasetIssue::MissingSeriesFolder {
            series_uid: "1.4".into()
        }),
        "{issues:?}"
    );
    assert!(
        issues.contains(&DatasetIssue::UnlabelledSeries {
            series_uid: "1.9".into()
        }),
        "{issues:?}"
    );
    assert!(
        issues
            .iter()
            .any(|i| matches!(i, DatasetIssue::BadRow { line: 5, reason, .. } if reason.contains("no 'y'"))),
        "{issues:?}"
    );
    // 1.2 lost an annotation to the malformed row: rejected, not trained
    // on as if it had none; 1.4 is listed but missing; 1.9 is unlabelled
    assert_eq!(ds.series_uids().collect::<Vec<_>>(), ["1.1", "1.3", "1.9"]);
    let rejected: Vec<(Option<&str>, bool)> = ds
        .rejections()
        .iter()
        .map(|r| (r.series_uid.as_deref(), r.is_missing()))
        .collect();
    assert_eq!(rejected, [(Some("1.2"), false), (Some("1.4"), true)], "{rejected:?}");
    assert!(ds.labels("1.9").is_none() && ds.labels("1.2").is_none());
    let l = ds.labels("1.1").unwrap();
    assert!(l.has(Location::AcomA) && l.aneurysm_present && l.modality == Modality::Cta && l.patient_age == Some(61));

    // 1.1: the localizer lands on slice 2 at (3.25, 1.5); the missing SOP is its own error
    let s1 = ds.read_series("1.1").unwrap();
    let mapped = ds.map_localizers(&s1);
    assert_eq!(mapped.len(), 2);
    let m = mapped[0].as_ref().unwrap();
    // written as slice 2; this grid's k axis points against the slice
    // normal, so the reader (k along the normal) puts it at k = 1
    let want = vol([10.0, 20.0, 30.0]).voxel_to_world(aneu::io::Voxel::new(3.25, 1.5, 2.0));
    assert!(m.world.distance(&want) < 1e-6, "{:?} vs {want:?}", m.world);
    assert!((m.voxel.i - 3.25).abs() < 1e-6 && (m.voxel.j - 1.5).abs() < 1e-6 && (m.voxel.k - 1.0).abs() < 1e-6);
    assert!(matches!(mapped[1], Err(Error::UnknownInstance { .. })));

    // 1.2: the frame of an Enhanced file
    let s2 = ds.read_series("1.2").unwrap();
    let m = ds.map_localizers(&s2).remove(0).unwrap();
    let want = vol([-5.0, 0.0, 12.0]).voxel_to_world(aneu::io::Voxel::new(4.0, 2.0, 3.0));
    assert!(m.world.distance(&want) < 1e-6, "{:?} vs {want:?}", m.world);
    assert!((m.voxel.k - 0.0).abs() < 1e-6 && (m.voxel.i - 4.0).abs() < 1e-6);

    // 1.3 fails alone, with a clear error
    let e = ds.read_series("1.3").unwrap_err();
    assert!(matches!(e, Error::MixedOrientation { .. }), "{e}");
}

#[test]
fn wrong_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train.csv"), "SeriesInstanceUID,Modality\n1,CTA\n").unwrap();
    let e = RsnaDataset::open(dir.path()).unwrap_err();
    assert!(matches!(e, Error::InvalidCsv { line: 1, .. }), "{e}");
}

#[test]
fn csv_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![
        labels("1.1", Modality::MriT1post, Some(Location::LeftPcomA)),
        labels("1.2", Modality::Mra, None),
    ];
    write_train_csv(dir.path().join("t.csv"), &rows).unwrap();
    let (back, issues) = aneu::io::read_train_csv(dir.path().join("t.csv")).unwrap();
    assert!(issues.is_empty());
    assert_eq!(back, rows);
    let header = std::fs::read_to_string(dir.path().join("t.csv")).unwrap();
    assert!(header.starts_with(
        "SeriesInstanceUID,PatientAge,PatientSex,Modality,Left Infraclinoid Internal Carotid Artery,Right Infraclinoid"
    ));
    assert!(
        header
            .lines()
            .next()
            .unwrap()
            .ends_with("Basilar Tip,Other Posterior Circulation,Aneurysm Present")
    );
}

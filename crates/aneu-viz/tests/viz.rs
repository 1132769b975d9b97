//! aneu-viz: orientation labels against the affine, overlay and marker
//! positions, and the HTML reports' structure.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use aneu_infer::{Detection, ScanPrediction};
use aneu_io::{Affine, GridSize, Location, Modality, Volume, WorldPoint};
use aneu_viz::*;
use ndarray::Array3;

/// An LPS-stored volume (i → left, j → posterior, k → superior; 1 × 1.5 ×
/// 2 mm) with one bright voxel at `w`.
fn lps_volume_with(w: WorldPoint) -> Volume<f32> {
    let aff = Affine::from_parts(
        [[-1.0, 0.0, 0.0], [0.0, -1.5, 0.0], [0.0, 0.0, 2.0]],
        [20.0, 30.0, -20.0],
    )
    .unwrap();
    let mut v = Volume::new(Array3::<f32>::zeros((20, 40, 40)), aff).unwrap();
    let x = v.world_to_voxel(w);
    let idx = x.nearest_index(v.size()).unwrap();
    v.data_mut()[idx.to_kji()] = 1.0;
    v
}

fn bright_pixel(view: &View) -> (usize, usize) {
    let mut best = (0, 0);
    for ((r, c), v) in view.pixels.indexed_iter() {
        if *v > view.pixels[best] {
            best = (r, c);
        }
    }
    best
}

#[test]
fn labels_and_sides_follow_the_affine() {
    // the volume spans x ∈ [−19, 20], y ∈ [−28.5, 30], z ∈ [−20, 18]
    let right = WorldPoint::new(15.0, 0.0, 0.0); // patient's right
    let s = Scene::new(&lps_volume_with(right), None).unwrap();
    assert_eq!(s.image.affine().axis_codes_string(), "RAS");
    let ax = s.slice_at(Plane::Axial, right, Convention::Radiological);
    assert_eq!(ax.labels, ['R', 'L', 'A', 'P']);
    let (_, c) = bright_pixel(&ax);
    assert!(c < ax.dim().1 / 2, "radiological: right on the left ({c})");
    let ax = s.slice_at(Plane::Axial, right, Convention::Neurological);
    assert_eq!(ax.labels, ['L', 'R', 'A', 'P']);
    assert!(bright_pixel(&ax).1 > ax.dim().1 / 2);
    let co = s.slice_at(Plane::Coronal, right, Convention::Radiological);
    assert_eq!(co.labels, ['R', 'L', 'S', 'I']);
    assert!(bright_pixel(&co).1 < co.dim().1 / 2);

    let anterior_superior = WorldPoint::new(0.0, 25.0, 14.0);
    let s = Scene::new(&lps_volume_with(anterior_superior), None).unwrap();
    let sa = s.slice_at(Plane::Sagittal, anterior_superior, Convention::Radiological);
    assert_eq!(sa.labels, ['A', 'P', 'S', 'I']);
    let (r, c) = bright_pixel(&sa);
    assert!(
        c < sa.dim().1 / 2 && r < sa.dim().0 / 2,
        "anterior left, superior top: {r}, {c}"
    );
    let ax = s.slice_at(Plane::Axial, anterior_superior, Convention::Radiological);
    assert!(bright_pixel(&ax).0 < ax.dim().0 / 2, "anterior at the top");
    // projection agrees with where the voxel is drawn
    let (pr, pc, depth) = sa.project(anterior_superior);
    assert_eq!((pr.round() as usize, pc.round() as usize), (r, c));
    assert!(depth <= 0.5);
    // the MIP finds the voxel from any slice
    let mip = s.mip(Plane::Coronal, None, Convention::Radiological);
    assert_eq!(mip.pixels.iter().fold(0.0f32, |a, b| a.max(*b)), 1.0);
    // a slab away from the voxel misses it
    let slab = s.mip(
        Plane::Axial,
        Some((WorldPoint::new(0.0, 0.0, -14.0), 3.0)),
        Convention::Radiological,
    );
    assert_eq!(slab.pixels.iter().fold(0.0f32, |a, b| a.max(*b)), 0.0);
}

#[test]
fn overlay_and_markers_land_on_the_projected_point() {
    let p = WorldPoint::new(-8.0, 10.0, 2.0);
    let img = lps_volume_with(p);
    let prob = img.map(|v| if *v > 0.0 { 0.95 } else { 0.0 });
    let s = Scene::new(&img, Some(&prob)).unwrap();
    let view = s.slice_at(Plane::Axial, p, Convention::Radiological);
    let mut o = RenderOptions::new(Window {
        centre: 10.0,
        width: 1.0,
    }); // image renders black
    o.pixels_per_mm = 4.0;
    o.labels = false;
    o.colour_bar = false;
    let (row, col, _) = view.project(p);
    let (x, y) = to_pixel(&view, &o, row, col);
    let r = render(&view, &o).unwrap();
    // the heatmap is at the point, and nowhere far from it
    let at = r.get_pixel(x.round() as u32, y.round() as u32);
    assert!(at[0] > 120 && at[1] > 120, "heat at the point: {at:?}"); // heat(0.95) at 57 % opacity
    let far = r.get_pixel((x.round() as u32 + 40) % r.width(), y.round() as u32);
    assert_eq!(far[0], 0);
    // a cyan circle of 3 mm around it
    o.overlay_floor = None;
    o.markers = vec![Marker {
        at: p,
        colour: colours::CANDIDATE,
        radius_mm: 3.0,
        max_depth_mm: 1.0,
    }];
    let r = render(&view, &o).unwrap();
    let on_circle = r.get_pixel((x + 12.0).round() as u32, y.round() as u32);
    assert_eq!(*on_circle, colours::CANDIDATE);
    assert_ne!(*r.get_pixel(x.round() as u32, y.round() as u32), colours::CANDIDATE);
    // a marker far from the slice is not drawn
    o.markers[0].at = WorldPoint::new(-8.0, 10.0, 12.0);
    let r = render(&view, &o).unwrap();
    assert!(r.pixels().all(|px| *px != colours::CANDIDATE));
}

fn prediction(img: &Volume<f32>, points: &[WorldPoint]) -> ScanPrediction {
    ScanPrediction {
        series_uid: "1.2.3.4".into(),
        modality: Modality::Mra,
        aneurysm_present: 0.8,
        locations: [0.1; 13],
        threshold: 0.5,
        calibrated: true,
        positive: true,
        candidates: points
            .iter()
            .enumerate()
            .map(|(n, w)| Detection {
                score: 0.8 - 0.1 * n as f64,
                peak: 0.8,
                patch_score: 0.5,
                second_stage: None,
                rescored: None,
                vessel: None,
                voxel: img.world_to_voxel(*w),
                world: *w,
                locations: Some([0.0; 13]),
                location: Some(Location::BasilarTip),
                artery: Some(Location::BasilarTip),
                territory: None,
                dicom: None,
            })
            .collect(),
        grid: aneu_preproc::Grid {
            affine: *img.affine(),
            size: GridSize::from_kji(img.size().to_kji()),
        },
        seconds: 1.0,
    }
}

#[test]
fn series_and_dataset_reports() {
    let p1 = WorldPoint::new(5.0, 0.0, 0.0);
    let p2 = WorldPoint::new(-10.0, 12.0, 6.0);
    let img = lps_volume_with(p1);
    let pred = prediction(&img, &[p1, p2]);
    let dir = tempfile::tempdir().unwrap();
    let r = SeriesReport {
        prediction: &pred,
        image: &img,
        probability: None,
        truth: &[p1],
        window: Window {
            centre: 0.5,
            width: 1.0,
        },
        convention: Convention::Radiological,
        viewer_px: 96,
        detailed: 5,
    };
    let path = write_series_report(&r, dir.path()).unwrap();
    let html = std::fs::read_to_string(&path).unwrap();
    assert_eq!(html.matches("<tr class=\"cand\"").count(), 2);
    let scene = Scene::new(&img, None).unwrap();
    let k = scene.index_at(Plane::Axial, p2);
    assert!(html.contains(&format!("data-axial=\"{k}\"")));
    assert!(html.contains("Basilar Tip"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page must work offline"
    );
    // every slice of every plane is embedded, and overlay versions where a
    // marker is near
    let slices: usize = Plane::ALL.iter().map(|p| scene.slices(*p)).sum();
    assert!(html.matches("data:image/png;base64,").count() > slices);

    let mut neg = prediction(&img, &[]);
    neg.series_uid = "5.6.7".into();
    neg.aneurysm_present = 0.3;
    neg.positive = false;
    let rows = [
        DatasetRow {
            prediction: &pred,
            truth: Some(true),
            link: Some("1.2.3.4.html".into()),
        },
        DatasetRow {
            prediction: &neg,
            truth: Some(false),
            link: None,
        },
    ];
    let report = aneu_metrics::EvaluationReport {
        scan: Some(aneu_metrics::ClassificationReport::compute(&[1.0, 0.0], &[0.8, 0.3], 0.5, None).unwrap()),
        ..Default::default()
    };
    let idx = write_dataset_report(Some(&report), &rows, dir.path()).unwrap();
    let html = std::fs::read_to_string(idx).unwrap();
    assert!(html.contains("href=\"1.2.3.4.html\""));
    assert_eq!(html.matches("<svg").count(), 1, "the ROC plot");
    // confusion at 0.5: one TP, one TN
    assert!(html.contains("<tr><th>aneurysm</th><td>1</td><td>0</td></tr><tr><th>none</th><td>0</td><td>1</td></tr>"));
}

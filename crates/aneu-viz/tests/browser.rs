//! The HTML report in a real browser: headless Chromium runs the page's
//! JavaScript. The page reads test hooks from its URL fragment
//! (`#axial=N` moves the axial slider, `#click=K` clicks candidate row K,
//! both through the same handlers the user's input fires), and
//! `--dump-dom` returns the DOM after the scripts ran.
//!
//! Runs when `chromium` is on the PATH; `ANEU_BROWSER_TEST=1` (set by
//! `.ci/run`, which installs Debian's `chromium`) makes a missing browser
//! a failure instead of a skip.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;

use aneu_infer::{Detection, ScanPrediction};
use aneu_io::{Affine, GridSize, Location, Modality, Volume, WorldPoint};
use aneu_viz::*;
use ndarray::Array3;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn flags() -> Vec<&'static str> {
    vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--virtual-time-budget=5000",
    ]
}

fn dump(browser: &str, page: &Path, fragment: &str) -> String {
    let url = format!("file://{}#{fragment}", page.display());
    let out = Command::new(browser)
        .args(flags())
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The `id="img-<plane>"` element's `data-slice` and `src` in a dumped DOM.
fn shown(dom: &str, plane: &str) -> (usize, String) {
    let at = dom.find(&format!("id=\"img-{plane}\"")).expect("the viewer image");
    let start = dom[..at].rfind("<img").unwrap();
    let end = start + dom[start..].find('>').unwrap();
    let tag = &dom[start..end];
    let attr = |name: &str| -> String {
        let i = tag
            .find(&format!("{name}=\""))
            .unwrap_or_else(|| panic!("{name} in {tag:.200}"))
            + name.len()
            + 2;
        tag[i..i + tag[i..].find('"').unwrap()].to_string()
    };
    (attr("data-slice").parse().unwrap(), attr("src"))
}

#[test]
fn report_works_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("ANEU_BROWSER_TEST").is_err(),
            "ANEU_BROWSER_TEST is set but no chromium is installed"
        );
        eprintln!("skipped: no chromium on the PATH");
        return;
    };
    // a 40 mm head-like ball with two bright spots, and two candidates on them
    let aff = Affine::from_parts(
        [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.5]],
        [20.0, 20.0, -15.0],
    )
    .unwrap();
    let data = Array3::from_shape_fn((24, 40, 40), |(k, j, i)| {
        let d = ((k as f32 * 1.5 - 18.0).powi(2) + (j as f32 - 20.0).powi(2) + (i as f32 - 20.0).powi(2)).sqrt();
        if d < 17.0 {
            0.3 + 0.01 * ((i * 7 + j * 3 + k) % 5) as f32
        } else {
            0.0
        }
    });
    let mut img = Volume::new(data, aff).unwrap();
    let pts = [WorldPoint::new(6.0, -4.0, -9.0), WorldPoint::new(-7.0, 5.0, 6.0)];
    for p in pts {
        let v = img.world_to_voxel(p).nearest_index(img.size()).unwrap();
        img.data_mut()[v.to_kji()] = 1.0;
    }
    let pred = ScanPrediction {
        series_uid: "1.2.826.0.9".into(),
        modality: Modality::Cta,
        aneurysm_present: 0.9,
        locations: [0.2; 13],
        threshold: 0.5,
        calibrated: true,
        positive: true,
        candidates: pts
            .iter()
            .enumerate()
            .map(|(n, w)| Detection {
                score: 0.9 - 0.3 * n as f64,
                peak: 0.9,
                patch_score: 0.5,
                voxel: img.world_to_voxel(*w),
                world: *w,
                locations: None,
                location: Some(Location::AcomA),
                dicom: None,
            })
            .collect(),
        grid: aneu_preproc::Grid {
            affine: *img.affine(),
            size: GridSize::from_kji(img.size().to_kji()),
        },
        seconds: 1.0,
    };
    let dir = tempfile::tempdir().unwrap();
    let page = write_series_report(
        &SeriesReport {
            prediction: &pred,
            image: &img,
            probability: None,
            truth: &pts[..1],
            window: Window {
                centre: 0.5,
                width: 1.0,
            },
            convention: Convention::Radiological,
            viewer_px: 120,
            detailed: 2,
        },
        dir.path(),
    )
    .unwrap();
    let scene = Scene::new(&img, None).unwrap();

    // 1. it renders: the candidate table has its two rows, and a
    //    screenshot is not blank
    let dom = dump(browser, &page, "");
    assert_eq!(dom.matches("class=\"cand\"").count(), 2);
    let shot = dir.path().join("shot.png");
    let out = Command::new(browser)
        .args(flags())
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1000,1400")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = image::open(&shot).unwrap().to_rgb8();
    let first = *png.get_pixel(0, 0);
    let differing = png.pixels().filter(|p| **p != first).count();
    assert!(differing > 10_000, "a blank screenshot ({differing} differing pixels)");

    // 2. moving the axial slider changes the displayed image
    let (s5, src5) = shown(&dump(browser, &page, "axial=5"), "axial");
    let (s15, src15) = shown(&dump(browser, &page, "axial=15"), "axial");
    assert_eq!((s5, s15), (5, 15));
    assert_ne!(src5, src15);
    assert!(src5.starts_with("data:image/png;base64,"));

    // 3. clicking a candidate row jumps every plane to it
    for (n, p) in pts.iter().enumerate() {
        let dom = dump(browser, &page, &format!("click={n}"));
        for plane in Plane::ALL {
            assert_eq!(
                shown(&dom, plane.name()).0,
                scene.index_at(plane, *p),
                "candidate {n}, {}",
                plane.name()
            );
        }
    }
}

//! The HTML report in a real browser: chromedriver drives headless
//! Chromium over the WebDriver protocol, and the test uses the page as a
//! user does: it reads the candidate table, takes a screenshot, moves the
//! axial slider with the arrow keys and clicks candidate rows.
//!
//! Runs when `chromium` and `chromedriver` are on the PATH;
//! `ANEU_BROWSER_TEST=1` (set by `.ci/run`, which installs Debian's
//! `chromium` and `chromium-driver`) makes a missing browser a failure
//! instead of a skip.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use aneu_infer::{Detection, ScanPrediction};
use aneu_io::{Affine, GridSize, Location, Modality, Volume, WorldPoint};
use aneu_viz::*;
use ndarray::Array3;

/// A chromedriver process on a free port, killed on drop.
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn installed(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The browser binary chromedriver should drive.
fn browser() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(|b| {
            let out = Command::new("which").arg(b).output().ok()?;
            let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
            (out.status.success() && installed(&path)).then_some(path)
        })
}

impl Driver {
    /// Starts chromedriver on a port the system just handed out. Another
    /// process may take that port between its release here and
    /// chromedriver's bind; chromedriver then exits, and the start is
    /// retried on a new port.
    fn start() -> Driver {
        for _ in 0..5 {
            if let Some(d) = Driver::try_start() {
                return d;
            }
        }
        panic!("chromedriver exited on five free ports in a row");
    }

    /// One start: the driver once it answers ready, `None` when it exits
    /// first.
    fn try_start() -> Option<Driver> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let t0 = Instant::now();
        loop {
            if d.child.try_wait().unwrap().is_some() {
                return None;
            }
            let ready = ureq::get(&format!("{}/status", d.base))
                .call()
                .ok()
                .and_then(|r| r.into_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return Some(d);
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One WebDriver command; returns its `value`.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let resp = match body {
            Some(b) => ureq::request(method, &url).send_json(b),
            None => ureq::request(method, &url).call(),
        };
        let v: Value = match resp {
            Ok(r) => r.into_json().unwrap(),
            Err(ureq::Error::Status(code, r)) => {
                panic!("{method} {path}: HTTP {code}: {}", r.into_string().unwrap_or_default())
            }
            Err(e) => panic!("{method} {path}: {e}"),
        };
        v["value"].clone()
    }
}

/// A WebDriver session in headless Chromium.
struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl<'a> Session<'a> {
    fn new(driver: &'a Driver, binary: &str) -> Session<'a> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,1400",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--no-first-run", "--disable-quic"]
            }
        }}});
        let v = driver.cmd("POST", "/session", Some(caps));
        Session {
            driver,
            id: v["sessionId"].as_str().unwrap().to_string(),
        }
    }
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver.cmd(method, &format!("/session/{}{path}", self.id), body)
    }
    fn elements(&self, css: &str) -> Vec<String> {
        let v = self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap_or_else(|| panic!("{css}: {e}")).to_string())
            .collect()
    }
    fn element(&self, css: &str) -> String {
        let mut all = self.elements(css);
        assert_eq!(all.len(), 1, "{css}");
        all.remove(0)
    }
    fn property(&self, el: &str, name: &str) -> Value {
        self.cmd("GET", &format!("/element/{el}/property/{name}"), None)
    }
    /// The plane's image: the slice it shows (its `data-slice`) and its
    /// `src`.
    fn shown(&self, plane: &str) -> (usize, String) {
        let img = self.element(&format!("#img-{plane}"));
        let slice = self
            .cmd("GET", &format!("/element/{img}/attribute/data-slice"), None)
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        (slice, self.property(&img, "src").as_str().unwrap().to_string())
    }
    fn slider(&self, plane: &str) -> usize {
        let s = self.element(&format!("#slider-{plane}"));
        self.property(&s, "value").as_str().unwrap().parse().unwrap()
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.driver.base, self.id)).call();
    }
}

#[test]
fn report_works_in_headless_chromium() {
    let binary = browser();
    let Some(binary) = binary.filter(|_| installed("chromedriver")) else {
        assert!(
            std::env::var("ANEU_BROWSER_TEST").is_err(),
            "ANEU_BROWSER_TEST is set but chromium or chromedriver is missing"
        );
        eprintln!("skipped: no chromium and chromedriver on the PATH");
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
                second_stage: None,
                rescored: None,
                vessel: None,
                voxel: img.world_to_voxel(*w),
                world: *w,
                locations: None,
                location: Some(Location::AcomA),
                artery: None,
                territory: None,
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

    let driver = Driver::start();
    let web = Session::new(&driver, &binary);
    web.cmd(
        "POST",
        "/url",
        Some(json!({"url": format!("file://{}", page.display())})),
    );

    // 1. it renders: the candidate table has its two rows, and a
    //    screenshot is not blank
    let rows = web.elements("tr.cand");
    assert_eq!(rows.len(), 2);
    let shot = web.cmd("GET", "/screenshot", None);
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot.as_str().unwrap())
        .unwrap();
    let png = image::load_from_memory(&png).unwrap().to_rgb8();
    let first = *png.get_pixel(0, 0);
    let differing = png.pixels().filter(|p| **p != first).count();
    assert!(differing > 10_000, "a blank screenshot ({differing} differing pixels)");
    let (mid, src_mid) = web.shown("axial");
    assert_eq!(mid, web.slider("axial"));
    assert!(src_mid.starts_with("data:image/png;base64,"));

    // 2. moving the axial slider (the keyboard's arrow keys on the focused
    //    range input, as a user does) changes the displayed image
    let slider = web.element("#slider-axial");
    let right = "\u{E014}".repeat(4);
    web.cmd(
        "POST",
        &format!("/element/{slider}/value"),
        Some(json!({"text": right})),
    );
    let (moved, src_moved) = web.shown("axial");
    assert_eq!(moved, mid + 4);
    assert_eq!(web.slider("axial"), mid + 4);
    assert_ne!(src_moved, src_mid);

    // 3. clicking a candidate row jumps every plane to it
    for (n, (row, p)) in rows.iter().zip(pts).enumerate() {
        web.cmd("POST", &format!("/element/{row}/click"), Some(json!({})));
        for plane in Plane::ALL {
            assert_eq!(
                web.shown(plane.name()).0,
                scene.index_at(plane, p),
                "candidate {n}, {}",
                plane.name()
            );
        }
    }
}

//! Self-contained HTML reports: one page per series (outputs, candidates,
//! orthogonal views, MIPs, crops and an offline slice viewer) and one page
//! per dataset (metrics, ROC and FROC plots, confusion matrix, links).
//! Images are embedded as data URIs; the pages load nothing from anywhere.

use aneu_io::AtPath;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use aneu_infer::{Detection, ScanPrediction};
use aneu_io::{Location, Volume, WorldPoint};
use aneu_metrics::{EvaluationReport, RSNA_COLUMNS, roc_curve};
use image::imageops;
use rayon::prelude::*;

use crate::render::{Marker, RenderOptions, Window, colours, data_uri, render, to_pixel};
use crate::view::{Convention, Plane, Scene, View};
use crate::{Error, Result};

/// What a series page shows.
#[derive(Clone, Debug)]
pub struct SeriesReport<'a> {
    /// The prediction.
    pub prediction: &'a ScanPrediction,
    /// The image the prediction ran on (the preprocessed image, on
    /// `prediction.grid`).
    pub image: &'a Volume<f32>,
    /// The probability map, when written.
    pub probability: Option<&'a Volume<f32>>,
    /// Ground-truth aneurysm centres (RAS mm), when known.
    pub truth: &'a [WorldPoint],
    /// The grey window.
    pub window: Window,
    /// The display convention.
    pub convention: Convention,
    /// The viewer's largest image edge in pixels.
    pub viewer_px: u32,
    /// Candidates shown in detail (views, slab MIP, crops); the table
    /// lists all of them.
    pub detailed: usize,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;background:#fafafa;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}\
th{background:#eee}td.l,th.l{text-align:left}tr.cand{cursor:pointer}tr.cand:hover{background:#def}\
.views img{margin:2px;background:#000;image-rendering:pixelated}.pos{color:#b00;font-weight:bold}\
.viewer{display:flex;gap:12px;flex-wrap:wrap}.viewer div{text-align:center}";

fn markers(r: &SeriesReport<'_>, depth: f64) -> Vec<Marker> {
    let mut m: Vec<Marker> = r
        .truth
        .iter()
        .map(|t| Marker {
            at: *t,
            colour: colours::TRUTH,
            radius_mm: 4.0,
            max_depth_mm: depth,
        })
        .collect();
    m.extend(r.prediction.candidates.iter().map(|c| Marker {
        at: c.world,
        colour: colours::CANDIDATE,
        radius_mm: 3.0,
        max_depth_mm: depth,
    }));
    m
}

fn scale_for(scene: &Scene, max_px: u32) -> f64 {
    let sz = scene.image.size().to_ijk();
    let sp = scene.image.spacing();
    let mm = (0..3).map(|a| sz[a] as f64 * sp[a]).fold(1.0, f64::max);
    f64::from(max_px.max(16)) / mm
}

/// Writes `<dir>/<SeriesInstanceUID>.html` and returns its path.
///
/// # Errors
/// [`Error::Grid`] when the probability map is on another grid,
/// rendering errors, [`Error::File`].
pub fn write_series_report(r: &SeriesReport<'_>, dir: impl AsRef<Path>) -> Result<PathBuf> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).at(dir)?;
    let mut page = SeriesPage::new(r)?;
    page.summary();
    page.outputs();
    page.candidates();
    page.viewer()?;
    page.mips()?;
    for (n, c) in r.prediction.candidates.iter().enumerate().take(r.detailed) {
        page.candidate_detail(n, c)?;
    }
    page.h.push_str("</body></html>");
    let path = dir.join(format!("{}.html", r.prediction.series_uid));
    aneu_io::write_atomic(&path, page.h.as_bytes())?;
    Ok(path)
}

/// A series page being written, one section after the other.
struct SeriesPage<'r, 'a> {
    r: &'r SeriesReport<'a>,
    scene: Scene,
    /// Pixels per millimetre of the views.
    ppm: f64,
    /// The HTML so far.
    h: String,
}

impl<'r, 'a> SeriesPage<'r, 'a> {
    fn new(r: &'r SeriesReport<'a>) -> Result<Self> {
        let scene = Scene::new(r.image, r.probability)?;
        let ppm = scale_for(&scene, r.viewer_px);
        Ok(Self {
            r,
            scene,
            ppm,
            h: String::new(),
        })
    }

    /// The document head, the title and the series' summary table.
    fn summary(&mut self) {
        let (r, h) = (self.r, &mut self.h);
        let p = r.prediction;
        let _ = write!(
            h,
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{uid}</title><style>{STYLE}</style></head><body>\
             <p><a href=\"index.html\">← dataset</a></p><h1>Series {uid}</h1>",
            uid = esc(&p.series_uid)
        );
        let sp = r.image.spacing();
        let sz = r.image.size();
        let _ = write!(
            h,
            "<table><tr><th class=l>SeriesInstanceUID</th><td class=l>{}</td></tr>\
             <tr><th class=l>modality</th><td class=l>{}</td></tr>\
             <tr><th class=l>grid</th><td class=l>{} × {} × {} voxels, {:.2} × {:.2} × {:.2} mm, {}</td></tr>\
             <tr><th class=l>Aneurysm Present</th><td class=l><span class=\"{}\">{:.3}</span> (threshold {:.3}{}) → {}</td></tr>\
             <tr><th class=l>time</th><td class=l>{:.1} s</td></tr></table>",
            esc(&p.series_uid),
            p.modality,
            sz.ni,
            sz.nj,
            sz.nk,
            sp[0],
            sp[1],
            sp[2],
            r.image.affine().axis_codes_string(),
            if p.positive { "pos" } else { "" },
            p.aneurysm_present,
            p.threshold,
            if p.calibrated {
                ", calibrated"
            } else {
                ", not calibrated"
            },
            if p.positive { "positive" } else { "negative" },
            p.seconds
        );
    }

    /// The 14 outputs with their bars.
    fn outputs(&mut self) {
        let (p, h) = (self.r.prediction, &mut self.h);
        h.push_str(
            "<h2>Outputs</h2><table id=\"outputs\"><tr><th class=l>output</th><th>probability</th><th class=l></th></tr>",
        );
        for (n, name) in RSNA_COLUMNS.iter().enumerate() {
            let v = p.rsna_row()[n];
            let _ = write!(
                h,
                "<tr><td class=l>{}</td><td>{:.3}</td><td class=l><div style=\"background:{};width:{}px;height:10px\"></div></td></tr>",
                esc(name),
                v,
                if v >= p.threshold { "#c33" } else { "#69c" },
                (v.clamp(0.0, 1.0) * 200.0).round()
            );
        }
        h.push_str("</table>");
    }

    /// The candidates' table; a click on a row moves the viewer there.
    fn candidates(&mut self) {
        let (p, h) = (self.r.prediction, &mut self.h);
        h.push_str(
            "<h2>Candidates</h2><table id=\"candidates\"><tr><th>#</th><th>score</th><th class=l>location</th>\
             <th>x, y, z (mm, RAS)</th><th class=l>DICOM SOP / x / y</th></tr>",
        );
        for (n, c) in p.candidates.iter().enumerate() {
            let idx: Vec<usize> = Plane::ALL.iter().map(|pl| self.scene.index_at(*pl, c.world)).collect();
            let dicom = c.dicom.as_ref().map_or("–".to_string(), |d| {
                format!(
                    "{} {}/ {:.1} / {:.1}",
                    esc(&d.sop_uid),
                    d.frame.map_or(String::new(), |f| format!("frame {f} ")),
                    d.x,
                    d.y
                )
            });
            let _ = write!(
                h,
                "<tr class=\"cand\" data-axial=\"{}\" data-coronal=\"{}\" data-sagittal=\"{}\" onclick=\"jump(this)\">\
                 <td>{}</td><td>{:.3}</td><td class=l>{}</td><td>{:.1}, {:.1}, {:.1}</td><td class=l>{}</td></tr>",
                idx[0],
                idx[1],
                idx[2],
                n + 1,
                c.score,
                c.location.map_or("–", Location::name),
                c.world.x,
                c.world.y,
                c.world.z,
                dicom
            );
        }
        h.push_str("</table>");
    }

    /// Every slice of one plane, plain and (where there is something to
    /// overlay) with the overlay, as data URIs; encoded on every core.
    fn plane_slices(&self, pl: Plane, m: &[Marker]) -> Result<(Vec<String>, Vec<String>)> {
        let r = self.r;
        let pairs = (0..self.scene.slices(pl))
            .into_par_iter()
            .map(|s| -> Result<(String, String)> {
                let v = self.scene.slice(pl, s, r.convention);
                let mut o = RenderOptions::new(r.window);
                o.pixels_per_mm = self.ppm;
                o.overlay_floor = None;
                o.colour_bar = false;
                let a = data_uri(&image::DynamicImage::ImageRgb8(render(&v, &o)?).to_luma8())?;
                // the overlay version only where there is something to overlay
                let has_marker = m.iter().any(|k| v.project(k.at).2 <= k.max_depth_mm);
                let has_heat = v.overlay.as_ref().is_some_and(|o| o.iter().any(|p| *p >= 0.1));
                let b = if has_marker || has_heat {
                    o.overlay_floor = Some(0.1);
                    o.colour_bar = true;
                    o.markers = m.to_vec();
                    data_uri(&render(&v, &o)?)?
                } else {
                    String::new()
                };
                Ok((a, b))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(pairs.into_iter().unzip())
    }

    /// The offline viewer: every slice of each plane, plain and with the
    /// overlay, a slider per plane and the script that drives them.
    fn viewer(&mut self) -> Result<()> {
        let mut plain = Vec::new();
        let mut over = Vec::new();
        let m = markers(self.r, 3.0);
        for pl in Plane::ALL {
            let (a, b) = self.plane_slices(pl, &m)?;
            plain.push(a);
            over.push(b);
        }
        let h = &mut self.h;
        h.push_str("<h2>Viewer</h2><p><label><input type=\"checkbox\" id=\"overlay\" checked onchange=\"draw()\"> overlay (probability ≥ 0.1, truth green, candidates cyan)</label></p><div class=\"viewer\">");
        for (n, pl) in Plane::ALL.iter().enumerate() {
            let mid = self.scene.slices(*pl) / 2;
            let _ = write!(
                h,
                "<div><img id=\"img-{name}\" alt=\"{name}\"><br><input type=\"range\" id=\"slider-{name}\" min=\"0\" max=\"{max}\" value=\"{mid}\" oninput=\"draw()\"> <span id=\"idx-{name}\"></span><br>{name}</div>",
                name = pl.name(),
                max = plain[n].len() - 1
            );
        }
        h.push_str("</div>");
        let js_arr = |v: &Vec<Vec<String>>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        let _ = write!(
            h,
            "<script>\nconst PLAIN={};\nconst OVER={};\nconst PLANES=['axial','coronal','sagittal'];\n\
             function draw(){{const o=document.getElementById('overlay').checked;PLANES.forEach((p,n)=>{{\
             const s=+document.getElementById('slider-'+p).value;const img=document.getElementById('img-'+p);\
             img.src=(o&&OVER[n][s])?OVER[n][s]:PLAIN[n][s];img.dataset.slice=s;document.getElementById('idx-'+p).textContent=s;}});}}\n\
             function jump(row){{PLANES.forEach(p=>{{document.getElementById('slider-'+p).value=row.dataset[p];}});draw();}}\n\
             function applyHash(){{const h=new URLSearchParams(location.hash.slice(1));\
             PLANES.forEach(p=>{{if(h.has(p))document.getElementById('slider-'+p).value=h.get(p);}});\
             if(h.has('overlay'))document.getElementById('overlay').checked=h.get('overlay')==='1';draw();\
             if(h.has('click')){{const rows=document.querySelectorAll('tr.cand');const r=rows[+h.get('click')];if(r)r.click();}}}}\n\
             window.addEventListener('load',applyHash);\n</script>",
            js_arr(&plain),
            js_arr(&over)
        );
        Ok(())
    }

    /// Render options windowed on the view itself (a projection is
    /// brighter than any slice).
    fn self_windowed(&self, v: &View) -> RenderOptions {
        let mut o = RenderOptions::new(Window::auto(&v.pixels.iter().copied().collect::<Vec<_>>()));
        o.pixels_per_mm = self.ppm;
        o
    }

    /// The three maximum intensity projections with every marker.
    fn mips(&mut self) -> Result<()> {
        self.h
            .push_str("<h2>Maximum intensity projections</h2><div class=\"views\">");
        for pl in Plane::ALL {
            let v = self.scene.mip(pl, None, self.r.convention);
            let mut o = self.self_windowed(&v);
            o.markers = markers(self.r, f64::INFINITY);
            let uri = data_uri(&render(&v, &o)?)?;
            let _ = write!(self.h, "<img alt=\"{} MIP\" src=\"{}\">", pl.name(), uri);
        }
        self.h.push_str("</div>");
        Ok(())
    }

    /// One candidate in detail: orthogonal slices with the focal cube, an
    /// axial slab MIP, and the 32 mm crop of each plane.
    fn candidate_detail(&mut self, n: usize, c: &Detection) -> Result<()> {
        let r = self.r;
        let _ = write!(
            self.h,
            "<h3 id=\"cand-{k}\">Candidate {k}: {:.3}, {}</h3><div class=\"views\">",
            c.score,
            c.location.map_or("–", Location::name),
            k = n + 1
        );
        for pl in Plane::ALL {
            let v = self.scene.slice_at(pl, c.world, r.convention);
            let mut o = RenderOptions::new(r.window);
            o.pixels_per_mm = self.ppm;
            o.markers = markers(r, 3.0);
            o.focus = Some((c.world, 32.0));
            let img = render(&v, &o)?;
            let _ = write!(self.h, "<img alt=\"{} slice\" src=\"{}\">", pl.name(), data_uri(&img)?);
        }
        let v = self.scene.mip(Plane::Axial, Some((c.world, 10.0)), r.convention);
        let mut o = self.self_windowed(&v);
        o.markers = markers(r, 0.0);
        let uri = data_uri(&render(&v, &o)?)?;
        let _ = write!(self.h, "<img alt=\"axial slab MIP\" src=\"{uri}\">");
        self.h.push_str("<br>");
        for pl in Plane::ALL {
            let crop = self.crop(pl, c.world)?;
            let _ = write!(self.h, "<img alt=\"{} crop\" src=\"{}\">", pl.name(), data_uri(&crop)?);
        }
        self.h.push_str("</div>");
        Ok(())
    }

    /// The 32 mm square around `at` on the plane's slice through it, at
    /// 6 pixels per millimetre.
    fn crop(&self, pl: Plane, at: WorldPoint) -> Result<image::RgbImage> {
        let v = self.scene.slice_at(pl, at, self.r.convention);
        let mut o = RenderOptions::new(self.r.window);
        o.pixels_per_mm = 6.0;
        o.labels = false;
        o.colour_bar = false;
        o.markers = markers(self.r, 3.0);
        let full = render(&v, &o)?;
        let (row, col, _) = v.project(at);
        let (x, y) = to_pixel(&v, &o, row, col);
        let half = 16.0 * o.pixels_per_mm;
        let x0 = (x - half).clamp(0.0, f64::from(full.width().saturating_sub(1))) as u32;
        let y0 = (y - half).clamp(0.0, f64::from(full.height().saturating_sub(1))) as u32;
        let cw = ((2.0 * half) as u32).min(full.width() - x0).max(1);
        let ch = ((2.0 * half) as u32).min(full.height() - y0).max(1);
        Ok(imageops::crop_imm(&full, x0, y0, cw, ch).to_image())
    }
}

fn svg_plot(title: &str, x_label: &str, pts: &[(f64, f64)], x_max: f64, log_x: bool) -> String {
    let (w, hgt, m) = (320.0, 240.0, 36.0);
    let fx = |x: f64| {
        let t = if log_x {
            let lo = 0.125f64.log2();
            ((x.max(0.125)).log2() - lo) / (x_max.log2() - lo)
        } else {
            x / x_max
        };
        m + t.clamp(0.0, 1.0) * (w - 2.0 * m)
    };
    let fy = |y: f64| hgt - m - y.clamp(0.0, 1.0) * (hgt - 2.0 * m);
    let poly: Vec<String> = pts
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", fx(*x), fy(*y)))
        .collect();
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\" role=\"img\" aria-label=\"{title}\">\
         <rect x=\"{m}\" y=\"{m}\" width=\"{}\" height=\"{}\" fill=\"#fff\" stroke=\"#888\"/>\
         <polyline points=\"{}\" fill=\"none\" stroke=\"#c33\" stroke-width=\"2\"/>\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"13\">{title}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\">{x_label}</text>\
         <text x=\"12\" y=\"{}\" font-size=\"11\" transform=\"rotate(-90 12 {})\">sensitivity</text></svg>",
        w - 2.0 * m,
        hgt - 2.0 * m,
        poly.join(" "),
        w / 2.0,
        w / 2.0,
        hgt - 8.0,
        hgt / 2.0,
        hgt / 2.0
    )
}

/// One row of the dataset page.
#[derive(Clone, Debug)]
pub struct DatasetRow<'a> {
    /// The prediction.
    pub prediction: &'a ScanPrediction,
    /// The truth (`Aneurysm Present`), when known.
    pub truth: Option<bool>,
    /// The series page, relative to the dataset page.
    pub link: Option<String>,
}

/// Writes `<dir>/index.html`: the metrics of `report` (when given), the
/// ROC curve of the scan scores and the FROC curve, the confusion matrix
/// at the threshold, and a table of every series with its link.
///
/// # Errors
/// [`Error::File`].
pub fn write_dataset_report(
    report: Option<&EvaluationReport>,
    rows: &[DatasetRow<'_>],
    dir: impl AsRef<Path>,
) -> Result<PathBuf> {
    write_dataset_report_with_failures(report, rows, &[], dir.as_ref())
}

fn write_dataset_report_with_failures(
    report: Option<&EvaluationReport>,
    rows: &[DatasetRow<'_>],
    failed: &[(String, String)],
    dir: &Path,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).at(dir)?;
    let mut h = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>aneu report</title><style>{STYLE}</style></head><body><h1>aneu report: {} series</h1>",
        rows.len()
    );
    if let Some(rep) = report {
        if let Some(s) = &rep.scan {
            let c = s.confusion;
            let _ = write!(
                h,
                "<h2>Scan level (threshold {:.3})</h2><table id=\"metrics\">\
                 <tr><th class=l>ROC AUC</th><td>{}</td></tr><tr><th class=l>sensitivity</th><td>{:.3}</td></tr>\
                 <tr><th class=l>specificity</th><td>{:.3}</td></tr><tr><th class=l>accuracy</th><td>{:.3}</td></tr>\
                 <tr><th class=l>F2</th><td>{:.3}</td></tr></table>\
                 <table id=\"confusion\"><tr><th></th><th>predicted +</th><th>predicted −</th></tr>\
                 <tr><th>aneurysm</th><td>{}</td><td>{}</td></tr><tr><th>none</th><td>{}</td><td>{}</td></tr></table>",
                s.threshold,
                s.auc.map_or("–".into(), |a| format!("{a:.3}")),
                s.sensitivity,
                s.specificity,
                s.accuracy,
                s.f2,
                c.tp,
                c.fn_,
                c.fp,
                c.tn
            );
        }
        if let Some(r) = &rep.rsna {
            let _ = write!(h, "<p>RSNA weighted AUC: <b>{:.3}</b></p>", r.score);
        }
        let labelled: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| r.truth.map(|t| (f64::from(u8::from(t)), r.prediction.aneurysm_present)))
            .collect();
        let (y, s): (Vec<f64>, Vec<f64>) = labelled.into_iter().unzip();
        if let Ok(roc) = roc_curve(&y, &s, false) {
            let pts: Vec<(f64, f64)> = roc.fpr.iter().copied().zip(roc.tpr.iter().copied()).collect();
            h.push_str(&svg_plot("ROC", "false-positive rate", &pts, 1.0, false));
        }
        if let Some(d) = &rep.detection {
            let pts: Vec<(f64, f64)> = d.froc.curve.iter().map(|p| (p.fp_per_scan, p.sensitivity)).collect();
            h.push_str(&svg_plot("FROC", "false positives per scan", &pts, 8.0, true));
            let _ = write!(
                h,
                "<p>Mean FROC sensitivity {:.3}; localisation error of detected aneurysms: {}</p>",
                d.froc.mean_sensitivity,
                d.froc
                    .mean_localisation_error_mm()
                    .map_or("–".into(), |e| format!("mean {e:.2} mm"))
            );
        }
    }
    h.push_str(
        "<h2>Series</h2><table id=\"series\"><tr><th class=l>series</th><th class=l>modality</th><th>P(aneurysm)</th>\
         <th class=l>prediction</th><th class=l>truth</th><th>candidates</th></tr>",
    );
    for r in rows {
        let p = r.prediction;
        let name = match &r.link {
            Some(l) => format!("<a href=\"{}\">{}</a>", esc(l), esc(&p.series_uid)),
            None => esc(&p.series_uid),
        };
        let _ = write!(
            h,
            "<tr><td class=l>{name}</td><td class=l>{}</td><td>{:.3}</td><td class=l>{}</td><td class=l>{}</td><td>{}</td></tr>",
            p.modality,
            p.aneurysm_present,
            if p.positive {
                "<span class=pos>positive</span>"
            } else {
                "negative"
            },
            r.truth.map_or("–", |t| if t { "aneurysm" } else { "none" }),
            p.candidates.len()
        );
    }
    h.push_str("</table>");
    if !failed.is_empty() {
        h.push_str("<h2>Not rendered</h2><table id=\"failed\"><tr><th class=l>series</th><th class=l>error</th></tr>");
        for (u, e) in failed {
            let _ = write!(h, "<tr><td class=l>{}</td><td class=l>{}</td></tr>", esc(u), esc(e));
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>");
    let path = dir.join("index.html");
    aneu_io::write_atomic(&path, h.as_bytes())?;
    Ok(path)
}

/// Options of [`report_dataset`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ReportOptions {
    /// The display convention.
    pub convention: Convention,
    /// The viewer's largest image edge in pixels.
    pub viewer_px: u32,
    /// Candidates shown in detail per series.
    pub detailed: usize,
    /// A folder written by `aneu_preproc::preprocess_dataset` (`<dir>/<uid>/`)
    /// with the bundle's config: a series found there, preprocessed with
    /// the same config hash, as the same modality, onto the prediction's
    /// grid, is read instead of preprocessed again. Other series are
    /// preprocessed as without it.
    pub preprocessed: Option<PathBuf>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            convention: Convention::Radiological,
            viewer_px: 144,
            detailed: 5,
            preprocessed: None,
        }
    }
}

/// The preprocessed image of `p` from `opts.preprocessed`, when it holds
/// that series made with the config of hash `hash`, as the prediction's
/// modality ([`aneu_preproc::read_stored`]), on the prediction's grid.
fn reuse_preprocessed(opts: &ReportOptions, p: &ScanPrediction, hash: &str) -> Option<Volume<f32>> {
    let dir = opts.preprocessed.as_ref()?;
    match aneu_preproc::read_stored(dir, &p.series_uid, hash, p.modality) {
        Ok(Some(pre)) if pre.image.size() == p.grid.size && pre.image.affine().max_abs_diff(&p.grid.affine) <= 1e-3 => {
            Some(pre.image)
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(series = %p.series_uid, error = %e, "unreadable preprocessed series: preprocessing again");
            None
        }
    }
}

/// What [`report_dataset`] wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportSummary {
    /// The dataset page.
    pub index: PathBuf,
    /// Series pages written.
    pub series: usize,
    /// `(uid, error)` of the series that could not be rendered.
    pub failed: Vec<(String, String)>,
    /// The evaluation, when `input` holds labels.
    pub evaluation: Option<EvaluationReport>,
}

/// Renders a prediction folder (from `aneu_infer::predict_dataset`): for
/// each series, its DICOM folder under `input` (an RSNA-layout root, or
/// the series folder itself) is read and preprocessed again with the
/// bundle's config (from `run.json`) — or its preprocessed image is read
/// from [`ReportOptions::preprocessed`] —, its probability map is read when it
/// was written, and truth points come from `train_localizers.csv` when
/// `input` has one. Writes a page per series and `index.html` (with the
/// evaluation when `input` has labels) into `out`. A series that cannot be
/// rendered is listed on the index page; the others go on.
///
/// # Errors
/// Only for the run as a whole: an unreadable prediction folder,
/// `run.json` or bundle config, an unwritable `out`.
pub fn report_dataset(
    predictions: impl AsRef<Path>,
    input: impl AsRef<Path>,
    out: impl AsRef<Path>,
    opts: &ReportOptions,
    progress: &dyn Fn(usize, usize),
) -> Result<ReportSummary> {
    let (pred_dir, input, out) = (predictions.as_ref(), input.as_ref(), out.as_ref());
    let preds = aneu_infer::read_predictions(pred_dir)?;
    let run_path = pred_dir.join("run.json");
    let run_text = std::fs::read_to_string(&run_path).at(&run_path)?;
    let run: aneu_infer::RunInfo =
        serde_json::from_str(&run_text).map_err(|e| Error::Render(format!("{}: {e}", run_path.display())))?;
    let bundle = run
        .bundles
        .first()
        .ok_or_else(|| Error::Render(format!("{}: no bundle", run_path.display())))?;
    let config = aneu_bundle::ModelBundle::read(bundle)?.preprocess;
    let hash = config.hash()?;
    let rsna = input.join("series").is_dir();
    let ds = if rsna && input.join("train.csv").exists() {
        Some(aneu_io::RsnaDataset::open(input)?)
    } else {
        None
    };
    std::fs::create_dir_all(out).at(out)?;
    let mut summary = ReportSummary::default();
    let mut links = Vec::with_capacity(preds.len());
    for (n, p) in preds.iter().enumerate() {
        let one = || -> Result<PathBuf> {
            let dir = if rsna {
                input.join("series").join(&p.series_uid)
            } else {
                input.to_path_buf()
            };
            let series = aneu_io::DicomSeries::read(&dir)?;
            let image = match reuse_preprocessed(opts, p, &hash) {
                Some(image) => image,
                None => aneu_preproc::preprocess_series(&series, p.modality, &[], None, &config)?.image,
            };
            let prob_path = pred_dir.join(format!("{}_prob.nii.gz", p.series_uid));
            let prob = if prob_path.exists() {
                Some(aneu_io::read_nifti(&prob_path)?)
            } else {
                None
            };
            let truth: Vec<WorldPoint> = ds
                .as_ref()
                .map(|d| {
                    d.map_localizers(&series)
                        .into_iter()
                        .flatten()
                        .map(|m| m.world)
                        .collect()
                })
                .unwrap_or_default();
            let window = Window::auto(image.as_slice());
            write_series_report(
                &SeriesReport {
                    prediction: p,
                    image: &image,
                    probability: prob.as_ref(),
                    truth: &truth,
                    window,
                    convention: opts.convention,
                    viewer_px: opts.viewer_px,
                    detailed: opts.detailed,
                },
                out,
            )
        };
        match one() {
            Ok(_) => {
                summary.series += 1;
                links.push(Some(format!("{}.html", p.series_uid)));
            }
            Err(e) => {
                summary.failed.push((p.series_uid.clone(), e.to_string()));
                links.push(None);
            }
        }
        progress(n + 1, preds.len());
    }
    summary.evaluation = match &ds {
        Some(_) => match aneu_infer::evaluate(pred_dir, input, &aneu_infer::EvaluateOptions::default()) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(predictions = %pred_dir.display(), error = %e, "no evaluation on the index page");
                None
            }
        },
        None => None,
    };
    let rows: Vec<DatasetRow<'_>> = preds
        .iter()
        .zip(links)
        .map(|(p, link)| DatasetRow {
            prediction: p,
            truth: ds
                .as_ref()
                .and_then(|d| d.labels(&p.series_uid))
                .map(|l| l.aneurysm_present),
            link,
        })
        .collect();
    summary.index = write_dataset_report_with_failures(summary.evaluation.as_ref(), &rows, &summary.failed, out)?;
    Ok(summary)
}

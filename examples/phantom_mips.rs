//! Renders axial, coronal and sagittal maximum-intensity projections of
//! phantom series as PNG, with each aneurysm circled (from the ground
//! truth). Used for `docs/phantoms.md`.
//!
//! ```sh
//! cargo run --release --example phantom_mips -- <dataset_root> <out_dir> [SeriesInstanceUID ...]
//! ```

use std::process::ExitCode;

use aneu::io::{RsnaDataset, Volume};
use aneu::phantom::read_truth;
use image::{Rgb, RgbImage};
use ndarray::Axis;

fn mip(v: &Volume<f32>, axis: usize, window: (f32, f32)) -> (RgbImage, usize) {
    // axis: 0 = along k (axial), 1 = along j (coronal), 2 = along i (sagittal)
    let m = v
        .data()
        .map_axis(Axis(axis), |l| l.iter().copied().fold(f32::MIN, f32::max));
    let (h, w) = (m.shape()[0], m.shape()[1]);
    let mut img = RgbImage::new(w as u32, h as u32);
    for ((r, c), val) in m.indexed_iter() {
        let g = (((val - window.0) / (window.1 - window.0)).clamp(0.0, 1.0) * 255.0) as u8;
        // flip rows so that superior / anterior is up
        img.put_pixel(c as u32, (h - 1 - r) as u32, Rgb([g, g, g]));
    }
    (img, h)
}

fn circle(img: &mut RgbImage, cx: f64, cy: f64, r: f64) {
    for t in 0..720 {
        let a = f64::from(t) / 720.0 * std::f64::consts::TAU;
        let (x, y) = ((cx + r * a.cos()).round(), (cy + r * a.sin()).round());
        if x >= 0.0 && y >= 0.0 && (x as u32) < img.width() && (y as u32) < img.height() {
            img.put_pixel(x as u32, y as u32, Rgb([255, 40, 40]));
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, out, uids @ ..] = args.as_slice() else {
        eprintln!("usage: phantom_mips <dataset_root> <out_dir> [uid ...]");
        return ExitCode::from(2);
    };
    let ds = match RsnaDataset::open(root) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let wanted: Vec<String> = if uids.is_empty() {
        ds.series_uids().map(String::from).collect()
    } else {
        uids.to_vec()
    };
    let _ = std::fs::create_dir_all(out);
    for uid in wanted {
        let (Ok(s), Ok(t)) = (ds.read_series(&uid), read_truth(root, &uid)) else {
            eprintln!("{uid}: unreadable");
            continue;
        };
        let v = s.volume.to_canonical().unwrap_or(s.volume);
        let mut vals: Vec<f32> = v.data().iter().copied().collect();
        vals.sort_by(f32::total_cmp);
        let hi = vals[(vals.len() as f64 * 0.9995) as usize];
        let lo = vals[(vals.len() as f64 * 0.5) as usize];
        let win = if t.modality == aneu::io::Modality::Cta {
            (0.0, 600.0)
        } else {
            (lo, hi)
        };
        let sp = v.spacing();
        for (axis, name) in [(0, "axial"), (1, "coronal"), (2, "sagittal")] {
            let (mut img, h) = mip(&v, axis, win);
            for a in &t.aneurysms {
                let p = v.world_to_voxel(a.centre_world);
                let (x, y, px) = match axis {
                    0 => (p.i, p.j, sp[0]),
                    1 => (p.i, p.k, sp[0]),
                    _ => (p.j, p.k, sp[1]),
                };
                circle(&mut img, x, h as f64 - 1.0 - y, a.radius_mm / px + 4.0);
            }
            let path = format!("{out}/{uid}_{name}.png");
            if let Err(e) = img.save(&path) {
                eprintln!("{path}: {e}");
            }
        }
        println!("{uid}: {} {} aneurysm(s)", t.modality, t.aneurysms.len());
    }
    ExitCode::SUCCESS
}

//! `metrics.png`: the loss and metric curves of a run, as the seed's
//! Fig. 6. Left panel: training loss (blue) and validation loss (orange),
//! scaled to their maximum. Right panel on [0, 1]: validation AUC (green),
//! F2 (red), sensitivity (purple) and, for dense models, the dense-peak
//! AUC (cyan). Grid lines at quarters.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::trainer::EpochRecord;
use crate::{Error, Result};

const W: u32 = 400;
const H: u32 = 300;
const M: i64 = 20;

fn line(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
    let n = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
    for s in 0..=n {
        let x = x0 + (x1 - x0) * s / n;
        let y = y0 + (y1 - y0) * s / n;
        for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
            let (px, py) = (x + dx, y + dy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, c);
            }
        }
    }
}

fn panel(img: &mut RgbImage, x_off: i64, series: &[(Vec<f64>, Rgb<u8>)], y_max: f64) {
    let (pw, ph) = (W as i64 - 2 * M, H as i64 - 2 * M);
    let grey = Rgb([200, 200, 200]);
    for q in 0..=4 {
        let y = M + ph * q / 4;
        line(img, x_off + M, y, x_off + M + pw, y, grey);
    }
    line(img, x_off + M, M, x_off + M, M + ph, Rgb([0, 0, 0]));
    line(img, x_off + M, M + ph, x_off + M + pw, M + ph, Rgb([0, 0, 0]));
    for (vals, colour) in series {
        let n = vals.len();
        let pt = |i: usize, v: f64| {
            let x = x_off + M + if n > 1 { pw * i as i64 / (n as i64 - 1) } else { pw / 2 };
            let y = M + ph - ((v / y_max).clamp(0.0, 1.0) * ph as f64).round() as i64;
            (x, y)
        };
        for i in 0..n {
            let (x, y) = pt(i, vals[i]);
            if i + 1 < n {
                let (x2, y2) = pt(i + 1, vals[i + 1]);
                line(img, x, y, x2, y2, *colour);
            } else if n == 1 {
                line(img, x - 2, y, x + 2, y, *colour);
            }
        }
    }
}

/// Draws the curves of `history` to `path`.
///
/// # Errors
/// [`Error::Format`] when the PNG cannot be written.
pub fn plot_history(history: &[EpochRecord], path: &Path) -> Result<()> {
    let mut img = RgbImage::from_pixel(2 * W, H, Rgb([255, 255, 255]));
    let tl: Vec<f64> = history.iter().map(|r| r.train_loss).collect();
    let vl: Vec<f64> = history.iter().map(|r| r.val_loss).collect();
    let lmax = tl
        .iter()
        .chain(&vl)
        .copied()
        .filter(|v| v.is_finite())
        .fold(1e-9, f64::max);
    panel(
        &mut img,
        0,
        &[(tl, Rgb([31, 119, 180])), (vl, Rgb([255, 127, 14]))],
        lmax,
    );
    let auc: Vec<f64> = history.iter().map(|r| r.val_auc.unwrap_or(0.5)).collect();
    let f2: Vec<f64> = history.iter().map(|r| r.val_f2).collect();
    let se: Vec<f64> = history.iter().map(|r| r.val_sensitivity).collect();
    let mut lines = vec![
        (auc, Rgb([44, 160, 44])),
        (f2, Rgb([214, 39, 40])),
        (se, Rgb([148, 103, 189])),
    ];
    if history.iter().any(|r| r.val_dense_auc.is_some()) {
        let dense = history.iter().map(|r| r.val_dense_auc.unwrap_or(0.5)).collect();
        lines.push((dense, Rgb([23, 190, 207])));
    }
    panel(&mut img, W as i64, &lines, 1.0);
    img.save(path).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

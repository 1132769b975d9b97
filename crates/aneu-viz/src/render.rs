//! Views to pixels: window/level, the heatmap overlay with its colour bar,
//! markers, the focal cube, orientation letters, and PNG encoding.

use aneu_io::{Modality, WorldPoint};
use base64::Engine;
use image::{EncodableLayout, ImageBuffer, Pixel, PixelWithColorType, Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use crate::view::View;
use crate::{Error, Result};

/// A grey-level window: values from `centre − width/2` (black) to
/// `centre + width/2` (white).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// The centre (level).
    pub centre: f32,
    /// The width.
    pub width: f32,
}

impl Window {
    /// A preset for preprocessed images of a modality: CTA is windowed to
    /// [0, 1] by preprocessing (the angio window), MR is z-scored.
    pub fn preset(m: Modality) -> Window {
        match m {
            Modality::Cta => Window {
                centre: 0.5,
                width: 1.0,
            },
            Modality::Mra => Window {
                centre: 2.0,
                width: 7.0,
            },
            Modality::MriT1post | Modality::MriT2 => Window {
                centre: 0.5,
                width: 5.0,
            },
        }
    }

    /// The window from the 1st to the 99.5th percentile of the finite
    /// values (a robust automatic window for any scan).
    pub fn auto(values: &[f32]) -> Window {
        let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Window {
                centre: 0.5,
                width: 1.0,
            };
        }
        v.sort_by(f32::total_cmp);
        let q = |p: f64| v[((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
        let (lo, hi) = (q(0.01), q(0.995));
        Window {
            centre: (lo + hi) / 2.0,
            width: (hi - lo).max(1e-6),
        }
    }

    /// The grey level of a value.
    pub fn grey(&self, v: f32) -> u8 {
        let t = (v - (self.centre - self.width / 2.0)) / self.width;
        if t.is_finite() {
            (t.clamp(0.0, 1.0) * 255.0).round() as u8
        } else {
            0
        }
    }
}

/// The heatmap colour of a probability (black → red → yellow → white).
pub fn heat(p: f32) -> Rgb<u8> {
    let p = p.clamp(0.0, 1.0);
    let r = (p * 3.0).min(1.0);
    let g = (p * 3.0 - 1.0).clamp(0.0, 1.0);
    let b = (p * 3.0 - 2.0).clamp(0.0, 1.0);
    Rgb([(r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8])
}

/// Marker colours (the seed viewer's conventions).
pub mod colours {
    use image::Rgb;
    /// Ground-truth centres.
    pub const TRUTH: Rgb<u8> = Rgb([0, 220, 0]);
    /// Predicted candidates.
    pub const CANDIDATE: Rgb<u8> = Rgb([0, 230, 230]);
    /// The focal cube around the selected candidate.
    pub const FOCUS: Rgb<u8> = Rgb([230, 0, 0]);
    /// Orientation letters.
    pub const LABEL: Rgb<u8> = Rgb([255, 200, 0]);
}

/// A point to draw on a view.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Marker {
    /// Where (RAS mm).
    pub at: WorldPoint,
    /// The colour.
    pub colour: Rgb<u8>,
    /// The circle radius in mm.
    pub radius_mm: f64,
    /// Drawn only when the point lies within this many mm of the view's
    /// plane (slab, slice); `f64::INFINITY` for always.
    pub max_depth_mm: f64,
}

/// How a view becomes an image.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderOptions {
    /// The grey window.
    pub window: Window,
    /// Output pixels per mm (the view is resampled to square mm pixels).
    pub pixels_per_mm: f64,
    /// Draw the overlay where it is at least this value (`None`: no
    /// overlay).
    pub overlay_floor: Option<f32>,
    /// The overlay's opacity at probability 1.
    pub overlay_alpha: f32,
    /// Draw the colour bar on the right edge.
    pub colour_bar: bool,
    /// Draw the orientation letters.
    pub labels: bool,
    /// Markers.
    pub markers: Vec<Marker>,
    /// The focal cube: a square of this edge (mm) centred on this point.
    pub focus: Option<(WorldPoint, f64)>,
}

impl RenderOptions {
    /// Defaults: the window given, 2 pixels per mm, overlay above 0.1 at
    /// 60 % opacity with a colour bar, letters, no markers.
    pub fn new(window: Window) -> Self {
        RenderOptions {
            window,
            pixels_per_mm: 2.0,
            overlay_floor: Some(0.1),
            overlay_alpha: 0.6,
            colour_bar: true,
            labels: true,
            markers: Vec::new(),
            focus: None,
        }
    }
}

// 5 × 7 glyphs of the orientation letters, one row per byte (low 5 bits)
fn glyph(c: char) -> [u8; 7] {
    match c {
        'R' => [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f],
        'A' => [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        'P' => [0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10],
        'S' => [0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e],
        'I' => [0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e],
        _ => [0; 7],
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn letter(img: &mut RgbImage, c: char, x: i64, y: i64, scale: i64) {
    for (r, bits) in glyph(c).iter().enumerate() {
        for col in 0..5 {
            if bits & (0x10 >> col) != 0 {
                for dy in 0..scale {
                    for dx in 0..scale {
                        put(img, x + col * scale + dx, y + r as i64 * scale + dy, c_label());
                    }
                }
            }
        }
    }
}

fn c_label() -> Rgb<u8> {
    colours::LABEL
}

fn circle(img: &mut RgbImage, cx: f64, cy: f64, r: f64, c: Rgb<u8>) {
    let n = ((r * 8.0).ceil() as usize).max(16);
    for s in 0..n {
        let t = s as f64 / n as f64 * std::f64::consts::TAU;
        for dr in [0.0, 1.0] {
            put(
                img,
                (cx + (r + dr) * t.cos()).round() as i64,
                (cy + (r + dr) * t.sin()).round() as i64,
                c,
            );
        }
    }
}

fn square(img: &mut RgbImage, cx: f64, cy: f64, half: f64, c: Rgb<u8>) {
    let (x0, x1, y0, y1) = (cx - half, cx + half, cy - half, cy + half);
    let n = (half * 2.0).ceil() as i64;
    for s in 0..=n {
        let f = s as f64 / n.max(1) as f64;
        let x = x0 + (x1 - x0) * f;
        let y = y0 + (y1 - y0) * f;
        for (px, py) in [(x, y0), (x, y1), (x0, y), (x1, y)] {
            put(img, px.round() as i64, py.round() as i64, c);
        }
    }
}

/// The output pixel `(x, y)` of a view position `(row, col)`.
pub fn to_pixel(view: &View, opts: &RenderOptions, row: f64, col: f64) -> (f64, f64) {
    let sy = view.pixel_mm[0] * opts.pixels_per_mm;
    let sx = view.pixel_mm[1] * opts.pixels_per_mm;
    ((col + 0.5) * sx - 0.5, (row + 0.5) * sy - 0.5)
}

/// Renders a view: grey levels, the overlay, markers, the focal cube, the
/// colour bar and the orientation letters.
///
/// # Errors
/// [`Error::Render`] for a zero or non-finite scale.
pub fn render(view: &View, opts: &RenderOptions) -> Result<RgbImage> {
    if !(opts.pixels_per_mm.is_finite() && opts.pixels_per_mm > 0.0) {
        return Err(Error::Render(format!("pixels_per_mm {}", opts.pixels_per_mm)));
    }
    let (rows, cols) = view.dim();
    let w = ((cols as f64 * view.pixel_mm[1] * opts.pixels_per_mm).round() as u32).max(1);
    let h = ((rows as f64 * view.pixel_mm[0] * opts.pixels_per_mm).round() as u32).max(1);
    if u64::from(w) * u64::from(h) > 64 << 20 {
        return Err(Error::Render(format!("a {w} × {h} image is too large")));
    }
    let mut img = RgbImage::new(w, h);
    for y in 0..h {
        let r = ((f64::from(y) + 0.5) / f64::from(h) * rows as f64).floor() as usize;
        for x in 0..w {
            let c = ((f64::from(x) + 0.5) / f64::from(w) * cols as f64).floor() as usize;
            let (r, c) = (r.min(rows - 1), c.min(cols - 1));
            let g = opts.window.grey(view.pixels[[r, c]]);
            let mut px = [f32::from(g); 3];
            if let (Some(floor), Some(o)) = (opts.overlay_floor, view.overlay.as_ref()) {
                let p = o[[r, c]];
                if p.is_finite() && p >= floor {
                    let hc = heat(p);
                    let a = opts.overlay_alpha * p.clamp(0.0, 1.0);
                    for k in 0..3 {
                        px[k] = px[k] * (1.0 - a) + f32::from(hc[k]) * a;
                    }
                }
            }
            img.put_pixel(x, y, Rgb(px.map(|v| v.round().clamp(0.0, 255.0) as u8)));
        }
    }
    for m in &opts.markers {
        let (row, col, depth) = view.project(m.at);
        if depth <= m.max_depth_mm {
            let (x, y) = to_pixel(view, opts, row, col);
            circle(&mut img, x, y, (m.radius_mm * opts.pixels_per_mm).max(3.0), m.colour);
        }
    }
    if let Some((p, edge)) = opts.focus {
        let (row, col, _) = view.project(p);
        let (x, y) = to_pixel(view, opts, row, col);
        square(&mut img, x, y, edge / 2.0 * opts.pixels_per_mm, colours::FOCUS);
    }
    if opts.colour_bar && opts.overlay_floor.is_some() && view.overlay.is_some() && w > 24 {
        let bh = (h * 2 / 3).max(2);
        let y0 = (h - bh) / 2;
        for y in 0..bh {
            let p = 1.0 - y as f32 / (bh - 1) as f32;
            for x in w - 10..w - 4 {
                img.put_pixel(x, y0 + y, heat(p));
            }
        }
    }
    if opts.labels && w >= 40 && h >= 40 {
        let s = if w >= 200 { 2 } else { 1 };
        let (gw, gh) = (5 * s, 7 * s);
        let [l, r, t, b] = view.labels;
        let (w, h) = (i64::from(w), i64::from(h));
        letter(&mut img, l, 3, (h - gh) / 2, s);
        letter(
            &mut img,
            r,
            w - gw - 3 - if opts.colour_bar { 12 } else { 0 },
            (h - gh) / 2,
            s,
        );
        letter(&mut img, t, (w - gw) / 2, 3, s);
        letter(&mut img, b, (w - gw) / 2, h - gh - 3, s);
    }
    Ok(img)
}

/// PNG bytes of an image (RGB, or grey as the viewer's slices).
///
/// # Errors
/// [`Error::Render`] if encoding fails.
pub fn png_bytes<P>(img: &ImageBuffer<P, Vec<P::Subpixel>>) -> Result<Vec<u8>>
where
    P: Pixel + PixelWithColorType,
    [P::Subpixel]: EncodableLayout,
{
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| Error::Render(e.to_string()))?;
    Ok(out.into_inner())
}

/// A `data:image/png;base64,…` URI of an image, for self-contained HTML.
///
/// # Errors
/// As [`png_bytes`].
pub fn data_uri<P>(img: &ImageBuffer<P, Vec<P::Subpixel>>) -> Result<String>
where
    P: Pixel + PixelWithColorType,
    [P::Subpixel]: EncodableLayout,
{
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png_bytes(img)?)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_heat() {
        let w = Window {
            centre: 0.0,
            width: 2.0,
        };
        assert_eq!(
            (w.grey(-1.0), w.grey(0.0), w.grey(1.0), w.grey(f32::NAN)),
            (0, 128, 255, 0)
        );
        assert_eq!(heat(0.0), Rgb([0, 0, 0]));
        assert_eq!(heat(1.0), Rgb([255, 255, 255]));
        let a = Window::auto(&(0..1000).map(|x| x as f32).collect::<Vec<_>>());
        assert_eq!((a.centre, a.width), (502.0, 984.0)); // 10 and 994
    }
}

//! Skull-strips a NIfTI head image and reports the brain / intracranial volume.
//!
//! ```sh
//! cargo run --release --example skull_strip -- --input IN.nii.gz --modality "MRI T1post" --out MASK.nii.gz \
//!     [--png SLICES.png] [--atlas-image TEMPLATE.nii.gz --atlas-mask TEMPLATE_MASK.nii.gz]
//! ```
//!
//! Without an atlas it runs the intensity rules of `intracranial_mask` for the
//! modality; with one, it registers the template onto the head
//! (`atlas_brain_mask`). The optional PNG shows the axial, coronal and sagittal
//! slices through the mask's centre, the mask outline in red.

use std::path::PathBuf;
use std::process::ExitCode;

use aneu::io::Volume;
use aneu::io::{Modality, read_nifti, write_nifti};
use aneu::preproc::{Atlas, RegistrationOptions, atlas_brain_mask, intracranial_mask};
use clap::Parser;

/// Skull-strip a head image.
#[derive(Parser)]
struct Args {
    /// The head image (NIfTI).
    #[arg(long)]
    input: PathBuf,
    /// CTA, MRA, "MRI T2" or "MRI T1post" (the intensity rules; ignored with an atlas).
    #[arg(long, default_value = "MRI T1post")]
    modality: Modality,
    /// The output mask (NIfTI).
    #[arg(long)]
    out: PathBuf,
    /// Three orthogonal slices with the mask outline (PNG).
    #[arg(long)]
    png: Option<PathBuf>,
    /// A skull-stripped template with the image's contrast (NIfTI).
    #[arg(long, requires = "atlas_mask")]
    atlas_image: Option<PathBuf>,
    /// The template's brain mask (NIfTI).
    #[arg(long, requires = "atlas_image")]
    atlas_mask: Option<PathBuf>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let run = || -> Result<String, Box<dyn std::error::Error>> {
        let img = read_nifti(&a.input)?;
        let t = std::time::Instant::now();
        let (mask, how) = match (&a.atlas_image, &a.atlas_mask) {
            (Some(ti), Some(tm)) => {
                let atlas = Atlas::read(ti, tm)?;
                let (m, reg) = atlas_brain_mask(&img, &atlas, &RegistrationOptions::default())?;
                let how = format!(
                    "atlas registration: correlation {:.3}, volume ratio {:.3}, {} evaluations",
                    reg.ncc,
                    reg.transform.determinant(),
                    reg.evaluations
                );
                (m, how)
            }
            _ => (intracranial_mask(&img, a.modality)?, format!("{} rules", a.modality)),
        };
        let secs = t.elapsed().as_secs_f64();
        write_nifti(&mask, &a.out)?;
        if let Some(p) = &a.png {
            slices_png(&img, &mask, p)?;
        }
        let sp = img.spacing();
        let n = mask.as_slice().iter().filter(|v| **v != 0).count();
        Ok(format!(
            "{}: {:.3} L ({n} voxels) in {secs:.1} s ({how})",
            a.out.display(),
            n as f64 * sp[0] * sp[1] * sp[2] / 1e6
        ))
    };
    match run() {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Axial, coronal and sagittal slices through the mask's centre, side by
/// side, in neurological convention (the canonical RAS grid as is: the
/// subject's right on the right, anterior up in the axial panel, superior up
/// in the others), grey-scale with the mask boundary in red.
fn slices_png(img: &Volume<f32>, mask: &Volume<u8>, path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let img = img.to_canonical()?;
    let mask = mask.to_canonical()?;
    let (d, m) = (img.data(), mask.data());
    let (nk, nj, ni) = d.dim();
    let (mut c, mut cnt) = ([0.0f64; 3], 0.0f64);
    for ((k, j, i), v) in m.indexed_iter() {
        if *v != 0 {
            c[0] += k as f64;
            c[1] += j as f64;
            c[2] += i as f64;
            cnt += 1.0;
        }
    }
    let [ck, cj, ci] = c.map(|x| (x / cnt.max(1.0)) as usize);
    let mut vals: Vec<f32> = d.iter().copied().collect();
    vals.sort_by(f32::total_cmp);
    let hi = vals[(vals.len() as f64 * 0.995) as usize].max(1e-6);
    // three panels: axial (i across, j up), coronal (i across, k up), sagittal (j across, k up)
    type Get<'a> = Box<dyn Fn(usize, usize) -> (f32, bool) + 'a>;
    let edge = |k: usize, j: usize, i: usize| {
        let on = m[[k, j, i]] != 0;
        let nb = [
            (1i64, 0i64, 0i64),
            (-1, 0, 0),
            (0, 1, 0),
            (0, -1, 0),
            (0, 0, 1),
            (0, 0, -1),
        ];
        on && nb.iter().any(|(a, b, cc)| {
            let (kk, jj, ii) = (k as i64 + a, j as i64 + b, i as i64 + cc);
            kk < 0
                || jj < 0
                || ii < 0
                || kk >= nk as i64
                || jj >= nj as i64
                || ii >= ni as i64
                || m[[kk as usize, jj as usize, ii as usize]] == 0
        })
    };
    let panels: [(usize, usize, Get); 3] = [
        (
            ni,
            nj,
            Box::new(|x, y| (d[[ck, nj - 1 - y, x]], edge(ck, nj - 1 - y, x))),
        ),
        (
            ni,
            nk,
            Box::new(|x, y| (d[[nk - 1 - y, cj, x]], edge(nk - 1 - y, cj, x))),
        ),
        (
            nj,
            nk,
            Box::new(|x, y| (d[[nk - 1 - y, x, ci]], edge(nk - 1 - y, x, ci))),
        ),
    ];
    let w: usize = panels.iter().map(|p| p.0).sum();
    let h = panels.iter().map(|p| p.1).max().unwrap_or(1);
    let mut out = image::RgbImage::new(w as u32, h as u32);
    let mut x0 = 0;
    for (pw, ph, get) in &panels {
        for y in 0..*ph {
            for x in 0..*pw {
                let (v, e) = get(x, y);
                let g = ((v / hi).clamp(0.0, 1.0) * 255.0) as u8;
                let px = if e { [255, 0, 0] } else { [g, g, g] };
                out.put_pixel((x0 + x) as u32, y as u32, image::Rgb(px));
            }
        }
        x0 += pw;
    }
    out.save(path)?;
    Ok(())
}

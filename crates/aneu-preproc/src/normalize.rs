//! Intensity normalisation, with statistics optionally inside a mask.

use aneu_io::Volume;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A CT window: values are clipped to `[centre − width/2, centre + width/2]`
/// and scaled to [0, 1].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CtWindow {
    /// Window centre (level), HU.
    pub centre: f64,
    /// Window width, HU.
    pub width: f64,
}

impl CtWindow {
    /// Brain: 40 / 80 HU.
    pub const BRAIN: CtWindow = CtWindow {
        centre: 40.0,
        width: 80.0,
    };
    /// Subdural: 75 / 215 HU.
    pub const SUBDURAL: CtWindow = CtWindow {
        centre: 75.0,
        width: 215.0,
    };
    /// CT angiography: 300 / 600 HU (contrast-filled vessels 150–450 HU).
    pub const ANGIO: CtWindow = CtWindow {
        centre: 300.0,
        width: 600.0,
    };
    /// Bone: 600 / 2800 HU.
    pub const BONE: CtWindow = CtWindow {
        centre: 600.0,
        width: 2800.0,
    };

    /// A preset by name: `brain`, `subdural`, `angio`, `bone`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "brain" => Some(Self::BRAIN),
            "subdural" => Some(Self::SUBDURAL),
            "angio" => Some(Self::ANGIO),
            "bone" => Some(Self::BONE),
            _ => None,
        }
    }
}

/// A normalisation method.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Normalization {
    /// (x − mean) / std (population standard deviation).
    ZScore,
    /// (x − median) / IQR, IQR = q75 − q25 (NumPy's linear quantiles).
    RobustZ,
    /// (x − min) / (max − min), to [0, 1].
    MinMax,
    /// Clip to the `lo` and `hi` percentiles (0–100), then scale to [0, 1].
    Percentile {
        /// Lower percentile.
        lo: f64,
        /// Upper percentile.
        hi: f64,
    },
    /// A CT window (no statistics).
    Window(CtWindow),
}

/// NumPy's `quantile(..., method="linear")` on sorted data.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Normalises a volume; statistics are taken over the voxels where `mask`
/// is non-zero (or over all voxels), and the transform is applied to every
/// voxel.
///
/// ```
/// use aneu_io::{Affine, Volume};
/// use aneu_preproc::{CtWindow, Normalization, normalize};
/// let v = Volume::new(ndarray::Array3::from_shape_vec((1, 1, 4), vec![-100.0, 0.0, 40.0, 500.0]).unwrap(), Affine::identity())?;
/// let w = normalize(&v, Normalization::Window(CtWindow::BRAIN), None)?;
/// assert_eq!(w.as_slice(), &[0.0, 0.0, 0.5, 1.0]);
/// # Ok::<(), aneu_preproc::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidMask`] if the mask's shape differs or it selects
/// nothing; [`Error::Degenerate`] for a zero spread (constant image);
/// [`Error::InvalidArgument`] for bad percentiles or window width, or
/// non-finite values.
pub fn normalize(vol: &Volume<f32>, method: Normalization, mask: Option<&Volume<u8>>) -> Result<Volume<f32>> {
    if let Some(m) = mask
        && m.size() != vol.size()
    {
        return Err(Error::InvalidMask(format!(
            "mask {:?} vs image {:?}",
            m.size(),
            vol.size()
        )));
    }
    if vol.as_slice().iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument("the image holds non-finite values".into()));
    }
    let selected = || -> Result<Vec<f64>> {
        let v: Vec<f64> = match mask {
            Some(m) => vol
                .as_slice()
                .iter()
                .zip(m.as_slice())
                .filter(|(_, m)| **m != 0)
                .map(|(v, _)| f64::from(*v))
                .collect(),
            None => vol.as_slice().iter().map(|v| f64::from(*v)).collect(),
        };
        if v.is_empty() {
            return Err(Error::InvalidMask("the mask selects no voxel".into()));
        }
        Ok(v)
    };
    let sorted = || -> Result<Vec<f64>> {
        let mut v = selected()?;
        v.sort_by(f64::total_cmp);
        Ok(v)
    };
    let (offset, scale, clip) = match method {
        Normalization::ZScore => {
            let v = selected()?;
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
            (mean, var.sqrt(), None)
        }
        Normalization::RobustZ => {
            let v = sorted()?;
            (quantile(&v, 0.5), quantile(&v, 0.75) - quantile(&v, 0.25), None)
        }
        Normalization::MinMax => {
            let v = sorted()?;
            (v[0], v[v.len() - 1] - v[0], Some((0.0, 1.0)))
        }
        Normalization::Percentile { lo, hi } => {
            if !(0.0..=100.0).contains(&lo) || !(0.0..=100.0).contains(&hi) || lo >= hi {
                return Err(Error::InvalidArgument(format!("percentiles {lo}..{hi}")));
            }
            let v = sorted()?;
            let (a, b) = (quantile(&v, lo / 100.0), quantile(&v, hi / 100.0));
            (a, b - a, Some((0.0, 1.0)))
        }
        Normalization::Window(w) => {
            if !(w.width.is_finite() && w.width > 0.0 && w.centre.is_finite()) {
                return Err(Error::InvalidArgument(format!("window {w:?}")));
            }
            (w.centre - w.width / 2.0, w.width, Some((0.0, 1.0)))
        }
    };
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::Degenerate(format!("{method:?}: spread {scale}")));
    }
    Ok(vol.map(|&x| {
        let y = (f64::from(x) - offset) / scale;
        match clip {
            Some((a, b)) => y.clamp(a, b) as f32,
            None => y as f32,
        }
    }))
}

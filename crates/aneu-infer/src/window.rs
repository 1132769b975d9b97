//! Sliding-window inference over a whole scan, blended into one map.
//!
//! [`SlidingWindow::run`] is independent of Burn: it cuts the scan into
//! windows (nnU-Net step placement through [`PatchGrid`], zero padding at
//! the borders), hands them in batches to a closure, and blends what the
//! closure returns, either a voxel map per window (dense models) or one
//! score per window (patch classifiers), by max, mean or a Gaussian centre
//! weight.

use aneu_patch::{Case, PatchGrid, Tile, extract_box};
use ndarray::{Array3, Array4, Axis, s};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How overlapping windows are merged.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Blend {
    /// The highest value of any window (the seed system's choice; it lets
    /// one window's false positive win).
    Max,
    /// The plain mean of the windows covering a voxel.
    Mean,
    /// The mean weighted by a Gaussian centred in each window, σ =
    /// `sigma_scale` · ROI (MONAI and nnU-Net, 0.125), with no zero weights.
    Gaussian {
        /// σ as a fraction of the window edge.
        sigma_scale: f64,
    },
}

/// Where a patch classifier's single score lands in the map.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Spread {
    /// A centred cube of `fraction` of the window edge (at least one
    /// voxel): the part of the window the label was trained on.
    Centre {
        /// Edge of the cube as a fraction of the window edge, in (0, 1].
        fraction: f64,
    },
    /// The whole window.
    Patch,
}

/// Sliding-window options.
///
/// ```
/// use aneu_infer::{Blend, SlidingWindow};
/// let w = SlidingWindow::default().with_overlap(0.25).with_blend(Blend::Mean);
/// assert!(w.validate().is_ok());
/// assert!(SlidingWindow::default().with_overlap(1.0).validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlidingWindow {
    /// Window edge in voxels; `None` takes each model's training patch
    /// size. Dense models are fully convolutional and accept any multiple
    /// of their size multiple.
    pub roi: Option<usize>,
    /// Overlap between neighbouring windows, in `[0, 1)`.
    pub overlap: f64,
    /// Windows per forward pass.
    pub batch_size: usize,
    /// How overlapping windows are merged.
    pub blend: Blend,
    /// Where a patch classifier's score lands (dense models ignore it).
    pub spread: Spread,
    /// Run only the windows that touch the mask.
    pub mask_tiles: bool,
    /// Set the map to 0 outside the mask (the first channel of
    /// [`SlidingWindow::run_channels`]; the others, class outputs such as
    /// the vessel head's, are kept outside it).
    pub mask_output: bool,
}

impl Default for SlidingWindow {
    fn default() -> Self {
        Self {
            roi: None,
            overlap: 0.5,
            batch_size: 4,
            blend: Blend::Gaussian { sigma_scale: 0.125 },
            spread: Spread::Centre { fraction: 0.5 },
            mask_tiles: true,
            mask_output: true,
        }
    }
}

impl SlidingWindow {
    /// Sets the window edge.
    pub fn with_roi(mut self, roi: usize) -> Self {
        self.roi = Some(roi);
        self
    }
    /// Sets the overlap.
    pub fn with_overlap(mut self, overlap: f64) -> Self {
        self.overlap = overlap;
        self
    }
    /// Sets the batch size.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }
    /// Sets the blending.
    pub fn with_blend(mut self, blend: Blend) -> Self {
        self.blend = blend;
        self
    }
    /// Sets the classifier spread.
    pub fn with_spread(mut self, spread: Spread) -> Self {
        self.spread = spread;
        self
    }
    /// Sets whether only windows touching the mask run, and whether the
    /// map is zeroed outside it.
    pub fn with_mask(mut self, tiles: bool, output: bool) -> Self {
        self.mask_tiles = tiles;
        self.mask_output = output;
        self
    }

    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the bad option.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if !(0.0..1.0).contains(&self.overlap) {
            return bad(format!("overlap {} is outside [0, 1)", self.overlap));
        }
        if self.batch_size == 0 {
            return bad("batch_size must be positive".into());
        }
        if self.roi == Some(0) {
            return bad("roi must be positive".into());
        }
        if let Blend::Gaussian { sigma_scale } = self.blend
            && !(sigma_scale.is_finite() && sigma_scale > 0.0)
        {
            return bad(format!("Gaussian sigma_scale {sigma_scale} must be positive"));
        }
        if let Spread::Centre { fraction } = self.spread
            && !(fraction > 0.0 && fraction <= 1.0)
        {
            return bad(format!("spread fraction {fraction} is outside (0, 1]"));
        }
        Ok(())
    }

    /// Runs `predict` over the windows of `case` and blends the results
    /// into a map on the case's grid (`[k, j, i]`). Voxels no window
    /// covers, and with [`SlidingWindow::mask_output`] voxels outside the
    /// mask, are 0.
    ///
    /// `predict` receives a [`WindowBatch`] and must return one
    /// [`WindowOutput`] per window, in order.
    ///
    /// ```
    /// use aneu_infer::{SlidingWindow, WindowOutput};
    /// use aneu_io::{Affine, Volume};
    /// use aneu_patch::Case;
    /// use ndarray::Array3;
    /// let img = Volume::new(Array3::from_shape_fn((20, 21, 22), |(k, j, i)| (k + 2 * j + 3 * i) as f32),
    ///                       Affine::identity())?;
    /// let case = Case::new("c", img.clone(), img.map(|_| 1u8), vec![])?;
    /// // an "identity model" reconstructs the image exactly
    /// let map = SlidingWindow::default().run(&case, 8, false, |b| {
    ///     Ok((0..b.len()).map(|n| WindowOutput::Dense(b.window(n, 0))).collect())
    /// })?;
    /// assert!(map.iter().zip(img.data().iter()).all(|(a, b)| (a - b).abs() < 1e-3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for bad options or a closure that returns
    /// the wrong number or size of outputs, and whatever `predict` returns.
    pub fn run<F>(&self, case: &Case, roi: usize, position: bool, predict: F) -> Result<Array3<f32>>
    where
        F: FnMut(&WindowBatch) -> Result<Vec<WindowOutput>>,
    {
        Ok(self
            .run_channels(case, roi, position, 1, predict)?
            .index_axis_move(Axis(0), 0))
    }

    /// [`SlidingWindow::run`] for a model that returns `channels` values per
    /// voxel ([`WindowOutput::Channels`], `[channels, roi, roi, roi]`):
    /// each channel is blended as `run` blends one, with the same weights,
    /// into `[channels, k, j, i]`. A class-probability output stays a
    /// probability per voxel (weights sum to 1 at every voxel).
    /// [`SlidingWindow::mask_output`] zeroes only the first channel (the
    /// probability map) outside the mask: the others are class outputs,
    /// and the arteries run outside the brain mask too.
    ///
    /// ```
    /// use aneu_infer::{SlidingWindow, WindowOutput};
    /// use aneu_io::{Affine, Volume};
    /// use aneu_patch::Case;
    /// use ndarray::{Array3, Array4, Axis, stack};
    /// let img = Volume::new(Array3::from_shape_fn((20, 21, 22), |(k, j, i)| (k + j + i) as f32),
    ///                       Affine::identity())?;
    /// let case = Case::new("c", img.clone(), img.map(|_| 1u8), vec![])?;
    /// // channel 0 is the image, channel 1 its double
    /// let maps = SlidingWindow::default().run_channels(&case, 8, false, 2, |b| {
    ///     Ok((0..b.len())
    ///         .map(|n| {
    ///             let w = b.window(n, 0);
    ///             WindowOutput::Channels(stack(Axis(0), &[w.view(), (&w * 2.0).view()]).unwrap())
    ///         })
    ///         .collect())
    /// })?;
    /// assert_eq!(maps.dim(), (2, 20, 21, 22));
    /// assert!(maps.index_axis(Axis(1), 5).iter().zip(img.data().index_axis(Axis(0), 5)).all(|(a, b)| (a - b).abs() < 1e-3 || (a - 2.0 * b).abs() < 1e-3));
    /// assert!((maps[[1, 7, 8, 9]] - 48.0).abs() < 1e-3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`SlidingWindow::run`]; an output with another channel count is
    /// [`Error::InvalidConfig`]. [`WindowOutput::Dense`] and
    /// [`WindowOutput::Score`] are one channel.
    pub fn run_channels<F>(
        &self,
        case: &Case,
        roi: usize,
        position: bool,
        channels: usize,
        mut predict: F,
    ) -> Result<Array4<f32>>
    where
        F: FnMut(&WindowBatch) -> Result<Vec<WindowOutput>>,
    {
        self.validate()?;
        if roi == 0 {
            return Err(Error::InvalidConfig("roi must be positive".into()));
        }
        if channels == 0 {
            return Err(Error::InvalidConfig(
                "a window output needs at least one channel".into(),
            ));
        }
        let grid = PatchGrid::new(case.image.size(), [roi; 3], self.overlap)?;
        let tiles: Vec<Tile> = if self.mask_tiles {
            grid.tiles_in_mask(&case.mask)?
        } else {
            grid.tiles().collect()
        };
        let dims = grid.dims();
        let mut acc = Array4::<f32>::zeros((channels, dims[0], dims[1], dims[2]));
        let mut wsum = Array3::<f32>::zeros((dims[0], dims[1], dims[2]));
        // each window voxel's weight: the Gaussian's, or 1 (max ignores it)
        let weights = match self.blend {
            Blend::Gaussian { sigma_scale } => grid.gaussian_importance(sigma_scale),
            _ => Array3::ones((roi, roi, roi)),
        };
        let input_channels = if position { 4 } else { 1 };
        for chunk in tiles.chunks(self.batch_size) {
            let mut data = Vec::with_capacity(chunk.len() * input_channels * roi * roi * roi);
            for t in chunk {
                data.extend(window_input(case, t.start.map(|x| x as i64), roi, position));
            }
            let batch = WindowBatch {
                tiles: chunk.to_vec(),
                roi,
                channels: input_channels,
                data,
            };
            let outs = predict(&batch)?;
            if outs.len() != chunk.len() {
                return Err(Error::InvalidConfig(format!(
                    "the model returned {} outputs for {} windows",
                    outs.len(),
                    chunk.len()
                )));
            }
            for (t, o) in chunk.iter().zip(outs) {
                self.accumulate(&mut acc, &mut wsum, t, roi, o, &weights)?;
            }
        }
        let max = matches!(self.blend, Blend::Max);
        let mask = case.mask.data();
        for (n, mut c) in acc.outer_iter_mut().enumerate() {
            let masked = self.mask_output && n == 0;
            ndarray::Zip::from(&mut c).and(&wsum).and(&mask).for_each(|a, &w, &m| {
                if w == 0.0 || (masked && m == 0) {
                    *a = 0.0;
                } else if !max {
                    *a /= w;
                }
            });
        }
        Ok(acc)
    }

    fn accumulate(
        &self,
        acc: &mut Array4<f32>,
        wsum: &mut Array3<f32>,
        tile: &Tile,
        roi: usize,
        out: WindowOutput,
        weights: &Array3<f32>,
    ) -> Result<()> {
        let channels = acc.dim().0;
        let wrong = |what: String| Err(Error::InvalidConfig(what));
        // the region of the window that receives values, in window coordinates
        let (lo, hi, values) = match out {
            WindowOutput::Dense(a) => {
                if a.dim() != (roi, roi, roi) || channels != 1 {
                    return wrong(format!(
                        "a dense output of shape {:?} for a window of {roi} and {channels} channels",
                        a.dim()
                    ));
                }
                (0, roi, Values::Map(a.insert_axis(Axis(0))))
            }
            WindowOutput::Channels(a) => {
                if a.dim() != (channels, roi, roi, roi) {
                    return wrong(format!(
                        "an output of shape {:?} for a window of {roi} and {channels} channels",
                        a.dim()
                    ));
                }
                (0, roi, Values::Map(a))
            }
            WindowOutput::Score(v) => {
                if channels != 1 {
                    return wrong(format!("one score per window for {channels} channels"));
                }
                match self.spread {
                    Spread::Patch => (0, roi, Values::Const(v)),
                    Spread::Centre { fraction } => {
                        let e = ((fraction * roi as f64).round() as usize).clamp(1, roi);
                        let lo = (roi - e) / 2;
                        (lo, lo + e, Values::Const(v))
                    }
                }
            }
        };
        let dims = wsum.dim();
        let dims = [dims.0, dims.1, dims.2];
        let mut end = [0usize; 3];
        for a in 0..3 {
            end[a] = (tile.start[a] + hi).min(dims[a]);
        }
        let st = tile.start;
        if (0..3).any(|a| st[a] + lo >= end[a]) {
            return Ok(());
        }
        // the covered region, in map and in window coordinates
        let o: [std::ops::Range<usize>; 3] = std::array::from_fn(|a| st[a] + lo..end[a]);
        let w: [std::ops::Range<usize>; 3] = std::array::from_fn(|a| lo..end[a] - st[a]);
        let out_region = s![o[0].clone(), o[1].clone(), o[2].clone()];
        let max = matches!(self.blend, Blend::Max);
        // each voxel's weight: the Gaussian's, or 1
        let weights = weights.slice(s![w[0].clone(), w[1].clone(), w[2].clone()]);
        let covered = wsum.slice(out_region);
        for c in 0..channels {
            let mut a_view = acc.slice_mut(s![c, o[0].clone(), o[1].clone(), o[2].clone()]);
            let zip = ndarray::Zip::from(&mut a_view).and(&covered).and(&weights);
            match &values {
                Values::Map(m) => {
                    let v = m.slice(s![c, w[0].clone(), w[1].clone(), w[2].clone()]);
                    zip.and(&v).for_each(|a, &w, &g, &v| blend_into(a, v, g, w, max));
                }
                Values::Const(v) => zip.for_each(|a, &w, &g| blend_into(a, *v, g, w, max)),
            }
        }
        let mut w_view = wsum.slice_mut(out_region);
        if max {
            w_view.fill(1.0);
        } else {
            w_view += &weights;
        }
        Ok(())
    }
}

/// Blends value `v` of weight `g` into `a`, which windows of weight sum
/// `w` have covered before: the highest value with `max`, else the
/// weighted sum (divided by the weights at the end).
fn blend_into(a: &mut f32, v: f32, g: f32, w: f32, max: bool) {
    if max {
        *a = if w == 0.0 { v } else { a.max(v) };
    } else {
        *a += g * v;
    }
}

enum Values {
    Map(Array4<f32>),
    Const(f32),
}

/// A batch of windows for the model: `data` is `[n, channels, roi, roi,
/// roi]` in C order: the image, then (with the position prior) the three
/// normalised-coordinate channels, exactly as training built them.
#[derive(Clone, Debug)]
pub struct WindowBatch {
    /// The windows.
    pub tiles: Vec<Tile>,
    /// The window edge.
    pub roi: usize,
    /// Channels per window (1, or 4 with the position prior).
    pub channels: usize,
    /// The input, `[n, channels, roi, roi, roi]`.
    pub data: Vec<f32>,
}

impl WindowBatch {
    /// The number of windows.
    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    /// Channel `c` of window `n` as an array.
    ///
    /// # Panics
    /// If `n` or `c` is out of range (programmer misuse).
    pub fn window(&self, n: usize, c: usize) -> Array3<f32> {
        let r = self.roi;
        let per = r * r * r;
        let off = (n * self.channels + c) * per;
        let v = &self.data[off..off + per];
        Array3::from_shape_fn((r, r, r), |(k, j, i)| v[(k * r + j) * r + i])
    }
}

/// What the model says about one window.
#[derive(Clone, Debug, PartialEq)]
pub enum WindowOutput {
    /// A probability per voxel, `[roi, roi, roi]`.
    Dense(Array3<f32>),
    /// Several values per voxel, `[channels, roi, roi, roi]`
    /// ([`SlidingWindow::run_channels`]).
    Channels(Array4<f32>),
    /// One probability for the window.
    Score(f32),
}

/// The model input for the window of edge `roi` starting at `start`
/// (`[k, j, i]`, may be negative: zero padding): the image, then with
/// `position` the three coordinate channels (the case's mask bounding box
/// normalised to [0, 1], as [`aneu_patch::Patch::position_channels`]).
pub fn window_input(case: &Case, start: [i64; 3], roi: usize, position: bool) -> Vec<f32> {
    let img = extract_box(case.image.data(), start, [roi; 3]);
    let per = roi * roi * roi;
    let mut out = Vec::with_capacity(if position { 4 * per } else { per });
    out.extend(img.iter().copied());
    if position {
        for a in 0..3 {
            let ramp: Vec<f32> = (0..roi)
                .map(|x| {
                    let mut p = [0.0; 3];
                    p[a] = (start[a] + x as i64) as f64;
                    case.normalised_position(p)[a] as f32
                })
                .collect();
            for k in 0..roi {
                for j in 0..roi {
                    for i in 0..roi {
                        out.push(ramp[[k, j, i][a]]);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aneu_io::{Affine, Volume};

    fn case(dims: (usize, usize, usize)) -> Case {
        let img = Volume::new(
            Array3::from_shape_fn(dims, |(k, j, i)| ((k * 7 + j * 3 + i) % 11) as f32 - 5.0),
            Affine::identity(),
        )
        .unwrap();
        let mask = img.map(|_| 1u8);
        Case::new("t", img, mask, vec![]).unwrap()
    }

    #[test]
    fn classifier_spread_centre_covers_only_the_centre() {
        let c = case((8, 8, 8));
        let w = SlidingWindow::default()
            .with_blend(Blend::Mean)
            .with_spread(Spread::Centre { fraction: 0.5 });
        let m = w
            .run(&c, 8, false, |b| Ok(vec![WindowOutput::Score(0.7); b.len()]))
            .unwrap();
        assert_eq!(m[[4, 4, 4]], 0.7);
        assert_eq!(m[[2, 2, 2]], 0.7);
        assert_eq!(m[[1, 4, 4]], 0.0);
        assert_eq!(m[[6, 4, 4]], 0.0);
    }

    #[test]
    fn max_blend_takes_the_highest_window() {
        let c = case((12, 8, 8));
        let w = SlidingWindow::default()
            .with_blend(Blend::Max)
            .with_spread(Spread::Patch);
        let m = w
            .run(&c, 8, false, |b| {
                Ok(b.tiles.iter().map(|t| WindowOutput::Score(t.start[0] as f32)).collect())
            })
            .unwrap();
        // windows start at k = 0, 2, 4 (evenly spaced, half overlap)
        assert_eq!(m[[0, 0, 0]], 0.0);
        assert_eq!(m[[7, 0, 0]], 4.0);
        assert_eq!(m[[11, 0, 0]], 4.0);
    }

    #[test]
    fn wrong_output_count_is_an_error() {
        let c = case((8, 8, 8));
        let r = SlidingWindow::default().run(&c, 8, false, |_| Ok(vec![]));
        assert!(matches!(r, Err(Error::InvalidConfig(_))));
        let r = SlidingWindow::default().run(&c, 8, false, |_| {
            Ok(vec![WindowOutput::Dense(Array3::zeros((2, 2, 2)))])
        });
        assert!(matches!(r, Err(Error::InvalidConfig(_))));
    }

    /// Every channel is blended as one channel alone would be (bit for
    /// bit), so class probabilities that sum to 1 in each window still sum
    /// to 1 after blending; a wrong channel count is an error.
    #[test]
    fn channels_blend_as_single_maps() {
        let c = case((20, 13, 17));
        let w = SlidingWindow::default().with_overlap(0.5);
        // a "model" whose two channels are s and 1 − s, s a function of the
        // window and the voxel
        let value =
            |t: &Tile, k: usize, j: usize, i: usize| ((t.start[0] + 3 * k + j + 2 * i + t.start[2]) % 7) as f32 / 7.0;
        let two = w
            .run_channels(&c, 8, false, 2, |b| {
                Ok(b.tiles
                    .iter()
                    .map(|t| {
                        WindowOutput::Channels(Array4::from_shape_fn((2, 8, 8, 8), |(ch, k, j, i)| {
                            let s = value(t, k, j, i);
                            if ch == 0 { s } else { 1.0 - s }
                        }))
                    })
                    .collect())
            })
            .unwrap();
        let one = w
            .run(&c, 8, false, |b| {
                Ok(b.tiles
                    .iter()
                    .map(|t| WindowOutput::Dense(Array3::from_shape_fn((8, 8, 8), |(k, j, i)| value(t, k, j, i))))
                    .collect())
            })
            .unwrap();
        assert_eq!(two.index_axis(Axis(0), 0), one);
        let sums = &two.index_axis(Axis(0), 0) + &two.index_axis(Axis(0), 1);
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
        let r = w.run_channels(&c, 8, false, 3, |b| {
            Ok(vec![WindowOutput::Channels(Array4::zeros((2, 8, 8, 8))); b.len()])
        });
        assert!(matches!(r, Err(Error::InvalidConfig(_))));
        // outside the mask, mask_output zeroes the map (channel 0) only
        let mut half = c.mask.clone();
        half.data_mut().slice_mut(ndarray::s![..10, .., ..]).fill(0);
        let masked = Case::new("t", c.image.clone(), half, vec![]).unwrap();
        // every window runs (mask_tiles off), so every voxel is covered
        let ones = w
            .clone()
            .with_mask(false, true)
            .run_channels(&masked, 8, false, 2, |b| {
                Ok(vec![WindowOutput::Channels(Array4::ones((2, 8, 8, 8))); b.len()])
            })
            .unwrap();
        assert!(ones.slice(ndarray::s![0, ..10, .., ..]).iter().all(|v| *v == 0.0));
        assert!(
            ones.slice(ndarray::s![0, 10.., .., ..])
                .iter()
                .all(|v| (v - 1.0).abs() < 1e-6)
        );
        assert!(
            ones.slice(ndarray::s![1, .., .., ..])
                .iter()
                .all(|v| (v - 1.0).abs() < 1e-6)
        );
        let r = w.run_channels(&c, 8, false, 2, |b| Ok(vec![WindowOutput::Score(0.5); b.len()]));
        assert!(matches!(r, Err(Error::InvalidConfig(_))));
    }

    #[test]
    fn position_channels_span_the_mask_box() {
        let c = case((8, 8, 8));
        let v = window_input(&c, [0, 0, 0], 8, true);
        let per = 512;
        assert_eq!(v.len(), 4 * per);
        // channel 1 (k ramp): 0 at k = 0, 1 at k = 7
        assert_eq!(v[per], 0.0);
        assert_eq!(v[per + 7 * 64], 1.0);
        // channel 3 (i ramp): 1 at i = 7
        assert_eq!(v[3 * per + 7], 1.0);
    }
}

//! Binary masks: Otsu threshold, morphology, connected components and hole
//! filling, implemented once on `[k, j, i]` volumes (6-connectivity).

use aneu_io::{Affine, Volume, Voxel};
use ndarray::{Array3, Axis, Slice};
use rayon::prelude::*;

use crate::{Error, Result};

/// Otsu's threshold over a 256-bin histogram of the finite values.
///
/// # Errors
/// [`Error::Degenerate`] for a constant image.
pub fn otsu_threshold(values: &[f32]) -> Result<f32> {
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if hi <= lo {
        return Err(Error::Degenerate("constant image: no Otsu threshold".into()));
    }
    const BINS: usize = 256;
    let mut hist = [0u64; BINS];
    let w = f64::from(hi - lo) / BINS as f64;
    for &v in values.iter().filter(|v| v.is_finite()) {
        let b = ((f64::from(v - lo) / w) as usize).min(BINS - 1);
        hist[b] += 1;
    }
    let total: u64 = hist.iter().sum();
    let sum_all: f64 = hist.iter().enumerate().map(|(i, &h)| i as f64 * h as f64).sum();
    let (mut w0, mut sum0, mut best, mut best_t) = (0u64, 0.0, -1.0, 0usize);
    for (t, &h) in hist.iter().enumerate() {
        w0 += h;
        sum0 += t as f64 * h as f64;
        let w1 = total - w0;
        if w0 == 0 || w1 == 0 {
            continue;
        }
        let m0 = sum0 / w0 as f64;
        let m1 = (sum_all - sum0) / w1 as f64;
        let between = w0 as f64 * w1 as f64 * (m0 - m1).powi(2);
        if between > best {
            best = between;
            best_t = t;
        }
    }
    Ok(lo + ((best_t + 1) as f64 * w) as f32)
}

/// A `[k, j, i]` grid in C order: its sizes and the flat indices of a
/// voxel's six neighbours.
#[derive(Clone, Copy)]
struct Grid3 {
    nk: usize,
    nj: usize,
    ni: usize,
}

impl Grid3 {
    fn of<T>(m: &Array3<T>) -> Self {
        let s = m.shape();
        Grid3 {
            nk: s[0],
            nj: s[1],
            ni: s[2],
        }
    }

    fn len(self) -> usize {
        self.nk * self.nj * self.ni
    }

    /// Calls `f` with each 6-connected neighbour of the flat index `p`.
    #[inline]
    fn neighbours(self, p: usize, mut f: impl FnMut(usize)) {
        let plane = self.nj * self.ni;
        let (k, r) = (p / plane, p % plane);
        let (j, i) = (r / self.ni, r % self.ni);
        if k > 0 {
            f(p - plane);
        }
        if k + 1 < self.nk {
            f(p + plane);
        }
        if j > 0 {
            f(p - self.ni);
        }
        if j + 1 < self.nj {
            f(p + self.ni);
        }
        if i > 0 {
            f(p - 1);
        }
        if i + 1 < self.ni {
            f(p + 1);
        }
    }

    /// The flat vector back on this grid.
    fn array<T: Copy>(self, v: &[T]) -> Array3<T> {
        let (nj, ni) = (self.nj, self.ni);
        Array3::from_shape_fn((self.nk, nj, ni), |(k, j, i)| v[(k * nj + j) * ni + i])
    }
}

/// The mask's values in C order (whatever its memory layout).
fn flat(m: &Array3<bool>) -> Vec<bool> {
    m.iter().copied().collect()
}

/// `steps` rounds of 6-connected dilation.
///
/// `steps` rounds of the six-neighbour OR reach exactly the voxels within
/// city-block (L1) distance `steps` of the mask inside the grid, so this
/// computes that distance, clipped at `steps + 1`, by a forward and a
/// backward scan along each axis in turn (the L1 distance transform is
/// separable): six passes whatever `steps` is, instead of seven per round.
pub fn dilate(m: &Array3<bool>, steps: usize) -> Array3<bool> {
    let g = Grid3::of(m);
    if steps == 0 || g.len() == 0 {
        return m.clone();
    }
    // no two voxels are further apart than this
    let steps = steps.min(g.nk + g.nj + g.ni);
    let Ok(cap) = u16::try_from(steps + 1) else {
        return dilate_by_shifts(m, steps);
    };
    let mut d: Vec<u16> = m.iter().map(|&v| if v { 0 } else { cap }).collect();
    let (nj, ni) = (g.nj, g.ni);
    let plane = nj * ni;
    // rows run along i; each forward / backward scan is a 1D min-plus
    // convolution with |x|
    let scan_rows = |cur: &mut [u16], prev: &[u16]| {
        cur.iter_mut()
            .zip(prev)
            .for_each(|(c, p)| *c = (*c).min(p.saturating_add(1)));
    };
    d.par_chunks_mut(plane).for_each(|pl| {
        for row in pl.chunks_mut(ni) {
            for i in 1..ni {
                row[i] = row[i].min(row[i - 1].saturating_add(1));
            }
            for i in (0..ni.saturating_sub(1)).rev() {
                row[i] = row[i].min(row[i + 1].saturating_add(1));
            }
        }
        for j in 1..nj {
            let (a, b) = pl.split_at_mut(j * ni);
            scan_rows(&mut b[..ni], &a[(j - 1) * ni..]);
        }
        for j in (0..nj.saturating_sub(1)).rev() {
            let (a, b) = pl.split_at_mut((j + 1) * ni);
            scan_rows(&mut a[j * ni..], &b[..ni]);
        }
    });
    for k in 1..g.nk {
        let (a, b) = d.split_at_mut(k * plane);
        scan_rows(&mut b[..plane], &a[(k - 1) * plane..]);
    }
    for k in (0..g.nk.saturating_sub(1)).rev() {
        let (a, b) = d.split_at_mut((k + 1) * plane);
        scan_rows(&mut a[k * plane..], &b[..plane]);
    }
    let steps = steps as u16;
    g.array(&d.iter().map(|v| *v <= steps).collect::<Vec<_>>())
}

/// `steps` rounds of ORing the mask with its six one-voxel shifts, whole
/// planes at a time: for grids too large for [`dilate`]'s 16-bit distances.
fn dilate_by_shifts(m: &Array3<bool>, steps: usize) -> Array3<bool> {
    let mut cur = m.clone();
    for _ in 0..steps {
        let prev = cur.clone();
        for axis in 0..3 {
            let n = prev.len_of(Axis(axis));
            if n < 2 {
                continue;
            }
            cur.slice_axis_mut(Axis(axis), Slice::from(1..))
                .zip_mut_with(&prev.slice_axis(Axis(axis), Slice::from(..n - 1)), |a, b| *a |= *b);
            cur.slice_axis_mut(Axis(axis), Slice::from(..n - 1))
                .zip_mut_with(&prev.slice_axis(Axis(axis), Slice::from(1..)), |a, b| *a |= *b);
        }
    }
    cur
}

/// `steps` rounds of 6-connected erosion. Outside the grid counts as
/// foreground, so a field of view cut through the head does not erode the
/// object at its border.
pub fn erode(m: &Array3<bool>, steps: usize) -> Array3<bool> {
    let inv = m.mapv(|v| !v);
    dilate(&inv, steps).mapv(|v| !v)
}

/// The largest 6-connected component (the first found in C order among
/// equals).
pub fn largest_component(m: &Array3<bool>) -> Array3<bool> {
    let g = Grid3::of(m);
    let src = flat(m);
    let mut label = vec![0u32; src.len()];
    let mut stack = Vec::new();
    let (mut next, mut best, mut best_n) = (0u32, 0u32, 0usize);
    for start in 0..src.len() {
        if !src[start] || label[start] != 0 {
            continue;
        }
        next += 1;
        label[start] = next;
        stack.push(start);
        let mut n = 0usize;
        while let Some(p) = stack.pop() {
            n += 1;
            g.neighbours(p, |q| {
                if src[q] && label[q] == 0 {
                    label[q] = next;
                    stack.push(q);
                }
            });
        }
        if n > best_n {
            best_n = n;
            best = next;
        }
    }
    g.array(&label.iter().map(|&l| l != 0 && l == best).collect::<Vec<_>>())
}

/// Fills holes: background not connected to the grid border becomes
/// foreground.
pub fn fill_holes(m: &Array3<bool>) -> Array3<bool> {
    let g = Grid3::of(m);
    let src = flat(m);
    let mut outside = vec![false; src.len()];
    let mut stack = Vec::new();
    let mut p = 0;
    for k in 0..g.nk {
        for j in 0..g.nj {
            for i in 0..g.ni {
                let border = k == 0 || j == 0 || i == 0 || k + 1 == g.nk || j + 1 == g.nj || i + 1 == g.ni;
                if border && !src[p] {
                    outside[p] = true;
                    stack.push(p);
                }
                p += 1;
            }
        }
    }
    while let Some(p) = stack.pop() {
        g.neighbours(p, |q| {
            if !src[q] && !outside[q] {
                outside[q] = true;
                stack.push(q);
            }
        });
    }
    g.array(&outside.iter().map(|o| !o).collect::<Vec<_>>())
}

/// A head (foreground) mask: a two-level Otsu threshold (Otsu again within
/// the darker class, which separates air and bone from all soft tissue even
/// when one tissue, such as CSF on T2, is the brightest), an opening, the
/// largest component, a closing and hole filling.
///
/// # Errors
/// [`Error::Degenerate`] for a constant image or an empty mask.
pub fn head_mask(vol: &Volume<f32>) -> Result<Volume<u8>> {
    let t1 = otsu_threshold(vol.as_slice())?;
    let lower: Vec<f32> = vol.as_slice().iter().copied().filter(|v| *v <= t1).collect();
    let t = otsu_threshold(&lower).unwrap_or(t1);
    let m = vol.data().mapv(|v| v > t);
    let m = dilate(&erode(&m, 1), 1);
    let m = largest_component(&m);
    let m = erode(&dilate(&m, 2), 2);
    let m = fill_holes(&m);
    if !m.iter().any(|v| *v) {
        return Err(Error::Degenerate("the head mask is empty".into()));
    }
    Ok(vol.with_data(m.mapv(u8::from))?)
}

/// Geodesic dilation: `steps` rounds of dilation, each kept inside `within`.
///
/// Computed as one breadth-first search from the seed that enters only
/// `within` and stops `steps` layers out: the same voxels as the rounds,
/// each visited once.
pub fn reconstruct(seed: &Array3<bool>, within: &Array3<bool>, steps: usize) -> Array3<bool> {
    if steps == 0 {
        return seed.clone();
    }
    let g = Grid3::of(seed);
    let w = flat(within);
    let mut reached = flat(seed);
    let mut frontier: Vec<usize> = (0..reached.len()).filter(|&p| reached[p]).collect();
    for _ in 0..steps {
        let mut next = Vec::new();
        for &p in &frontier {
            g.neighbours(p, |q| {
                if w[q] && !reached[q] {
                    reached[q] = true;
                    next.push(q);
                }
            });
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    g.array(&reached.iter().zip(&w).map(|(r, w)| *r && *w).collect::<Vec<_>>())
}

/// The brain / intracranial mask (skull stripping) of a head image: the
/// whole cranial cavity, CSF and the skull-base vessels included.
///
/// * A candidate compartment by modality: CTA by HU rules
///   (−200 < HU < 500, so bone > 500 HU is out and contrast-filled vessels
///   are in); TOF-MRA and T1post by the two-level Otsu threshold of
///   [`head_mask`] (tissue brighter than the dark band of CSF and bone);
///   T2 everything above a quarter of the median tissue value (its CSF is
///   bright, and its arteries are flow voids darker than tissue but
///   brighter than bone).
/// * The candidate is eroded by ≈ 5 mm, which cuts the bridges through the
///   skull base (vessels up to the ICA, nerves); the largest component is the cavity;
///   it is grown back inside the candidate (geodesic reconstruction) and its
///   holes are filled.
/// * On T2, where arteries are flow voids as dark as bone, a ≈ 3 mm
///   closing seals the vessel channels; on TOF-MRA and T1post, where CSF is
///   as dark as bone, the cavity is grown by ≈ 2.5 mm of CSF.
///
/// Grids finer than [`MASK_WORKING_SPACING_MM`] (clinical CTA and TOF-MRA
/// at 0.3–0.5 mm) are averaged over blocks of whole voxels first, and each
/// voxel takes the value of its block's mask: [`working_grid_factors`].
///
/// # Errors
/// [`Error::Degenerate`] for a constant image or an empty result.
pub fn intracranial_mask(vol: &Volume<f32>, modality: aneu_io::Modality) -> Result<Volume<u8>> {
    let f = working_grid_factors(vol.spacing());
    if f == [1, 1, 1] {
        return intracranial_mask_native(vol, modality);
    }
    let coarse = block_mean(vol, f)?;
    let m = intracranial_mask_native(&coarse, modality)?;
    let [fi, fj, fk] = f;
    let (nk, nj, ni) = vol.data().dim();
    let plane = nj * ni;
    let cm = m.data();
    let mut fine = vec![0u8; nk * plane];
    fine.par_chunks_mut(plane.max(1)).enumerate().for_each(|(k, dst)| {
        let src = cm.index_axis(Axis(0), k / fk);
        for (j, row) in dst.chunks_mut(ni.max(1)).enumerate() {
            let src = src.index_axis(Axis(0), j / fj);
            for (i, v) in row.iter_mut().enumerate() {
                *v = src[i / fi];
            }
        }
    });
    Ok(vol.with_data(Array3::from_shape_vec((nk, nj, ni), fine).map_err(|e| Error::InvalidArgument(e.to_string()))?)?)
}

/// The coarsest spacing [`intracranial_mask`] works at, in mm: a grid
/// finer than this along an axis is averaged over whole voxels up to it
/// (the pipeline's default output spacing, so the mask is as fine as the
/// grid it ends on).
pub const MASK_WORKING_SPACING_MM: f64 = 1.0;

/// Block sizes `[i, j, k]` (whole voxels) for a grid of `spacing` (mm along
/// i, j, k): the largest whole number of voxels spanning at most
/// [`MASK_WORKING_SPACING_MM`], and 1 for coarser axes.
///
/// ```
/// use aneu_preproc::mask::working_grid_factors;
/// assert_eq!(working_grid_factors([0.38, 0.38, 0.8]), [2, 2, 1]);
/// assert_eq!(working_grid_factors([0.3, 0.3, 0.5]), [3, 3, 2]);
/// assert_eq!(working_grid_factors([0.9, 0.9, 1.0]), [1, 1, 1]);
/// ```
pub fn working_grid_factors(spacing: [f64; 3]) -> [usize; 3] {
    spacing.map(|s| {
        if s > 0.0 && s.is_finite() {
            ((MASK_WORKING_SPACING_MM / s + 1e-9).floor() as usize).max(1)
        } else {
            1
        }
    })
}

/// The mean of `vol` over blocks of `f = [fi, fj, fk]` voxels (the last
/// block of an axis may be shorter), on the grid whose voxel centres are
/// the full blocks' centres.
fn block_mean(vol: &Volume<f32>, f: [usize; 3]) -> Result<Volume<f32>> {
    let [fi, fj, fk] = f;
    let a = vol.data();
    let (nk, nj, ni) = a.dim();
    let (ck, cj, ci) = (nk.div_ceil(fk), nj.div_ceil(fj), ni.div_ceil(fi));
    let mut out = vec![0.0f32; ck * cj * ci];
    out.par_chunks_mut((cj * ci).max(1)).enumerate().for_each(|(c, dst)| {
        let mut sum = vec![0.0f64; cj * ci];
        let mut count = vec![0u32; cj * ci];
        for k in c * fk..((c + 1) * fk).min(nk) {
            let plane = a.index_axis(Axis(0), k);
            for (j, row) in plane.outer_iter().enumerate() {
                let base = (j / fj) * ci;
                for (i, v) in row.iter().enumerate() {
                    sum[base + i / fi] += f64::from(*v);
                    count[base + i / fi] += 1;
                }
            }
        }
        for ((d, s), n) in dst.iter_mut().zip(&sum).zip(&count) {
            *d = (*s / f64::from((*n).max(1))) as f32;
        }
    });
    let aff = vol.affine();
    let mut lin = [[0.0; 3]; 3];
    for (c, fac) in f.iter().enumerate() {
        let step = aff.axis_step(c);
        for r in 0..3 {
            lin[r][c] = step[r] * *fac as f64;
        }
    }
    let centre = aff.voxel_to_world(Voxel::new(
        (fi as f64 - 1.0) / 2.0,
        (fj as f64 - 1.0) / 2.0,
        (fk as f64 - 1.0) / 2.0,
    ));
    let affine = Affine::from_parts(lin, centre.to_array())?;
    let data = Array3::from_shape_vec((ck, cj, ci), out).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    Ok(Volume::new(data, affine)?)
}

/// [`intracranial_mask`] on the image's own grid.
fn intracranial_mask_native(vol: &Volume<f32>, modality: aneu_io::Modality) -> Result<Volume<u8>> {
    use aneu_io::Modality;
    let sp = vol.spacing();
    let step_mm = sp.iter().fold(f64::MAX, |a, b| a.min(*b));
    let steps = |mm: f64| ((mm / step_mm).round() as usize).max(1);
    let head = head_mask(vol)?;
    let inside_head = head.data().mapv(|v| v != 0);
    let candidate = match modality {
        Modality::Cta => ndarray::Zip::from(&vol.data())
            .and(&inside_head)
            .map_collect(|v, h| *h && *v > -200.0 && *v < 500.0),
        _ => {
            let t1 = otsu_threshold(vol.as_slice())?;
            let lower: Vec<f32> = vol.as_slice().iter().copied().filter(|v| *v <= t1).collect();
            let t = otsu_threshold(&lower).unwrap_or(t1);
            let t = if modality == Modality::MriT2 {
                // flow voids (arteries) lie between bone and tissue: keep
                // everything above a quarter of the median tissue value
                let mut tissue: Vec<f32> = vol.as_slice().iter().copied().filter(|v| *v > t).collect();
                if tissue.is_empty() {
                    t
                } else {
                    let mid = tissue.len() / 2;
                    let (_, median, _) = tissue.select_nth_unstable_by(mid, f32::total_cmp);
                    (*median * 0.25).min(t)
                }
            } else {
                // tissue above the dark CSF/bone band: Otsu of the upper part
                let upper: Vec<f32> = vol.as_slice().iter().copied().filter(|v| *v > t).collect();
                let t2 = otsu_threshold(&upper).unwrap_or(t);
                // the dark band lies below the midpoint of t and the first tissue class
                t.max(0.5 * (t + t2).min(t1))
            };
            ndarray::Zip::from(&vol.data())
                .and(&inside_head)
                .map_collect(|v, h| *h && *v > t)
        }
    };
    let r = steps(5.0);
    let core = largest_component(&erode(&candidate, r));
    if !core.iter().any(|v| *v) {
        return Err(Error::Degenerate("no intracranial compartment found".into()));
    }
    let mut cavity = fill_holes(&reconstruct(&core, &candidate, 2 * r));
    if modality == Modality::MriT2 {
        // arteries are flow voids, as dark as bone, and reach the border
        // through the skull base: close vessel-sized channels (not the
        // 5–8 mm skull), then fill
        let c = steps(3.0);
        let closed = erode(&dilate(&cavity, c), c);
        cavity = fill_holes(
            &ndarray::Zip::from(&closed)
                .and(&inside_head)
                .map_collect(|a, b| *a && *b),
        );
    }
    if matches!(modality, Modality::Mra | Modality::MriT1post) {
        let csf = dilate(&cavity, steps(2.5));
        cavity = ndarray::Zip::from(&csf).and(&inside_head).map_collect(|a, b| *a && *b);
        cavity = fill_holes(&cavity);
    }
    Ok(vol.with_data(cavity.mapv(u8::from))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::VecDeque;

    fn neighbours(shape: [usize; 3], k: usize, j: usize, i: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        let d: [(isize, isize, isize); 6] = [(-1, 0, 0), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1)];
        d.into_iter().filter_map(move |(dk, dj, di)| {
            let (a, b, c) = (k as isize + dk, j as isize + dj, i as isize + di);
            (a >= 0
                && b >= 0
                && c >= 0
                && (a as usize) < shape[0]
                && (b as usize) < shape[1]
                && (c as usize) < shape[2])
                .then_some((a as usize, b as usize, c as usize))
        })
    }

    fn shape(m: &Array3<bool>) -> [usize; 3] {
        let s = m.shape();
        [s[0], s[1], s[2]]
    }

    /// Labelling by a breadth-first search over coordinate neighbours.
    fn largest_component_reference(m: &Array3<bool>) -> Array3<bool> {
        let sh = shape(m);
        let mut label = Array3::<u32>::zeros(m.raw_dim());
        let (mut next, mut best, mut best_n) = (0u32, 0u32, 0usize);
        let mut q = VecDeque::new();
        for ((k, j, i), &v) in m.indexed_iter() {
            if !v || label[[k, j, i]] != 0 {
                continue;
            }
            next += 1;
            let mut n = 0;
            label[[k, j, i]] = next;
            q.push_back((k, j, i));
            while let Some(p) = q.pop_front() {
                n += 1;
                for nb in neighbours(sh, p.0, p.1, p.2) {
                    if m[nb] && label[nb] == 0 {
                        label[nb] = next;
                        q.push_back(nb);
                    }
                }
            }
            if n > best_n {
                best_n = n;
                best = next;
            }
        }
        label.mapv(|l| l != 0 && l == best)
    }

    fn fill_holes_reference(m: &Array3<bool>) -> Array3<bool> {
        let sh = shape(m);
        let mut outside = Array3::<bool>::from_elem(m.raw_dim(), false);
        let mut q = VecDeque::new();
        for ((k, j, i), &v) in m.indexed_iter() {
            let border = k == 0 || j == 0 || i == 0 || k == sh[0] - 1 || j == sh[1] - 1 || i == sh[2] - 1;
            if border && !v {
                outside[[k, j, i]] = true;
                q.push_back((k, j, i));
            }
        }
        while let Some(p) = q.pop_front() {
            for nb in neighbours(sh, p.0, p.1, p.2) {
                if !m[nb] && !outside[nb] {
                    outside[nb] = true;
                    q.push_back(nb);
                }
            }
        }
        outside.mapv(|o| !o)
    }

    /// The definition: `steps` rounds of (dilate by one, AND `within`).
    fn reconstruct_reference(seed: &Array3<bool>, within: &Array3<bool>, steps: usize) -> Array3<bool> {
        let mut m = seed.clone();
        for _ in 0..steps {
            let grown = dilate_reference(&m, 1);
            m = ndarray::Zip::from(&grown).and(within).map_collect(|a, b| *a && *b);
        }
        m
    }

    /// Pseudo-random masks: odd and thin shapes, sparse to dense.
    fn masks() -> Vec<Array3<bool>> {
        let mut state = 12345u64;
        let mut out = Vec::new();
        for dims in [(7, 9, 11), (1, 5, 6), (4, 1, 3), (2, 2, 2), (12, 10, 9)] {
            for every in [13u64, 3, 2] {
                out.push(Array3::from_shape_fn(dims, |_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 33).is_multiple_of(every)
                }));
            }
        }
        out
    }

    #[test]
    fn components_holes_and_reconstruction_match_their_definitions() {
        let all = masks();
        for (n, m) in all.iter().enumerate() {
            assert_eq!(largest_component(m), largest_component_reference(m), "mask {n}");
            assert_eq!(fill_holes(m), fill_holes_reference(m), "mask {n}");
            // a sparse seed grown inside a denser mask of the same shape
            let within = all
                .iter()
                .find(|w| w.shape() == m.shape() && !std::ptr::eq(*w, m))
                .unwrap_or(m);
            for steps in [0, 1, 2, 5, 40] {
                assert_eq!(
                    reconstruct(m, within, steps),
                    reconstruct_reference(m, within, steps),
                    "mask {n}, {steps} steps"
                );
            }
        }
    }

    #[test]
    fn large_dilations_match_the_shifted_planes() {
        for m in masks() {
            for steps in [5, 9, 30] {
                assert_eq!(dilate(&m, steps), dilate_by_shifts(&m, steps));
            }
        }
    }

    /// The per-voxel definition: a voxel is set when it or one of its six
    /// neighbours was.
    fn dilate_reference(m: &Array3<bool>, steps: usize) -> Array3<bool> {
        let mut cur = m.clone();
        let sh = shape(m);
        for _ in 0..steps {
            let prev = cur.clone();
            for ((k, j, i), v) in cur.indexed_iter_mut() {
                if !*v {
                    *v = neighbours(sh, k, j, i).any(|n| prev[n]);
                }
            }
        }
        cur
    }

    #[test]
    fn dilation_matches_the_per_voxel_definition() {
        // a pseudo-random sparse mask, odd shapes, thin axes included
        let mut state = 12345u64;
        for dims in [(7, 9, 11), (1, 5, 6), (4, 1, 3), (2, 2, 2)] {
            let m = Array3::from_shape_fn(dims, |_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33).is_multiple_of(13)
            });
            for steps in 0..4 {
                assert_eq!(dilate(&m, steps), dilate_reference(&m, steps), "{dims:?} {steps}");
                let inv = m.mapv(|v| !v);
                assert_eq!(
                    erode(&m, steps),
                    dilate_reference(&inv, steps).mapv(|v| !v),
                    "{dims:?} {steps}"
                );
            }
        }
    }

    /// A block mean sits at its block's centre: on an oblique grid, a field
    /// linear in world space averages to its value at the coarse voxel's
    /// world position (full blocks).
    #[test]
    fn blocks_keep_the_geometry() {
        let aff = Affine::from_parts(
            [[0.3, 0.05, 0.0], [-0.04, 0.3, 0.1], [0.0, -0.02, 0.8]],
            [10.0, -4.0, 2.5],
        )
        .unwrap();
        let field = |w: aneu_io::WorldPoint| (1.5 * w.x - 0.7 * w.y + 0.3 * w.z) as f32;
        let (nk, nj, ni) = (7, 9, 11);
        let data = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| {
            field(aff.voxel_to_world(Voxel::new(i as f64, j as f64, k as f64)))
        });
        let vol = Volume::new(data, aff).unwrap();
        let f = working_grid_factors(vol.spacing());
        assert_eq!(f, [3, 3, 1]);
        let c = block_mean(&vol, f).unwrap();
        assert_eq!(c.data().dim(), (7, 3, 4));
        for ((k, j, i), v) in c.data().indexed_iter() {
            if i < 3 {
                let w = c.voxel_to_world(Voxel::new(i as f64, j as f64, k as f64));
                assert!((v - field(w)).abs() < 1e-4, "{v} vs {}", field(w));
            }
        }
    }

    #[test]
    fn morphology_on_a_cube() {
        let mut m = Array3::<bool>::from_elem((9, 9, 9), false);
        for k in 2..7 {
            for j in 2..7 {
                for i in 2..7 {
                    m[[k, j, i]] = true;
                }
            }
        }
        m[[4, 4, 4]] = false; // a hole
        m[[0, 0, 0]] = true; // a speck
        let filled = fill_holes(&m);
        assert!(filled[[4, 4, 4]]);
        let big = largest_component(&filled);
        assert!(!big[[0, 0, 0]] && big[[2, 2, 2]]);
        assert_eq!(big.iter().filter(|v| **v).count(), 125);
        assert_eq!(erode(&big, 1).iter().filter(|v| **v).count(), 27);
        // a slab touching the grid border keeps its border voxels
        let slab = Array3::<bool>::from_elem((3, 9, 9), true);
        assert_eq!(erode(&slab, 1).iter().filter(|v| **v).count(), 243);
        assert_eq!(dilate(&erode(&big, 1), 1).iter().filter(|v| **v).count(), 27 + 6 * 9);
    }

    #[test]
    fn otsu_splits_two_modes() {
        let v: Vec<f32> = (0..1000)
            .map(|i| {
                if i % 2 == 0 {
                    10.0 + (i % 7) as f32
                } else {
                    100.0 + (i % 5) as f32
                }
            })
            .collect();
        let t = otsu_threshold(&v).unwrap();
        assert!(t > 16.0 && t < 100.0, "{t}");
    }
}

//! Binary masks: Otsu threshold, morphology, connected components and hole
//! filling, implemented once on `[k, j, i]` volumes (6-connectivity).

use std::collections::VecDeque;

use aneu_io::Volume;
use ndarray::{Array3, Axis, Slice};

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

fn neighbours(shape: [usize; 3], k: usize, j: usize, i: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let d: [(isize, isize, isize); 6] = [(-1, 0, 0), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1)];
    d.into_iter().filter_map(move |(dk, dj, di)| {
        let (a, b, c) = (k as isize + dk, j as isize + dj, i as isize + di);
        (a >= 0 && b >= 0 && c >= 0 && (a as usize) < shape[0] && (b as usize) < shape[1] && (c as usize) < shape[2])
            .then_some((a as usize, b as usize, c as usize))
    })
}

fn shape(m: &Array3<bool>) -> [usize; 3] {
    let s = m.shape();
    [s[0], s[1], s[2]]
}

/// `steps` rounds of 6-connected dilation.
///
/// Each round ORs the mask with its six one-voxel shifts, whole planes at a
/// time (no per-voxel neighbour search).
pub fn dilate(m: &Array3<bool>, steps: usize) -> Array3<bool> {
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

/// The largest 6-connected component.
pub fn largest_component(m: &Array3<bool>) -> Array3<bool> {
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

/// Fills holes: background not connected to the grid border becomes
/// foreground.
pub fn fill_holes(m: &Array3<bool>) -> Array3<bool> {
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
pub fn reconstruct(seed: &Array3<bool>, within: &Array3<bool>, steps: usize) -> Array3<bool> {
    let mut m = seed.clone();
    for _ in 0..steps {
        let grown = dilate(&m, 1);
        m = ndarray::Zip::from(&grown).and(within).map_collect(|a, b| *a && *b);
    }
    m
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
/// # Errors
/// [`Error::Degenerate`] for a constant image or an empty result.
pub fn intracranial_mask(vol: &Volume<f32>, modality: aneu_io::Modality) -> Result<Volume<u8>> {
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

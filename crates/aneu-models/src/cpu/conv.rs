//! The convolution's three passes on plain `f32` slices in NCDHW order:
//! im2col into blocks of output voxels, one matrix product per block on
//! the `gemm` crate, and col2im (its adjoint) for the input gradient.
//!
//! For a block of `rows` output voxels of one sample, the patch matrix `P`
//! is `[C_in·k³, rows]`: row `(c, tap)` holds, for each voxel of the
//! block, the input value that the tap reads (zero in the padding). Then
//!
//! * forward: `Y[:, block] = W · P + b` (`W` is `[C_out, C_in·k³]`);
//! * weight gradient: `∂W += ∂Y[:, block] · Pᵀ`;
//! * input gradient: `∂P = Wᵀ · ∂Y[:, block]`, scattered back (col2im).
//!
//! Rows of `P` are filled along runs of voxels that share their z and y,
//! so that with stride 1 each run is one contiguous copy.

use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;

/// Output voxels per block: bounds the patch matrix to `C_in·k³ × 4096`
/// values (14 MB for 32 channels and a 3×3×3 kernel).
const BLOCK: usize = 4096;

/// The geometry of one 3D convolution with one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Input channels.
    pub ci: usize,
    /// Output channels.
    pub co: usize,
    /// Input size (D, H, W).
    pub input: [usize; 3],
    /// Kernel size.
    pub kernel: [usize; 3],
    /// Output size.
    pub output: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    dilation: [usize; 3],
}

impl Geometry {
    /// The geometry of a convolution of an `x`-shaped input with a
    /// `w`-shaped weight (`[C_out, C_in, kD, kH, kW]`); `None` for several
    /// groups, a weight whose channels do not match, or an output with no
    /// voxel (Burn's own op then decides).
    pub fn new(x: [usize; 5], w: [usize; 5], options: &ConvOptions<3>) -> Option<Self> {
        if options.groups != 1 || w[1] != x[1] || options.stride.contains(&0) {
            return None;
        }
        let mut output = [0; 3];
        for a in 0..3 {
            let span = options.dilation[a] * (w[2 + a].checked_sub(1)?) + 1;
            let padded = x[2 + a] + 2 * options.padding[a];
            output[a] = padded.checked_sub(span)? / options.stride[a] + 1;
        }
        Some(Self {
            ci: x[1],
            co: w[0],
            input: [x[2], x[3], x[4]],
            kernel: [w[2], w[3], w[4]],
            output,
            stride: options.stride,
            padding: options.padding,
            dilation: options.dilation,
        })
    }

    fn taps(&self) -> usize {
        self.kernel.iter().product()
    }

    /// Columns of the weight matrix: `C_in·k³`.
    fn cols(&self) -> usize {
        self.ci * self.taps()
    }

    fn voxels_in(&self) -> usize {
        self.input.iter().product()
    }

    fn voxels_out(&self) -> usize {
        self.output.iter().product()
    }

    /// The blocks of output voxels: (first voxel, count).
    fn blocks(&self) -> impl Iterator<Item = (usize, usize)> + use<> {
        let s = self.voxels_out();
        (0..s).step_by(BLOCK).map(move |start| (start, BLOCK.min(s - start)))
    }

    /// For kernel tap `tap`, the block's output voxels in runs along x:
    /// calls `f(j, run, line)` for positions `j..j + run` of the block,
    /// where `line` is `None` when the tap reads padding for the whole run
    /// (its z or y is outside), else `Some(line)`.
    fn runs(&self, tap: usize, start: usize, rows: usize, mut f: impl FnMut(usize, usize, Option<Line>)) {
        let [kh, kw] = [self.kernel[1], self.kernel[2]];
        let (a, b, c) = (tap / (kh * kw), (tap / kw) % kh, tap % kw);
        let [d, h, w] = self.input.map(|v| v as isize);
        let [_, oh, ow] = self.output;
        let offset = |axis: usize, k: usize| (k * self.dilation[axis]) as isize - self.padding[axis] as isize;
        let (oz, oy, ox) = (offset(0, a), offset(1, b), offset(2, c));
        let sw = self.stride[2] as isize;
        let mut j = 0;
        while j < rows {
            let v = start + j;
            let (z, y, x0) = (v / (oh * ow), (v / ow) % oh, v % ow);
            let run = (ow - x0).min(rows - j);
            let iz = (z * self.stride[0]) as isize + oz;
            let iy = (y * self.stride[1]) as isize + oy;
            let line = ((0..d).contains(&iz) && (0..h).contains(&iy)).then(|| {
                // the input x of position q of the run is base + q·sw
                let base = x0 as isize * sw + ox;
                let first = if base >= 0 { 0 } else { (-base + sw - 1) / sw };
                let end = if base >= w { 0 } else { (w - base + sw - 1) / sw };
                Line {
                    row: ((iz * h + iy) * w) as usize,
                    base,
                    stride: sw as usize,
                    valid: (first as usize).min(run)..(end as usize).min(run),
                }
            });
            f(j, run, line);
            j += run;
        }
    }
}

/// Where a run of output voxels reads one input row.
#[derive(Clone, Debug)]
struct Line {
    /// Index of the input row's first voxel within its channel.
    row: usize,
    /// Input x of the run's first position (may lie in the padding).
    base: isize,
    /// Stride along x.
    stride: usize,
    /// Positions of the run that read inside the row.
    valid: std::ops::Range<usize>,
}

impl Line {
    /// Index within the channel of the voxel that position `q` reads.
    fn index(&self, q: usize) -> usize {
        self.row + (self.base + (q * self.stride) as isize) as usize
    }
}

/// Fills `cols` (`[C_in·k³, rows]`) with the patches of the block of
/// output voxels `start..start + rows` of one sample `x` (`[C_in, D·H·W]`).
fn im2col(g: &Geometry, x: &[f32], start: usize, rows: usize, cols: &mut [f32]) {
    let (taps, s) = (g.taps(), g.voxels_in());
    cols[..g.cols() * rows]
        .par_chunks_mut(rows)
        .enumerate()
        .for_each(|(r, out)| {
            let xc = &x[(r / taps) * s..(r / taps + 1) * s];
            g.runs(r % taps, start, rows, |j, run, line| {
                let seg = &mut out[j..j + run];
                let Some(line) = line else {
                    seg.fill(0.0);
                    return;
                };
                let v = line.valid.clone();
                seg[..v.start].fill(0.0);
                seg[v.end.max(v.start)..].fill(0.0);
                if v.is_empty() {
                    return;
                }
                if line.stride == 1 {
                    let from = line.index(v.start);
                    seg[v.clone()].copy_from_slice(&xc[from..from + v.len()]);
                } else {
                    for q in v {
                        seg[q] = xc[line.index(q)];
                    }
                }
            });
        });
}

/// The adjoint of [`im2col`]: adds each patch value of `cols` back onto
/// the input voxel it was read from, in `dx` (`[C_in, D·H·W]`), in
/// parallel over input channels (each owns its voxels) and in a fixed
/// order within each, so the sums do not depend on the threads.
fn col2im(g: &Geometry, cols: &[f32], start: usize, rows: usize, dx: &mut [f32]) {
    let (taps, s) = (g.taps(), g.voxels_in());
    dx.par_chunks_mut(s).enumerate().for_each(|(c, dxc)| {
        for tap in 0..taps {
            let row = &cols[(c * taps + tap) * rows..(c * taps + tap + 1) * rows];
            g.runs(tap, start, rows, |j, _, line| {
                let Some(line) = line else { return };
                for q in line.valid.clone() {
                    dxc[line.index(q)] += row[j + q];
                }
            });
        }
    });
}

/// A strided matrix over a slice: element (i, j) is `data[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
struct Matrix<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl Matrix<'_> {
    /// Whether every element lies inside `data`.
    fn fits(&self) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst ← [dst +] lhs · rhs`, where `dst` is row-major with row stride
/// `dst_rs` (the `gemm` crate's kernels, in parallel on rayon's pool).
///
/// # Panics
/// When the shapes do not agree or an operand does not fit its slice (a
/// bug in this module: every caller derives them from one [`Geometry`]).
#[allow(unsafe_code)]
fn matmul(dst: &mut [f32], dst_rs: usize, lhs: Matrix<'_>, rhs: Matrix<'_>, accumulate: bool) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert!(
        rhs.rows == k && lhs.fits() && rhs.fits(),
        "matmul: operands {lhs:?} {rhs:?}"
    );
    let out = Matrix {
        data: dst,
        rows: m,
        cols: n,
        rs: dst_rs,
        cs: 1,
    };
    assert!(out.fits(), "matmul: destination");
    if m == 0 || n == 0 {
        return;
    }
    let isize = |v: usize| v as isize;
    // SAFETY: the asserts above keep every element gemm reads (lhs, rhs)
    // and writes (dst: m × n at row stride dst_rs, unit column stride)
    // inside its slice; dst is borrowed mutably, so it aliases neither
    // operand; the element type is f32, which gemm supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            isize(dst_rs),
            accumulate,
            lhs.data.as_ptr(),
            isize(lhs.cs),
            isize(lhs.rs),
            rhs.data.as_ptr(),
            isize(rhs.cs),
            isize(rhs.rs),
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// The convolution of `x` (`[N, C_in, D, H, W]`) with `w`
/// (`[C_out, C_in, k…]`) plus `bias` (`[C_out]`): `[N, C_out, …]`.
pub(crate) fn forward(g: &Geometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (si, so, kk) = (g.voxels_in(), g.voxels_out(), g.cols());
    let n = x.len() / (g.ci * si).max(1);
    let mut y = vec![0f32; n * g.co * so];
    let weights = Matrix {
        data: w,
        rows: g.co,
        cols: kk,
        rs: kk,
        cs: 1,
    };
    y.par_chunks_mut((g.co * so).max(1))
        .zip(x.par_chunks((g.ci * si).max(1)))
        .for_each(|(yb, xb)| {
            if let Some(bias) = bias {
                for (yc, &b) in yb.chunks_mut(so.max(1)).zip(bias) {
                    yc.fill(b);
                }
            }
            let mut cols = vec![0f32; kk * BLOCK.min(so)];
            for (start, rows) in g.blocks() {
                im2col(g, xb, start, rows, &mut cols);
                let patches = Matrix {
                    data: &cols,
                    rows: kk,
                    cols: rows,
                    rs: rows,
                    cs: 1,
                };
                matmul(&mut yb[start..], so, weights, patches, true);
            }
        });
    y
}

/// ∂x of the convolution: `Wᵀ · ∂Y` per block, scattered back by
/// [`col2im`]. `grad` is `[N, C_out, …]`; the result `[N, C_in, D, H, W]`.
pub(crate) fn input_grad(g: &Geometry, w: &[f32], grad: &[f32]) -> Vec<f32> {
    let (si, so, kk) = (g.voxels_in(), g.voxels_out(), g.cols());
    let n = grad.len() / (g.co * so).max(1);
    let mut dx = vec![0f32; n * g.ci * si];
    let weights_t = Matrix {
        data: w,
        rows: kk,
        cols: g.co,
        rs: 1,
        cs: kk,
    };
    dx.par_chunks_mut((g.ci * si).max(1))
        .zip(grad.par_chunks((g.co * so).max(1)))
        .for_each(|(dxb, gb)| {
            let mut cols = vec![0f32; kk * BLOCK.min(so)];
            for (start, rows) in g.blocks() {
                let block = Matrix {
                    data: &gb[start..],
                    rows: g.co,
                    cols: rows,
                    rs: so,
                    cs: 1,
                };
                matmul(&mut cols, rows, weights_t, block, false);
                col2im(g, &cols, start, rows, dxb);
            }
        });
    dx
}

/// ∂w of the convolution: the sum over samples and blocks of
/// `∂Y[:, block] · Pᵀ`, computed in parallel and added in order, so the
/// result does not depend on the threads. `[C_out, C_in, k…]`.
pub(crate) fn weight_grad(g: &Geometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    let (si, so, kk) = (g.voxels_in(), g.voxels_out(), g.cols());
    let n = x.len() / (g.ci * si).max(1);
    let jobs: Vec<(usize, usize, usize)> = (0..n)
        .flat_map(|b| g.blocks().map(move |(start, rows)| (b, start, rows)))
        .collect();
    let partial: Vec<Vec<f32>> = jobs
        .into_par_iter()
        .map_init(
            || vec![0f32; kk * BLOCK.min(so)],
            |cols, (b, start, rows)| {
                im2col(g, &x[b * g.ci * si..(b + 1) * g.ci * si], start, rows, cols);
                let block = Matrix {
                    data: &grad[b * g.co * so + start..],
                    rows: g.co,
                    cols: rows,
                    rs: so,
                    cs: 1,
                };
                let patches_t = Matrix {
                    data: cols,
                    rows,
                    cols: kk,
                    rs: 1,
                    cs: rows,
                };
                let mut dw = vec![0f32; g.co * kk];
                matmul(&mut dw, kk, block, patches_t, false);
                dw
            },
        )
        .collect();
    let mut sum = vec![0f32; g.co * kk];
    for p in &partial {
        for (acc, v) in sum.iter_mut().zip(p) {
            *acc += v;
        }
    }
    sum
}

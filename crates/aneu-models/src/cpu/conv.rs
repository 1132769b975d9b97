//! The convolution's three passes on plain `f32` slices in NCDHW order.
//!
//! The forward (dilation 1, every stride) takes the direct path
//! ([`Direct`]): no patch matrix; a register-tiled kernel reads a padded,
//! channels-last copy of the input in place. With stride 1 (the U-Nets'
//! 3×3×3 layers, most of their time) the gradients take it too: the input
//! gradient is the same kernel, the weight gradient matrix products on the
//! `gemm` crate that read that copy in place. The gradients of other
//! strides take im2col into blocks of output voxels, one matrix product
//! per block, and col2im (its adjoint) for the input gradient.
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
use tile::{Isa, MAX_ROWS, Tiled};

mod tile;

/// Output voxels per block: bounds im2col's patch matrix to `C_in·k³ ×
/// 4096` values (14 MB for 32 channels and a 3×3×3 kernel); the direct
/// path's blocks are about as long (1024 to 16384 timed the same).
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
    /// The transpose: the same elements, rows and columns exchanged.
    fn transposed(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    fn fits(&self) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst ← [dst +] lhs · rhs`, where `dst` is row-major with row stride
/// `dst_rs` (the `gemm` crate's kernels; in parallel on rayon's pool when
/// `parallel`, else on the calling thread).
///
/// # Panics
/// When the shapes do not agree or an operand does not fit its slice (a
/// bug in this module: every caller derives them from one [`Geometry`]).
#[allow(unsafe_code)]
fn matmul(dst: &mut [f32], dst_rs: usize, lhs: Matrix<'_>, rhs: Matrix<'_>, accumulate: bool, parallel: bool) {
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
            if parallel {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            },
        );
    }
}

/// The convolution of `x` (`[N, C_in, D, H, W]`) with `w`
/// (`[C_out, C_in, k…]`) plus `bias` (`[C_out]`): `[N, C_out, …]`.
/// Dilation 1 takes the direct path ([`Direct`]), the rest im2col.
pub(crate) fn forward(g: &Geometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    match Direct::new(g) {
        Some(direct) => direct.forward(x, w, bias),
        None => forward_im2col(g, x, w, bias),
    }
}

/// [`forward`] through im2col.
fn forward_im2col(g: &Geometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
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
                matmul(&mut yb[start..], so, weights, patches, true, true);
            }
        });
    y
}

/// ∂x of the convolution. `grad` is `[N, C_out, …]`; the result
/// `[N, C_in, D, H, W]`. With stride 1 it is the direct forward
/// convolution of the gradient with the flipped, channel-swapped weights
/// ([`Direct::adjoint`]); otherwise `Wᵀ · ∂Y` per block, scattered back by
/// [`col2im`].
pub(crate) fn input_grad(g: &Geometry, w: &[f32], grad: &[f32]) -> Vec<f32> {
    match Direct::new(g).and_then(|d| d.adjoint()) {
        Some(adjoint) => adjoint.forward(grad, &flip_weights(g, w), None),
        None => input_grad_col2im(g, w, grad),
    }
}

/// [`input_grad`] through col2im.
fn input_grad_col2im(g: &Geometry, w: &[f32], grad: &[f32]) -> Vec<f32> {
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
                matmul(&mut cols, rows, weights_t, block, false, true);
                col2im(g, &cols, start, rows, dxb);
            }
        });
    dx
}

/// ∂w of the convolution, `[C_out, C_in, k…]`: with stride 1 by the
/// direct path ([`Direct::weight_grad`]), otherwise the sum over samples
/// and blocks of `∂Y[:, block] · Pᵀ`. Either way the partial sums are
/// computed in parallel and added in order, so the result does not depend
/// on the threads.
pub(crate) fn weight_grad(g: &Geometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    match Direct::new(g).filter(Direct::unit_stride) {
        Some(direct) => direct.weight_grad(x, grad),
        None => weight_grad_im2col(g, x, grad),
    }
}

/// [`weight_grad`] through im2col.
fn weight_grad_im2col(g: &Geometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
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
                matmul(&mut dw, kk, block, patches_t, false, true);
                dw
            },
        )
        .collect();
    sum_in_order(&partial, g.co * kk)
}

/// Adds the partial results in order (so that the sum does not depend on
/// which thread computed which part).
fn sum_in_order(partial: &[Vec<f32>], len: usize) -> Vec<f32> {
    let mut sum = vec![0f32; len];
    for p in partial {
        for (acc, v) in sum.iter_mut().zip(p) {
            *acc += v;
        }
    }
    sum
}

/// `w` (`[C_out, C_in, a, b, c]`) flipped in space with its channels
/// exchanged: `[C_in, C_out, a, b, c]`, the weights of the stride-1
/// convolution whose forward is the input gradient.
fn flip_weights(g: &Geometry, w: &[f32]) -> Vec<f32> {
    let taps = g.taps();
    let mut out = vec![0f32; w.len()];
    for co in 0..g.co {
        for ci in 0..g.ci {
            let from = &w[(co * g.ci + ci) * taps..(co * g.ci + ci + 1) * taps];
            let to = &mut out[(ci * g.co + co) * taps..(ci * g.co + co + 1) * taps];
            for (t, v) in to.iter_mut().zip(from.iter().rev()) {
                *t = *v;
            }
        }
    }
    out
}

/// How [`Direct`]'s forward splits the work of one sample.
struct Schedule {
    /// Jobs of about [`BLOCK`] output voxels, each a list of the kernel's
    /// calls `(first position, rows)`.
    jobs: Vec<Vec<(usize, usize)>>,
    /// For each output line, in order: its job, and the row of the job's
    /// output that holds the line's first voxel.
    lines: Vec<(usize, usize)>,
}

/// A convolution of dilation 1 computed directly, without a patch matrix.
///
/// The input is copied once, zero-padded and channels-last, into `xp`
/// (`[Dp·Hp·Wp, C_in]`). Output voxel `(z, y, x)` reads, for tap
/// `(a, b, c)`, the position `(s_D·z + a, s_H·y + b, s_W·x + c)` of the
/// padded grid: the position of its tap `(0, 0, 0)` plus the fixed shift
/// `(a·Hp + b)·Wp + c`, and consecutive `x` read positions `s_W` apart.
/// The forward runs a register-tiled kernel ([`Tiled`]) over such runs of
/// positions.
///
/// With stride 1, output voxel `(z, y, x)` is given the index
/// `q = (z·Hp + y)·Wp + x`, its position on the padded grid, and the
/// kernel runs over blocks of consecutive `q` spanning several lines. The
/// `q` that are not output voxels (`y ≥ Oh` or `x ≥ Ow`: reads that wrap
/// into the next line) are computed and dropped; they cost
/// `Hp·Wp / (Oh·Ow)` (17 % at 24³ with padding 1). With a larger stride
/// the kernel runs over each output line alone.
///
/// The gradients have a direct path with stride 1 only: the input
/// gradient is the forward of [`Self::adjoint`]; for the weight gradient,
/// per `(a, b)` the `k_W · C_in` values that the taps `c = 0…k_W-1` read
/// at `q` are consecutive in `xp` (from `(q + (a·Hp + b)·Wp)·C_in` on), so
/// over a range of `q` they form a matrix of unit row stride and column
/// stride `C_in` that `gemm` reads in place, and a block's gradient is
/// `k_D·k_H` such products.
#[derive(Clone, Copy, Debug)]
struct Direct {
    g: Geometry,
    /// The padded input size (Dp, Hp, Wp).
    padded: [usize; 3],
}

impl Direct {
    /// The direct path of `g`: `None` unless the dilation is 1.
    fn new(g: &Geometry) -> Option<Self> {
        if g.dilation != [1; 3] {
            return None;
        }
        let padded = [0, 1, 2].map(|a| g.input[a] + 2 * g.padding[a]);
        Some(Self { g: *g, padded })
    }

    /// Whether every stride is 1.
    fn unit_stride(&self) -> bool {
        self.g.stride == [1; 3]
    }

    /// The stride-1 convolution whose forward is this one's input
    /// gradient, when this one has stride 1: it convolves the output
    /// gradient, padded by `k - 1 - p`, with [`flip_weights`]. `None` for
    /// a larger stride or when a padding exceeds `k - 1`.
    fn adjoint(&self) -> Option<Self> {
        let g = &self.g;
        if !self.unit_stride() {
            return None;
        }
        let mut padding = [0; 3];
        for (p, (k, q)) in padding.iter_mut().zip(g.kernel.iter().zip(g.padding)) {
            *p = (k - 1).checked_sub(q)?;
        }
        Self::new(&Geometry {
            ci: g.co,
            co: g.ci,
            input: g.output,
            kernel: g.kernel,
            output: g.input,
            stride: [1; 3],
            padding,
            dilation: [1; 3],
        })
    }

    /// The number of `q` from the first output voxel to the last.
    fn span(&self) -> usize {
        let [_, hp, wp] = self.padded;
        let [od, oh, ow] = self.g.output;
        ((od - 1) * hp + oh - 1) * wp + ow
    }

    /// The shift of `q` for the taps `(a, b, ·)`.
    fn shift(&self, a: usize, b: usize) -> usize {
        let [_, hp, wp] = self.padded;
        (a * hp + b) * wp
    }

    /// Blocks of `q`: (first, count), each starting on a line of the
    /// padded grid, so that a line of output voxels lies in one block.
    fn blocks(&self) -> Vec<(usize, usize)> {
        let (wp, span) = (self.padded[2], self.span());
        let step = (BLOCK / wp).max(1) * wp;
        (0..span).step_by(step).map(|q| (q, step.min(span - q))).collect()
    }

    /// Calls `f(q, v)` for the first `q` and the first output index `v`
    /// of every line of output voxels (each `Ow` long).
    fn lines(&self, mut f: impl FnMut(usize, usize)) {
        let [_, hp, wp] = self.padded;
        let [od, oh, ow] = self.g.output;
        for z in 0..od {
            for y in 0..oh {
                f((z * hp + y) * wp, (z * oh + y) * ow);
            }
        }
    }

    /// One sample (`[C_in, D, H, W]`), zero-padded and channels-last:
    /// `[Dp·Hp·Wp + MAX_ROWS·s_W, C_in]` (the extra zero positions are
    /// read by the last tile of a run rounded up to the kernel's rows).
    fn pad_channels_last(&self, x: &[f32]) -> Vec<f32> {
        let g = &self.g;
        let [dp, hp, wp] = self.padded;
        let [d, h, w] = g.input;
        let [pd, ph, pw] = g.padding;
        let (ci, plane) = (g.ci, h * w);
        let mut xp = vec![0f32; (dp * hp * wp + MAX_ROWS * g.stride[2]) * ci];
        // in parallel over the input's z planes; within a line, each
        // channel's row is spread over a few kB of `xp`
        xp.par_chunks_mut(hp * wp * ci)
            .skip(pd)
            .take(d)
            .enumerate()
            .for_each(|(z, xz)| {
                for y in 0..h {
                    let line = &mut xz[((y + ph) * wp + pw) * ci..][..w * ci];
                    for c in 0..ci {
                        let row = &x[c * d * plane + z * plane + y * w..][..w];
                        for (v, &r) in line[c..].iter_mut().step_by(ci).zip(row) {
                            *v = r;
                        }
                    }
                }
            });
        xp
    }

    /// For each weight, its index in `[C_out, C_in, a, b, c]` and in the
    /// packed order `[a, b, C_out, c, C_in]`: for each `(a, b)`, a
    /// `[C_out, k_W·C_in]` matrix whose columns follow the order of the
    /// input values in `xp`.
    fn packing(&self) -> impl Iterator<Item = (usize, usize)> + use<> {
        let g = self.g;
        let [kd, kh, kw] = g.kernel;
        (0..g.co * g.ci * kd * kh * kw).map(move |natural| {
            let (c, b, a) = (natural % kw, (natural / kw) % kh, (natural / (kw * kh)) % kd);
            let (ci, co) = ((natural / (kw * kh * kd)) % g.ci, natural / (kw * kh * kd * g.ci));
            (natural, (((a * kh + b) * g.co + co) * kw + c) * g.ci + ci)
        })
    }

    /// The weights in their natural order, from the packed order of
    /// [`Self::packing`] (the weight gradient's).
    fn unpack_weights(&self, packed: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; packed.len()];
        for (natural, at) in self.packing() {
            out[natural] = packed[at];
        }
        out
    }

    /// For taps `(a, b, ·)`, the `[k_W·C_in, count]` matrix of the input
    /// values that the block of `count` voxels from `q` reads, in `xp`.
    fn taps_of<'a>(&self, xp: &'a [f32], q: usize, count: usize, a: usize, b: usize) -> Matrix<'a> {
        let ci = self.g.ci;
        Matrix {
            data: &xp[(q + self.shift(a, b)) * ci..],
            rows: self.g.kernel[2] * ci,
            cols: count,
            rs: 1,
            cs: ci,
        }
    }

    /// The forward convolution; see [`forward`]. Each block of `q` is
    /// computed by the register-tiled kernel ([`Tiled`]) on the best
    /// instruction set of this CPU.
    fn forward(&self, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        self.forward_on(Isa::detect(), x, w, bias)
    }

    /// [`Self::forward`] on the instruction set `isa`.
    fn forward_on(&self, isa: Isa, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        let g = &self.g;
        let [_, hp, wp] = self.padded;
        let [kd, kh, kw] = g.kernel;
        let (si, so) = (g.voxels_in(), g.voxels_out());
        let n = x.len() / (g.ci * si).max(1);
        let mut y = vec![0f32; n * g.co * so];
        if so == 0 || g.co == 0 {
            return y;
        }
        let shifts = (0..kd * kh * kw)
            .map(|t| ((t / (kh * kw)) * hp + (t / kw) % kh) * wp + t % kw)
            .collect();
        let tiled = Tiled::new(isa, g.co, g.ci, shifts, w, bias);
        let co_pad = tiled.co_pad();
        let Schedule { jobs, lines } = self.schedule(tiled.row_multiple());
        let inputs: Vec<Vec<f32>> = x
            .par_chunks((g.ci * si).max(1))
            .map(|xb| self.pad_channels_last(xb))
            .collect();
        // each job's share of y: for every output line it computes, the
        // line of each channel, with the channel and the job's row of it
        let (ow, per_sample) = (g.output[2], jobs.len());
        let mut shares: Vec<Vec<(usize, usize, &mut [f32])>> = (0..n * per_sample).map(|_| Vec::new()).collect();
        for (sc, yc) in y.chunks_mut(so).enumerate() {
            let (s, c) = (sc / g.co, sc % g.co);
            for (yl, &(job, at)) in yc.chunks_mut(ow).zip(&lines) {
                shares[s * per_sample + job].push((c, at, yl));
            }
        }
        shares.into_par_iter().enumerate().for_each(|(j, share)| {
            let (s, calls) = (j / per_sample, &jobs[j % per_sample]);
            // the job's output, channels last: [rows of its calls, co_pad]
            let mut out = vec![0f32; calls.iter().map(|c| c.1).sum::<usize>() * co_pad];
            let mut at = 0;
            for &(q, rows) in calls {
                tiled.block(&inputs[s], q, rows, g.stride[2], &mut out[at * co_pad..]);
                at += rows;
            }
            for (c, at, yl) in share {
                for (i, yv) in yl.iter_mut().enumerate() {
                    *yv = out[(at + i) * co_pad + c];
                }
            }
        });
        y
    }

    /// The forward's work for one sample, with the kernel's rows a
    /// multiple of `multiple`.
    fn schedule(&self, multiple: usize) -> Schedule {
        let g = &self.g;
        let [_, hp, wp] = self.padded;
        let [od, oh, ow] = g.output;
        let mut lines = Vec::with_capacity(od * oh);
        if self.unit_stride() {
            // blocks of consecutive q, each starting on a line
            let blocks = self.blocks();
            let step = blocks[0].1;
            self.lines(|q, _| lines.push((q / step, q % step)));
            let jobs = blocks
                .into_iter()
                .map(|(q, count)| vec![(q, count.div_ceil(multiple) * multiple)])
                .collect();
            return Schedule { jobs, lines };
        }
        // one call per output line, whole lines per job
        let [sd, sh, _] = g.stride;
        let rows = ow.div_ceil(multiple) * multiple;
        let per_job = (BLOCK / rows).max(1);
        let mut jobs: Vec<Vec<(usize, usize)>> = Vec::new();
        for z in 0..od {
            for y in 0..oh {
                if lines.len() % per_job == 0 {
                    jobs.push(Vec::with_capacity(per_job));
                }
                let job = jobs.len() - 1;
                lines.push((job, jobs[job].len() * rows));
                jobs[job].push(((sd * z * hp + sh * y) * wp, rows));
            }
        }
        Schedule { jobs, lines }
    }

    /// The weight gradient; see [`weight_grad`]. Per sample, the output
    /// gradient is laid on the `q` grid (zero where `q` is not an output
    /// voxel); per block and `(a, b)`, `∂W_ab += ∂Y[:, block] · Xᵀ_ab`.
    fn weight_grad(&self, x: &[f32], grad: &[f32]) -> Vec<f32> {
        let g = &self.g;
        let [kd, kh, kw] = g.kernel;
        let (si, so, span) = (g.voxels_in(), g.voxels_out(), self.span());
        let n = x.len() / (g.ci * si).max(1);
        let size = g.co * g.cols();
        if so == 0 || size == 0 {
            return vec![0f32; size];
        }
        let cols = kw * g.ci;
        let inputs: Vec<Vec<f32>> = x
            .par_chunks((g.ci * si).max(1))
            .map(|xb| self.pad_channels_last(xb))
            .collect();
        let grads: Vec<Vec<f32>> = grad
            .par_chunks((g.co * so).max(1))
            .map(|gb| {
                let mut on_q = vec![0f32; g.co * span];
                for (c, gc) in gb.chunks(so).enumerate() {
                    let row = &mut on_q[c * span..(c + 1) * span];
                    self.lines(|q, v| row[q..q + g.output[2]].copy_from_slice(&gc[v..v + g.output[2]]));
                }
                on_q
            })
            .collect();
        let blocks = self.blocks();
        let jobs: Vec<(usize, usize, usize)> = (0..n)
            .flat_map(|s| blocks.iter().map(move |&(q, count)| (s, q, count)))
            .collect();
        let partial: Vec<Vec<f32>> = jobs
            .par_iter()
            .map(|&(s, q, count)| {
                let mut dw = vec![0f32; size];
                let dy = Matrix {
                    data: &grads[s][q..],
                    rows: g.co,
                    cols: count,
                    rs: span,
                    cs: 1,
                };
                for a in 0..kd {
                    for b in 0..kh {
                        let taps = self.taps_of(&inputs[s], q, count, a, b).transposed();
                        let at = (a * kh + b) * g.co * cols;
                        matmul(&mut dw[at..], cols, dy, taps, false, false);
                    }
                }
                dw
            })
            .collect();
        self.unpack_weights(&sum_in_order(&partial, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * scale, "{what}: element {i}: {x} vs {y}");
        }
    }

    /// The direct path gives im2col's values for all three passes (the
    /// forward on this CPU's instruction set and on scalar code), on
    /// kernels that are not cubes, output channels that fill SIMD vectors
    /// partly, paddings from 0 to k - 1 and beyond, inputs smaller than
    /// the kernel along an axis, outputs of several blocks, and strides
    /// above 1 (forward only: their gradients stay on im2col).
    #[test]
    fn direct_path_matches_im2col() {
        // (batch, c_in, c_out, input, kernel, padding, stride)
        type Case = (usize, usize, usize, [usize; 3], [usize; 3], [usize; 3], [usize; 3]);
        let cases: [Case; 10] = [
            (2, 3, 4, [5, 6, 7], [3, 3, 3], [1, 1, 1], [1, 1, 1]),
            (1, 2, 3, [7, 5, 9], [3, 1, 2], [0, 1, 1], [1, 1, 1]),
            (3, 1, 2, [4, 4, 4], [1, 1, 1], [0, 0, 0], [1, 1, 1]),
            (1, 4, 2, [3, 8, 2], [3, 3, 3], [2, 1, 1], [1, 1, 1]),
            (2, 2, 2, [20, 19, 17], [3, 3, 3], [1, 1, 1], [1, 1, 1]),
            (1, 2, 3, [5, 6, 4], [2, 3, 3], [3, 0, 2], [1, 1, 1]),
            // output channels over several SIMD blocks, one of them partial
            (2, 5, 21, [6, 5, 7], [3, 3, 3], [1, 1, 1], [1, 1, 1]),
            (2, 3, 16, [9, 8, 11], [3, 3, 3], [1, 1, 1], [2, 2, 2]),
            (1, 2, 5, [7, 9, 30], [3, 2, 3], [1, 0, 2], [1, 3, 2]),
            (3, 4, 24, [4, 5, 6], [2, 2, 2], [0, 0, 0], [2, 2, 2]),
        ];
        for (n, ci, co, input, kernel, padding, stride) in cases {
            let options = ConvOptions::new(stride, padding, [1; 3], 1);
            let x_shape = [n, ci, input[0], input[1], input[2]];
            let w_shape = [co, ci, kernel[0], kernel[1], kernel[2]];
            let g = Geometry::new(x_shape, w_shape, &options).expect("a valid geometry");
            let direct = Direct::new(&g).expect("dilation 1 takes the direct path");
            let x = values(x_shape.iter().product(), 1);
            let w = values(w_shape.iter().product(), 2);
            let b = values(co, 3);
            let dy = values(n * co * g.voxels_out(), 4);
            let case = format!("{x_shape:?} {w_shape:?} {padding:?} {stride:?}");
            let reference = forward_im2col(&g, &x, &w, Some(&b));
            for isa in [Isa::detect(), Isa::Scalar] {
                close(
                    &direct.forward_on(isa, &x, &w, Some(&b)),
                    &reference,
                    &format!("forward {case} on {isa:?}"),
                );
            }
            if stride != [1; 3] {
                assert!(direct.adjoint().is_none(), "{case}");
                continue;
            }
            close(
                &direct.weight_grad(&x, &dy),
                &weight_grad_im2col(&g, &x, &dy),
                &format!("∂w {case}"),
            );
            let reference = input_grad_col2im(&g, &w, &dy);
            close(&input_grad(&g, &w, &dy), &reference, &format!("∂x {case}"));
            // a padding beyond k - 1 has no direct adjoint: col2im answers
            let beyond = (0..3).any(|a| padding[a] >= kernel[a]);
            assert_eq!(direct.adjoint().is_none(), beyond, "{case}");
        }
    }
}

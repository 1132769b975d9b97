//! The direct convolution's register-tiled kernel.
//!
//! A tile is `R` positions of the padded grid (consecutive, or the
//! stride apart) times one block of output channels (`NV` SIMD vectors). Its `R × NV` sums stay
//! in registers while the kernel runs over every tap and input channel:
//! per (tap, channel) it loads the block's weights once, broadcasts the
//! `R` input values and does `R · NV` fused multiply-adds. Nothing is
//! packed or copied per tap, and each output value is written once (as
//! oneDNN's direct convolutions do; `gemm` has no such kernel).
//!
//! The SIMD width is chosen at run time ([`Isa`]) among `pulp`'s
//! instruction sets (the crate that `gemm` is built on): AVX2 + FMA on
//! x86-64, NEON on aarch64, scalar elsewhere, all from one generic body.

use pulp::{Simd, WithSimd};

/// The instruction set the kernel runs on.
#[derive(Clone, Copy, Debug)]
pub(super) enum Isa {
    /// AVX2 and FMA (x86-64-v3).
    #[cfg(target_arch = "x86_64")]
    V3(pulp::x86::V3),
    /// What `pulp` finds on other architectures (NEON on aarch64).
    Detected(pulp::Arch),
    /// Plain scalar code, for the tests.
    #[cfg(test)]
    Scalar,
}

impl Isa {
    /// The best instruction set of this CPU.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(v3) = pulp::x86::V3::try_new() {
            return Self::V3(v3);
        }
        Self::Detected(pulp::Arch::new())
    }

    fn dispatch<Op: WithSimd>(self, op: Op) -> Op::Output {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::V3(simd) => Simd::vectorize(simd, op),
            Self::Detected(arch) => arch.dispatch(op),
            #[cfg(test)]
            Self::Scalar => Simd::vectorize(pulp::Scalar, op),
        }
    }
}

/// Positions per tile of two vectors of channels (12 sums in registers,
/// plus two weight vectors and a broadcast: 15 of AVX2's 16 registers).
const ROWS_WIDE: usize = 6;
/// Positions per tile of one vector of channels.
const ROWS_NARROW: usize = 12;
/// A bound on the positions a run gains when its rows are rounded up to
/// [`Tiled::row_multiple`] (the padded input holds this many more).
pub(super) const MAX_ROWS: usize = 12;

/// The weights and bias of one convolution laid out for the
/// kernel, and where each tap reads.
pub(super) struct Tiled {
    isa: Isa,
    /// Input channels.
    ci: usize,
    /// Output channels rounded up to the SIMD width.
    co_pad: usize,
    /// For each tap, the shift of `q` at which it reads.
    shifts: Vec<usize>,
    /// Per block of output channels (first channel, vectors), the weights
    /// `[tap][C_in][vectors · lanes]` (zero beyond `C_out`), in `weights`
    /// from the offset given.
    blocks: Vec<(usize, usize, usize)>,
    weights: Vec<f32>,
    /// The bias, zero-padded to `co_pad`.
    bias: Vec<f32>,
}

/// The SIMD width of `isa`, in `f32`.
fn lanes(isa: Isa) -> usize {
    struct Lanes;
    impl WithSimd for Lanes {
        type Output = usize;
        #[inline(always)]
        fn with_simd<S: Simd>(self, _: S) -> usize {
            S::F32_LANES
        }
    }
    isa.dispatch(Lanes)
}

impl Tiled {
    /// Lays out `w` (`[C_out, C_in, taps]`, taps in the order of `shifts`)
    /// and `bias` for `isa`.
    pub fn new(isa: Isa, co: usize, ci: usize, shifts: Vec<usize>, w: &[f32], bias: Option<&[f32]>) -> Self {
        let lanes = lanes(isa);
        let co_pad = co.div_ceil(lanes) * lanes;
        let taps = shifts.len();
        let mut blocks = Vec::new();
        let mut weights = Vec::with_capacity(co_pad * ci * taps);
        let mut first = 0;
        while first < co_pad {
            let vectors = if co_pad - first >= 2 * lanes { 2 } else { 1 };
            let width = vectors * lanes;
            blocks.push((first, vectors, weights.len()));
            for t in 0..taps {
                for c in 0..ci {
                    weights
                        .extend((first..first + width).map(|o| if o < co { w[(o * ci + c) * taps + t] } else { 0.0 }));
                }
            }
            first += width;
        }
        let mut padded = vec![0f32; co_pad];
        if let Some(bias) = bias {
            padded[..co].copy_from_slice(bias);
        }
        Self {
            isa,
            ci,
            co_pad,
            shifts,
            blocks,
            weights,
            bias: padded,
        }
    }

    /// Output channels as the kernel writes them (`C_out` rounded up).
    pub fn co_pad(&self) -> usize {
        self.co_pad
    }

    /// What the rows of a call of [`Self::block`] must be a multiple of
    /// (at most [`MAX_ROWS`]): the tiles of every block of channels then
    /// cover them without a remainder.
    pub fn row_multiple(&self) -> usize {
        if self.blocks.iter().any(|&(_, vectors, _)| vectors == 1) {
            ROWS_NARROW
        } else {
            ROWS_WIDE
        }
    }

    /// Computes `out` (`[rows, co_pad]`, channels last) for the positions
    /// `q + r · step` (`r < rows`) of the padded grid, reading `xp`
    /// (`[positions, C_in]`). `rows` is a multiple of
    /// [`Self::row_multiple`] and `xp` holds every position a tap reads:
    /// up to `q + (rows - 1) · step + max(shifts)`.
    pub fn block(&self, xp: &[f32], q: usize, rows: usize, step: usize, out: &mut [f32]) {
        self.isa.dispatch(Block {
            tiled: self,
            xp,
            q,
            rows,
            step,
            out,
        });
    }
}

/// One call of [`Tiled::block`], as `pulp` dispatches it.
struct Block<'a> {
    tiled: &'a Tiled,
    xp: &'a [f32],
    q: usize,
    rows: usize,
    step: usize,
    out: &'a mut [f32],
}

impl WithSimd for Block<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Block {
            tiled,
            xp,
            q,
            rows,
            step,
            out,
        } = self;
        let (ci, lanes) = (tiled.ci, S::F32_LANES);
        let stride = tiled.co_pad / lanes;
        let out = S::as_mut_simd_f32s(&mut out[..rows * tiled.co_pad]).0;
        let bias = S::as_simd_f32s(&tiled.bias).0;
        for &(first, vectors, at) in &tiled.blocks {
            let size = tiled.shifts.len() * ci * vectors * lanes;
            let w = S::as_simd_f32s(&tiled.weights[at..at + size]).0;
            let (channel, bias) = (first / lanes, &bias[first / lanes..]);
            if vectors == 2 {
                for p in (0..rows).step_by(ROWS_WIDE) {
                    let x = &xp[(q + p * step) * ci..];
                    tile::<S, ROWS_WIDE, 2>(simd, tiled, x, step, w, bias, &mut out[p * stride + channel..]);
                }
            } else {
                for p in (0..rows).step_by(ROWS_NARROW) {
                    let x = &xp[(q + p * step) * ci..];
                    tile::<S, ROWS_NARROW, 1>(simd, tiled, x, step, w, bias, &mut out[p * stride + channel..]);
                }
            }
        }
    }
}

/// One tile: `R` positions `step` apart from the start of `x`
/// (`[positions, C_in]`) times `NV` vectors of channels, with weights `w` (`[tap][C_in][NV]`)
/// and bias `bias` (from the block's first vector on); row `r` of the
/// result goes to `out[r · co_pad / lanes..][..NV]`.
#[inline(always)]
fn tile<S: Simd, const R: usize, const NV: usize>(
    simd: S,
    tiled: &Tiled,
    x: &[f32],
    step: usize,
    w: &[S::f32s],
    bias: &[S::f32s],
    out: &mut [S::f32s],
) {
    let (ci, stride) = (tiled.ci, tiled.co_pad / S::F32_LANES);
    let mut sums: [[S::f32s; NV]; R] = [core::array::from_fn(|j| bias[j]); R];
    for (&shift, wt) in tiled.shifts.iter().zip(w.chunks_exact(ci * NV)) {
        let xs = &x[shift * ci..];
        let rows: [&[f32]; R] = core::array::from_fn(|r| &xs[r * step * ci..][..ci]);
        for (c, wc) in wt.chunks_exact(NV).enumerate() {
            let wv: [S::f32s; NV] = core::array::from_fn(|j| wc[j]);
            for (sum, row) in sums.iter_mut().zip(&rows) {
                let v = simd.splat_f32s(row[c]);
                for (s, &wj) in sum.iter_mut().zip(&wv) {
                    *s = simd.mul_add_e_f32s(v, wj, *s);
                }
            }
        }
    }
    for (r, sum) in sums.iter().enumerate() {
        out[r * stride..][..NV].copy_from_slice(sum);
    }
}

//! Faster CPU kernels for Flex, the default backend, where Burn 0.21's
//! are slow (docs/benchmarks.md, "Where a training step's time goes on
//! Flex"):
//!
//! * [`conv3d`]: a convolution layer computed here, forward and both
//!   gradients. The forward (any stride) is direct: a register-tiled
//!   kernel keeps a tile of output positions × output channels in SIMD
//!   registers over every tap and input channel, reading a zero-padded,
//!   channels-last copy of the input in place (AVX2 + FMA or NEON, chosen
//!   at run time through `pulp`, the SIMD layer of the `gemm` crate). With
//!   stride 1 the input gradient is that forward on the output gradient
//!   with the flipped weights, and the weight gradient a few matrix
//!   products on `gemm`; other strides use im2col in blocks of 4096
//!   output voxels, one matrix product per block, and col2im for the input
//!   gradient. Flex instead copies the input channels-last and repacks
//!   the weights on one thread, and Burn's default gradients are a
//!   one-threaded transposed convolution and a convolution with batch and
//!   channels swapped.
//! * [`instance_norm`]: affine instance normalisation in two passes, with
//!   its analytic backward (Burn composes seven passes forward and about
//!   fifteen backward).
//!
//! The networks stay written in Burn, generic over the backend. On `Flex`
//! and on `Autodiff<Flex>` (the default inference and training backends)
//! these functions run the kernels, registering their backward in Burn's
//! autodiff graph; on every other backend (CUDA, wgpu, or Flex under
//! another checkpointing strategy) they run Burn's own module. The backend
//! is recognised by its type at run time, which spares every generic
//! function in the workspace an extra trait bound (Rust has no
//! specialisation).
//!
//! Each kernel is tested against Burn's op, forward and gradients, and a
//! U-Net trained with them follows the loss curve it has with Burn's ops
//! (`tests` below).

use std::any::{Any, TypeId};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex};
use burn::nn::PaddingConfig3d;
use burn::nn::conv::{Conv3d, ConvTranspose3d};
use burn::nn::norm::Normalization;
use burn::prelude::*;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{DType, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

mod conv;
use conv::Geometry;

/// Which kernels a backend gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `Flex`: forward kernels.
    Flex,
    /// `Autodiff<Flex>`: forward kernels with their backward.
    AutodiffFlex,
    /// Any other backend: Burn's own ops.
    Other,
}

fn kind<B: Backend>() -> Kind {
    let b = TypeId::of::<B>();
    if b == TypeId::of::<Flex>() {
        Kind::Flex
    } else if b == TypeId::of::<Autodiff<Flex, NoCheckpointing>>() {
        Kind::AutodiffFlex
    } else {
        Kind::Other
    }
}

/// Moves `value` out as a `T` when its type is `T`.
fn cast<F: 'static, T: 'static>(value: F) -> Option<T> {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
}

/// The primitive of a float tensor.
fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// A float tensor from its primitive.
fn tensor<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// Applies a normalisation layer: the fused [`instance_norm`] for an affine
/// instance norm on Flex, the layer's own `forward` otherwise.
pub fn normalize<B: Backend, const D: usize>(n: &Normalization<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    if let Normalization::Instance(inst) = n
        && let (Some(g), Some(b)) = (&inst.gamma, &inst.beta)
    {
        return match instance_norm(x, g.val(), b.val(), inst.epsilon) {
            Ok(y) => y,
            Err(x) => n.forward(x),
        };
    }
    n.forward(x)
}

/// Instance normalisation with affine parameters, fused: each (sample,
/// channel) row is normalised over its voxels with its mean and biased
/// variance, `(x − μ) / √(σ² + ε) · γ_c + β_c`, in two passes instead of
/// Burn's seven (and about fifteen backward). `x` is `[N, C, …]`.
///
/// # Errors
/// `x` itself, unchanged, when the backend is not `Flex` or
/// `Autodiff<Flex>` or the data are not `f32`: the caller then runs Burn's
/// module.
pub fn instance_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let k = kind::<B>();
    if k == Kind::Other || D < 3 || x.dtype() != DType::F32 {
        return Err(x);
    }
    let keep = x.clone();
    let out = match k {
        Kind::Flex => flex_instance_norm::<B>(primitive(x), primitive(gamma), primitive(beta), epsilon),
        Kind::AutodiffFlex => autodiff_instance_norm::<B>(primitive(x), primitive(gamma), primitive(beta), epsilon),
        Kind::Other => None,
    };
    out.map(tensor).ok_or(keep)
}

fn flex_instance_norm<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    eps: f64,
) -> Option<FloatTensor<B>> {
    let (x, g, b): (FlexTensor, FlexTensor, FlexTensor) = (cast(x)?, cast(gamma)?, cast(beta)?);
    let (y, _) = norm_forward(&x, &g, &b, eps);
    cast(y)
}

fn autodiff_instance_norm<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    eps: f64,
) -> Option<FloatTensor<B>> {
    type Ad = Autodiff<Flex>;
    let x: FloatTensor<Ad> = cast(x)?;
    let g: FloatTensor<Ad> = cast(gamma)?;
    let b: FloatTensor<Ad> = cast(beta)?;
    let (y, stats) = norm_forward(&x.primitive, &g.primitive, &b.primitive, eps);
    let out = match InstanceNormBackward
        .prepare::<NoCheckpointing>([x.node.clone(), g.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            NormState {
                x: x.primitive.clone(),
                gamma: g.primitive.clone(),
                stats,
            },
            y,
        ),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    cast(out)
}

/// Per row (sample × channel) of the input: its mean and 1/√(σ² + ε).
type RowStats = Vec<(f32, f32)>;

/// The shape `[N, C, L]` of an `[N, C, …]` tensor.
fn rows(t: &FlexTensor) -> (usize, usize, usize) {
    let s = t.layout().shape();
    let (n, c) = (s[0], s[1]);
    (n, c, s.num_elements() / (n * c).max(1))
}

fn flex_from(values: Vec<f32>, shape: burn::tensor::Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The fused forward: `y` and each row's statistics. Sums are taken in
/// `f64`, row by row, in order, so the result does not depend on the
/// number of threads.
fn norm_forward(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, eps: f64) -> (FlexTensor, RowStats) {
    let (_, c, l) = rows(x);
    let xc = FlexTensor::to_contiguous(x);
    let (gc, bc) = (FlexTensor::to_contiguous(gamma), FlexTensor::to_contiguous(beta));
    let (xs, gs, bs) = (xc.storage::<f32>(), gc.storage::<f32>(), bc.storage::<f32>());
    let mut y = vec![0f32; xs.len()];
    let stats: RowStats = y
        .par_chunks_mut(l.max(1))
        .zip(xs.par_chunks(l.max(1)))
        .enumerate()
        .map(|(r, (yr, xr))| {
            let mean = xr.iter().map(|&v| f64::from(v)).sum::<f64>() / l as f64;
            let var = xr.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / l as f64;
            let inv = 1.0 / (var + eps).sqrt();
            let ch = r % c;
            // centred first: no cancellation when the mean is large
            let (scale, shift) = (inv * f64::from(gs[ch]), f64::from(bs[ch]));
            for (o, &v) in yr.iter_mut().zip(xr) {
                *o = ((f64::from(v) - mean) * scale + shift) as f32;
            }
            (mean as f32, inv as f32)
        })
        .collect();
    (flex_from(y, x.layout().shape().clone()), stats)
}

/// What the backward needs: the input, γ and each row's statistics.
#[derive(Clone, Debug)]
struct NormState {
    x: FlexTensor,
    gamma: FlexTensor,
    stats: RowStats,
}

#[derive(Debug)]
struct InstanceNormBackward;

impl Backward<Flex, 3> for InstanceNormBackward {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pg, pb] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (dx, dgamma, dbeta) = norm_backward(&ops.state, &grad);
        if let Some(p) = px {
            grads.register::<Flex>(p.id, dx);
        }
        if let Some(p) = pg {
            grads.register::<Flex>(p.id, dgamma);
        }
        if let Some(p) = pb {
            grads.register::<Flex>(p.id, dbeta);
        }
    }
}

/// The analytic backward of [`norm_forward`]: with x̂ = (x − μ)·s and
/// g the output's gradient, ∂β_c = Σ g, ∂γ_c = Σ g·x̂ (over the rows of
/// channel c), and ∂x = s·γ_c·(g − mean(g) − x̂·mean(g·x̂)) per row.
fn norm_backward(st: &NormState, grad: &FlexTensor) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (_, c, l) = rows(&st.x);
    let xc = FlexTensor::to_contiguous(&st.x);
    let gc = FlexTensor::to_contiguous(grad);
    let gam = FlexTensor::to_contiguous(&st.gamma);
    let (xs, gs, gms) = (xc.storage::<f32>(), gc.storage::<f32>(), gam.storage::<f32>());
    let mut dx = vec![0f32; xs.len()];
    let sums: Vec<(f64, f64)> = dx
        .par_chunks_mut(l.max(1))
        .zip(xs.par_chunks(l.max(1)).zip(gs.par_chunks(l.max(1))))
        .enumerate()
        .map(|(r, (dr, (xr, gr)))| {
            let (mean, inv) = st.stats[r];
            let (mean, inv) = (f64::from(mean), f64::from(inv));
            let (mut sg, mut sgx) = (0f64, 0f64);
            for (&xv, &gv) in xr.iter().zip(gr) {
                let xh = (f64::from(xv) - mean) * inv;
                sg += f64::from(gv);
                sgx += f64::from(gv) * xh;
            }
            let gamma = f64::from(gms[r % c]);
            let (mg, mgx) = (sg / l as f64, sgx / l as f64);
            for ((o, &xv), &gv) in dr.iter_mut().zip(xr).zip(gr) {
                let xh = (f64::from(xv) - mean) * inv;
                *o = (inv * gamma * (f64::from(gv) - mg - xh * mgx)) as f32;
            }
            (sg, sgx)
        })
        .collect();
    let mut dgamma = vec![0f64; c];
    let mut dbeta = vec![0f64; c];
    for (r, (sg, sgx)) in sums.iter().enumerate() {
        dbeta[r % c] += sg;
        dgamma[r % c] += sgx;
    }
    let to_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<_>>();
    (
        flex_from(dx, st.x.layout().shape().clone()),
        flex_from(to_f32(dgamma), burn::tensor::Shape::new([c])),
        flex_from(to_f32(dbeta), burn::tensor::Shape::new([c])),
    )
}

/// A 3D convolution layer, computed on `Flex` and `Autodiff<Flex>` by
/// this module's kernels (direct for stride 1, im2col otherwise, see the
/// module's documentation), forward and both
/// gradients, instead of Flex's forward and Burn's default gradients (a
/// one-threaded transposed convolution, and a convolution with batch and
/// channels swapped). Any other backend, a layer without bias, grouped
/// convolutions or "same" padding run the layer's own `forward`.
///
/// ```
/// use aneu_models::burn::backend::{Autodiff, Flex};
/// use aneu_models::burn::nn::{PaddingConfig3d, conv::Conv3dConfig};
/// use aneu_models::burn::prelude::*;
///
/// type A = Autodiff<Flex>;
/// let device = Default::default();
/// let conv = Conv3dConfig::new([2, 4], [3, 3, 3])
///     .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
///     .init::<A>(&device);
/// let x = Tensor::<A, 5>::ones([1, 2, 6, 6, 6], &device).require_grad();
/// let y = aneu_models::cpu::conv3d(&conv, x.clone());
/// assert_eq!(y.dims(), [1, 4, 6, 6, 6]);
/// let grads = y.sum().backward();
/// // the same gradient as Burn's own op gives
/// let reference = conv.forward(x.clone()).sum().backward();
/// let (a, b) = (x.grad(&grads).unwrap(), x.grad(&reference).unwrap());
/// assert!(a.sub(b).abs().max().into_scalar() < 1e-4);
/// ```
pub fn conv3d<B: Backend>(conv: &Conv3d<B>, x: Tensor<B, 5>) -> Tensor<B, 5> {
    let padding = match conv.padding {
        PaddingConfig3d::Valid => Some([0; 3]),
        PaddingConfig3d::Explicit(d, h, w) => Some([d, h, w]),
        PaddingConfig3d::Same => None,
    };
    let k = kind::<B>();
    if k != Kind::Other
        && x.dtype() == DType::F32
        && let (Some(padding), Some(bias)) = (padding, &conv.bias)
    {
        let keep = x.clone();
        let options = ConvOptions::new(conv.stride, padding, conv.dilation, conv.groups);
        let (x, w, b) = (primitive(x), primitive(conv.weight.val()), primitive(bias.val()));
        let out = match k {
            Kind::Flex => flex_conv3d::<B>(x, w, b, &options),
            Kind::AutodiffFlex => autodiff_conv3d::<B>(x, w, b, &options),
            Kind::Other => None,
        };
        return out.map_or_else(|| conv.forward(keep), tensor);
    }
    conv.forward(x)
}

/// The shape of a 5-d tensor.
fn dims5(t: &FlexTensor) -> [usize; 5] {
    let s = t.layout().shape();
    [s[0], s[1], s[2], s[3], s[4]]
}

/// The forward convolution on Flex tensors, with its geometry; `None`
/// where [`Geometry::new`] declines.
fn conv_forward(
    x: &FlexTensor,
    w: &FlexTensor,
    b: &FlexTensor,
    options: &ConvOptions<3>,
) -> Option<(FlexTensor, Geometry)> {
    let g = Geometry::new(dims5(x), dims5(w), options)?;
    let (xc, wc, bc) = (x.to_contiguous(), w.to_contiguous(), b.to_contiguous());
    let y = conv::forward(&g, xc.storage::<f32>(), wc.storage::<f32>(), Some(bc.storage::<f32>()));
    let [od, oh, ow] = g.output;
    let shape = burn::tensor::Shape::new([dims5(x)[0], g.co, od, oh, ow]);
    Some((flex_from(y, shape), g))
}

fn flex_conv3d<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    options: &ConvOptions<3>,
) -> Option<FloatTensor<B>> {
    let (x, w, b): (FlexTensor, FlexTensor, FlexTensor) = (cast(x)?, cast(weight)?, cast(bias)?);
    cast(conv_forward(&x, &w, &b, options)?.0)
}

fn autodiff_conv3d<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    options: &ConvOptions<3>,
) -> Option<FloatTensor<B>> {
    type Ad = Autodiff<Flex>;
    let x: FloatTensor<Ad> = cast(x)?;
    let w: FloatTensor<Ad> = cast(weight)?;
    let b: FloatTensor<Ad> = cast(bias)?;
    let (y, geometry) = conv_forward(&x.primitive, &w.primitive, &b.primitive, options)?;
    cast(tracked(ConvBackward { transposed: false }, [&x, &w, &b], y, geometry))
}

/// `y`, computed from `x`, `w` and `b` by a convolution of `geometry`,
/// as a node of the autodiff graph whose backward is `op`.
fn tracked<Op: Backward<Flex, 3, State = ConvState>>(
    op: Op,
    [x, w, b]: [&FloatTensor<Autodiff<Flex>>; 3],
    y: FlexTensor,
    geometry: Geometry,
) -> FloatTensor<Autodiff<Flex>> {
    match op
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            ConvState {
                x: x.primitive.to_contiguous(),
                weight: w.primitive.to_contiguous(),
                geometry,
            },
            y,
        ),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// What the convolution's backward needs.
#[derive(Clone, Debug)]
struct ConvState {
    /// The input, contiguous.
    x: FlexTensor,
    /// The weights, contiguous.
    weight: FlexTensor,
    geometry: Geometry,
}

/// The backward of a convolution (`transposed: false`) or of a transposed
/// convolution (`true`, whose input is the convolution's output: its
/// gradients are the convolution's with the roles of input and output
/// exchanged).
#[derive(Debug)]
struct ConvBackward {
    transposed: bool,
}

impl Backward<Flex, 3> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pw, pb] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let ConvState { x, weight, geometry: g } = ops.state;
        let (gs, xs, ws) = (grad.storage::<f32>(), x.storage::<f32>(), weight.storage::<f32>());
        if let Some(p) = pb {
            grads.register::<Flex>(p.id, conv3d_bias_grad(&grad));
        }
        if let Some(p) = pw {
            let dw = if self.transposed {
                conv::weight_grad(&g, gs, xs)
            } else {
                conv::weight_grad(&g, xs, gs)
            };
            grads.register::<Flex>(p.id, flex_from(dw, weight.layout().shape().clone()));
        }
        if let Some(p) = px {
            let dx = if self.transposed {
                conv::forward(&g, gs, ws, None)
            } else {
                conv::input_grad(&g, ws, gs)
            };
            grads.register::<Flex>(p.id, flex_from(dx, x.layout().shape().clone()));
        }
    }
}

/// A 3D transposed convolution layer, computed on `Flex` and
/// `Autodiff<Flex>` by this module's convolution kernels: a transposed
/// convolution is the input gradient of the convolution whose weights it
/// holds (`[C_in, C_out, k…]` is that convolution's `[C_out, C_in, k…]`),
/// so its forward is [`conv3d`]'s col2im pass, its input gradient that
/// convolution's forward, and its weight gradient that convolution's
/// weight gradient with input and output exchanged. Flex's own runs the
/// batch on one thread and Burn's default gradients are generic. Any
/// other backend, a layer without bias or with groups runs the layer's own
/// `forward`.
///
/// ```
/// use aneu_models::burn::backend::{Autodiff, Flex};
/// use aneu_models::burn::nn::conv::ConvTranspose3dConfig;
/// use aneu_models::burn::prelude::*;
///
/// type A = Autodiff<Flex>;
/// let device = Default::default();
/// let up = ConvTranspose3dConfig::new([4, 2], [2, 2, 2]).with_stride([2, 2, 2]).init::<A>(&device);
/// let x = Tensor::<A, 5>::ones([1, 4, 3, 3, 3], &device).require_grad();
/// let y = aneu_models::cpu::conv_transpose3d(&up, x.clone());
/// assert_eq!(y.dims(), [1, 2, 6, 6, 6]);
/// let (a, b) = (y.sum().backward(), up.forward(x.clone()).sum().backward());
/// let diff = x.grad(&a).unwrap().sub(x.grad(&b).unwrap()).abs().max().into_scalar();
/// assert!(diff < 1e-4);
/// ```
pub fn conv_transpose3d<B: Backend>(conv: &ConvTranspose3d<B>, x: Tensor<B, 5>) -> Tensor<B, 5> {
    let k = kind::<B>();
    if k != Kind::Other
        && x.dtype() == DType::F32
        && conv.groups == 1
        && let Some(bias) = &conv.bias
    {
        let keep = x.clone();
        let t = Transposed {
            options: ConvOptions::new(conv.stride, conv.padding, conv.dilation, 1),
            padding_out: conv.padding_out,
        };
        let (x, w, b) = (primitive(x), primitive(conv.weight.val()), primitive(bias.val()));
        let out = match k {
            Kind::Flex => flex_conv_transpose3d::<B>(x, w, b, &t),
            Kind::AutodiffFlex => autodiff_conv_transpose3d::<B>(x, w, b, &t),
            Kind::Other => None,
        };
        return out.map_or_else(|| conv.forward(keep), tensor);
    }
    conv.forward(x)
}

/// The options of a transposed convolution, as those of the convolution
/// it transposes plus the extra output padding.
#[derive(Clone, Debug)]
struct Transposed {
    options: ConvOptions<3>,
    padding_out: [usize; 3],
}

impl Transposed {
    /// The geometry of the convolution that this transposes, for an input
    /// `x` (`[N, C_in, …]`) and weights `w` (`[C_in, C_out, k…]`): its input
    /// is this layer's output. `None` where it would not map back onto `x`.
    fn geometry(&self, x: [usize; 5], w: [usize; 5]) -> Option<Geometry> {
        let o = &self.options;
        let mut y = [x[0], w[1], 0, 0, 0];
        for a in 0..3 {
            let grown = (x[2 + a].checked_sub(1)? * o.stride[a] + o.dilation[a] * w[2 + a].checked_sub(1)?)
                .checked_add(self.padding_out[a] + 1)?;
            y[2 + a] = grown.checked_sub(2 * o.padding[a])?;
        }
        let g = Geometry::new(y, w, o)?;
        (g.output == [x[2], x[3], x[4]] && g.co == x[1]).then_some(g)
    }
}

/// The transposed convolution's forward on Flex tensors, with the geometry
/// of the convolution it transposes.
fn conv_transpose_forward(
    x: &FlexTensor,
    w: &FlexTensor,
    b: &FlexTensor,
    t: &Transposed,
) -> Option<(FlexTensor, Geometry)> {
    let g = t.geometry(dims5(x), dims5(w))?;
    let (xc, wc, bc) = (x.to_contiguous(), w.to_contiguous(), b.to_contiguous());
    let mut y = conv::input_grad(&g, wc.storage::<f32>(), xc.storage::<f32>());
    let voxels: usize = g.input.iter().product();
    for (n, yc) in y.chunks_mut(voxels.max(1)).enumerate() {
        let bias = bc.storage::<f32>()[n % g.ci];
        yc.iter_mut().for_each(|v| *v += bias);
    }
    let [d, h, wd] = g.input;
    Some((flex_from(y, burn::tensor::Shape::new([dims5(x)[0], g.ci, d, h, wd])), g))
}

fn flex_conv_transpose3d<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    t: &Transposed,
) -> Option<FloatTensor<B>> {
    let (x, w, b): (FlexTensor, FlexTensor, FlexTensor) = (cast(x)?, cast(weight)?, cast(bias)?);
    cast(conv_transpose_forward(&x, &w, &b, t)?.0)
}

fn autodiff_conv_transpose3d<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    t: &Transposed,
) -> Option<FloatTensor<B>> {
    type Ad = Autodiff<Flex>;
    let x: FloatTensor<Ad> = cast(x)?;
    let w: FloatTensor<Ad> = cast(weight)?;
    let b: FloatTensor<Ad> = cast(bias)?;
    let (y, geometry) = conv_transpose_forward(&x.primitive, &w.primitive, &b.primitive, t)?;
    cast(tracked(ConvBackward { transposed: true }, [&x, &w, &b], y, geometry))
}

/// ∂bias: the output gradient summed over the batch and the voxels, per
/// channel, in order.
fn conv3d_bias_grad(grad: &FlexTensor) -> FlexTensor {
    let [n, c, d, h, w] = dims5(grad);
    let s = d * h * w;
    let g = grad.storage::<f32>();
    let sums: Vec<f32> = (0..c)
        .into_par_iter()
        .map(|co| {
            (0..n)
                .map(|b| {
                    g[(b * c + co) * s..(b * c + co + 1) * s]
                        .iter()
                        .map(|&v| f64::from(v))
                        .sum::<f64>()
                })
                .sum::<f64>() as f32
        })
        .collect();
    flex_from(sums, burn::tensor::Shape::new([c]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
    use burn::module::Param;
    use burn::nn::{InstanceNorm, InstanceNormConfig};
    use burn::tensor::Distribution;

    type A = Autodiff<Flex>;

    fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default()
    }

    /// Largest difference relative to the reference's largest magnitude.
    fn max_rel(a: &[f32], reference: &[f32]) -> f32 {
        assert_eq!(a.len(), reference.len());
        let scale = reference.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        a.iter().zip(reference).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// Random values from the backend's generator, drawn under the
    /// process-wide lock, so that they never interleave with a seeded
    /// initialisation on another test thread.
    fn random<B: Backend, const D: usize>(shape: [usize; D], dist: Distribution, device: &B::Device) -> Tensor<B, D> {
        crate::with_backend_rng(|| Tensor::random(shape, dist, device))
    }

    /// An affine instance norm with random (not the initial 1 and 0) γ, β.
    fn random_norm<B: Backend>(c: usize, device: &B::Device) -> InstanceNorm<B> {
        let mut norm = InstanceNormConfig::new(c).with_affine(true).init::<B>(device);
        let random = |m: f64| random::<B, 1>([c], Distribution::Normal(m, 0.5), device).require_grad();
        norm.gamma = Some(Param::from_tensor(random(1.0)));
        norm.beta = Some(Param::from_tensor(random(0.0)));
        norm
    }

    /// A layer's output and the gradients of its input, weights and bias
    /// (`params`) under a fixed, uneven upstream gradient; `layer` applies
    /// the layer to its input.
    fn forward_and_grads(
        x: &Tensor<A, 5>,
        (weight, bias): (Tensor<A, 5>, Option<Tensor<A, 1>>),
        layer: impl Fn(Tensor<A, 5>) -> Tensor<A, 5>,
    ) -> [Vec<f32>; 4] {
        let xg = x.clone().detach().require_grad();
        let y = layer(xg.clone());
        let upstream: Vec<f32> = (0..y.shape().num_elements())
            .map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0)
            .collect();
        let upstream = Tensor::<A, 5>::from_data(TensorData::new(upstream, y.shape()), &y.device());
        let grads = (y.clone() * upstream).sum().backward();
        let bias = bias.unwrap_or_else(|| panic!("no bias"));
        let grad = |t: Option<Tensor<Flex, 5>>| values(t.unwrap_or_else(|| panic!("no gradient")));
        let grad1 = |t: Option<Tensor<Flex, 1>>| values(t.unwrap_or_else(|| panic!("no gradient")));
        [
            values(y),
            grad(xg.grad(&grads)),
            grad(weight.grad(&grads)),
            grad1(bias.grad(&grads)),
        ]
    }

    /// Output and gradients within 1e-4 of the reference's largest value.
    fn assert_match(case: impl std::fmt::Debug, fast: &[Vec<f32>; 4], reference: &[Vec<f32>; 4]) {
        for (name, (a, r)) in ["forward", "∂x", "∂w", "∂b"].iter().zip(fast.iter().zip(reference)) {
            let e = max_rel(a, r);
            assert!(e < 1e-4, "{name} {case:?}: relative error {e}");
        }
    }

    const SHAPES: [[usize; 5]; 5] = [
        [1, 1, 3, 5, 7],
        [2, 3, 4, 4, 4],
        [3, 8, 5, 3, 2],
        [1, 16, 9, 1, 4],
        [4, 2, 1, 1, 1],
    ];

    /// Forward and the three gradients against Burn's InstanceNorm, on odd
    /// shapes, batch 1 and several, 1 and several channels, a row of one
    /// voxel, and an input far from zero mean.
    #[test]
    fn instance_norm_matches_burn_forward_and_gradients() {
        let device = Default::default();
        for shape in SHAPES {
            let norm = random_norm::<A>(shape[1], &device);
            let x = random::<A, 5>(shape, Distribution::Normal(3.0, 2.0), &device);
            let upstream = random::<A, 5>(shape, Distribution::Normal(0.0, 1.0), &device);
            let run = |fast: bool| {
                let xg = x.clone().detach().require_grad();
                let (g, b) = (norm.gamma.as_ref().map(Param::val), norm.beta.as_ref().map(Param::val));
                let (Some(g), Some(b)) = (g, b) else {
                    panic!("affine norm without parameters")
                };
                let y = if fast {
                    instance_norm(xg.clone(), g.clone(), b.clone(), norm.epsilon)
                        .unwrap_or_else(|_| panic!("the fused kernel did not run on Autodiff<Flex>"))
                } else {
                    norm.forward(xg.clone())
                };
                let grads = (y.clone() * upstream.clone()).sum().backward();
                let grad = |t: Option<Tensor<Flex, 5>>| values(t.unwrap_or_else(|| panic!("no gradient")));
                let grad1 = |t: Option<Tensor<Flex, 1>>| values(t.unwrap_or_else(|| panic!("no gradient")));
                [
                    values(y),
                    grad(xg.grad(&grads)),
                    grad1(g.grad(&grads)),
                    grad1(b.grad(&grads)),
                ]
            };
            let fast = run(true);
            let reference = run(false);
            for (name, (a, r)) in ["forward", "∂x", "∂γ", "∂β"].iter().zip(fast.iter().zip(&reference)) {
                let e = max_rel(a, r);
                assert!(e < 1e-4, "{name} {shape:?}: relative error {e}");
            }
        }
    }

    /// Inference on Flex gives Burn's values too.
    #[test]
    fn instance_norm_on_flex_matches_burn() {
        let device = Default::default();
        for shape in SHAPES {
            let norm = random_norm::<Flex>(shape[1], &device);
            let x = random::<Flex, 5>(shape, Distribution::Normal(-2.0, 0.7), &device);
            let fast = normalize(&Normalization::Instance(norm.clone()), x.clone());
            let e = max_rel(&values(fast), &values(norm.forward(x)));
            assert!(e < 1e-4, "{shape:?}: relative error {e}");
        }
    }

    /// Another backend (here Flex under another checkpointing strategy) gets
    /// its input back, untouched, and `normalize` runs Burn's module.
    #[test]
    fn other_backends_get_their_input_back() {
        type Other = Autodiff<Flex, BalancedCheckpointing>;
        let device = Default::default();
        let norm = random_norm::<Other>(3, &device);
        let x = random::<Other, 5>([2, 3, 2, 2, 2], Distribution::Default, &device);
        let (Some(g), Some(b)) = (norm.gamma.as_ref().map(Param::val), norm.beta.as_ref().map(Param::val)) else {
            panic!("affine norm without parameters")
        };
        let back = instance_norm(x.clone(), g, b, norm.epsilon)
            .err()
            .unwrap_or_else(|| panic!("a kernel ran"));
        assert_eq!(values(back), values(x.clone()));
        let y = normalize(&Normalization::Instance(norm.clone()), x.clone());
        assert_eq!(values(y), values(norm.forward(x)));
    }

    /// A U-Net with instance norm trained 15 Adam steps on Autodiff<Flex>
    /// (the fused norm, the convolutions' gradients of this module) follows
    /// the loss curve of the same network, from the same weights, on Burn's
    /// own ops (Flex under another checkpointing strategy, which the
    /// dispatch leaves alone).
    #[test]
    fn a_unet_trains_as_with_burns_ops() {
        use crate::{ModelConfig, PatchModel, UNet3dConfig};
        use burn::optim::{AdamConfig, GradientsParams, Optimizer};
        use burn::tensor::backend::AutodiffBackend;

        fn curve<B: AutodiffBackend>() -> Vec<f32> {
            let device = Default::default();
            let cfg = UNet3dConfig::new()
                .with_depth(3)
                .with_base_filters(4)
                .with_max_filters(16)
                .with_head_hidden(8);
            let mut model = ModelConfig::UNet3d(cfg)
                .init_seeded::<B>(7, &device)
                .unwrap_or_else(|e| panic!("{e}"));
            let shape = [3, 1, 8, 8, 8];
            let n: usize = shape.iter().product();
            let x: Vec<f32> = (0..n)
                .map(|i| (i as f32 * 0.37).sin() + 0.3 * (i as f32 * 0.11).cos())
                .collect();
            let x = Tensor::<B, 5>::from_data(TensorData::new(x, shape), &device);
            let target = Tensor::<B, 2>::from_data(TensorData::new(vec![1f32, 0.0, 1.0], [3, 1]), &device);
            let mut optim = AdamConfig::new().init();
            (0..15)
                .map(|_| {
                    let out = model.forward_patches(x.clone());
                    let mut loss = (out.logit - target.clone()).powi_scalar(2).mean();
                    if let Some(d) = out.dense {
                        loss = loss + d.powi_scalar(2).mean() * 0.1;
                    }
                    let value = values(loss.clone())[0];
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    model = optim.step(3e-3, model.clone(), grads);
                    value
                })
                .collect()
        }
        let fused = curve::<A>();
        let reference = curve::<Autodiff<Flex, BalancedCheckpointing>>();
        for (step, (a, r)) in fused.iter().zip(&reference).enumerate() {
            assert!(
                (a - r).abs() <= 1e-4 * r.abs().max(1e-3),
                "step {step}: {a} vs {r}\n{fused:?}\n{reference:?}"
            );
        }
        // and the network did learn: the curve is not flat
        assert!(fused[14] < 0.9 * fused[0], "{fused:?}");
    }

    /// The convolution's forward and three gradients against Burn's, on
    /// random shapes: odd sizes, kernels 1, 2 and 3, strides 1 and 2,
    /// paddings 0 to 2, dilation 2, an input smaller than the kernel, one
    /// and several channels, batch 1 and several, and outputs of more than
    /// one block of voxels (block edges inside a row).
    #[test]
    fn conv3d_gradients_match_burn() {
        use burn::nn::conv::Conv3dConfig;
        let device = Default::default();
        type Case = (usize, usize, usize, [usize; 3], usize, usize, usize, usize);
        let cases: [Case; 12] = [
            // (batch, c_in, c_out, input size, kernel, stride, padding, dilation)
            (1, 1, 1, [5, 6, 7], 3, 1, 1, 1),
            (2, 3, 4, [7, 5, 6], 3, 1, 1, 1),
            (3, 2, 5, [6, 6, 6], 3, 2, 1, 1),
            (2, 4, 3, [7, 9, 5], 3, 2, 1, 1),
            (1, 5, 2, [4, 5, 3], 1, 1, 0, 1),
            (2, 3, 3, [6, 4, 8], 2, 2, 0, 1),
            (2, 2, 3, [5, 5, 5], 3, 1, 2, 1),
            (1, 3, 2, [6, 7, 5], 3, 1, 0, 1),
            (2, 1, 2, [2, 3, 1], 3, 1, 1, 1),
            (1, 2, 3, [7, 8, 9], 3, 1, 2, 2),
            (1, 2, 3, [17, 16, 18], 3, 1, 1, 1),
            (2, 2, 2, [40, 40, 23], 3, 2, 1, 1),
        ];
        for (n, ci, co, [d, h, w], k, stride, pad, dil) in cases {
            let options = ConvOptions::new([stride; 3], [pad; 3], [dil; 3], 1);
            // the kernels run (they are not a fallback to Burn's op)
            assert!(Geometry::new([n, ci, d, h, w], [co, ci, k, k, k], &options).is_some());
            let conv = crate::with_backend_rng(|| {
                let conv = Conv3dConfig::new([ci, co], [k; 3])
                    .with_stride([stride; 3])
                    .with_padding(PaddingConfig3d::Explicit(pad, pad, pad))
                    .with_dilation([dil; 3])
                    .init::<A>(&device);
                // the parameters are drawn lazily: draw them under the lock
                let _ = (conv.weight.val(), conv.bias.as_ref().map(Param::val));
                conv
            });
            let x = random::<A, 5>([n, ci, d, h, w], Distribution::Normal(0.5, 1.0), &device);
            let params = || (conv.weight.val(), conv.bias.as_ref().map(Param::val));
            let fast = forward_and_grads(&x, params(), |x| conv3d(&conv, x));
            let reference = forward_and_grads(&x, params(), |x| conv.forward(x));
            assert_match((n, ci, co, [d, h, w], k, stride, pad, dil), &fast, &reference);
        }
    }

    /// Inference on Flex: the forward kernel gives Burn's values, on a
    /// stride-1 and a stride-2 layer of several blocks of voxels.
    #[test]
    fn conv3d_on_flex_matches_burn() {
        use burn::nn::conv::Conv3dConfig;
        let device = Default::default();
        for (stride, size) in [(1, [17, 16, 18]), (2, [19, 24, 40])] {
            let conv = crate::with_backend_rng(|| {
                let conv = Conv3dConfig::new([3, 5], [3; 3])
                    .with_stride([stride; 3])
                    .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
                    .init::<Flex>(&device);
                let _ = (conv.weight.val(), conv.bias.as_ref().map(Param::val));
                conv
            });
            let x = random::<Flex, 5>(
                [2, 3, size[0], size[1], size[2]],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let e = max_rel(&values(conv3d(&conv, x.clone())), &values(conv.forward(x)));
            assert!(e < 1e-4, "stride {stride}: relative error {e}");
        }
    }

    /// The transposed convolution's forward and three gradients against
    /// Burn's: the U-Nets' 2×2×2 stride-2 up-convolution, a 3×3×3 one with
    /// padding and output padding, stride 1, odd sizes, batch 1 and several.
    #[test]
    fn conv_transpose3d_matches_burn() {
        use burn::nn::conv::ConvTranspose3dConfig;
        let device = Default::default();
        // (batch, c_in, c_out, input size, kernel, stride, padding, output padding)
        type Case = (usize, usize, usize, [usize; 3], usize, usize, usize, usize);
        let cases: [Case; 5] = [
            (2, 4, 2, [3, 4, 5], 2, 2, 0, 0),
            (1, 3, 5, [6, 6, 6], 2, 2, 0, 0),
            (3, 2, 3, [4, 3, 5], 3, 2, 1, 1),
            (1, 1, 2, [5, 4, 3], 3, 1, 1, 0),
            (2, 16, 8, [12, 12, 12], 2, 2, 0, 0),
        ];
        for (n, ci, co, [d, h, w], k, stride, pad, pad_out) in cases {
            let up = crate::with_backend_rng(|| {
                let up = ConvTranspose3dConfig::new([ci, co], [k; 3])
                    .with_stride([stride; 3])
                    .with_padding([pad; 3])
                    .with_padding_out([pad_out; 3])
                    .init::<A>(&device);
                let _ = (up.weight.val(), up.bias.as_ref().map(Param::val));
                up
            });
            let t = Transposed {
                options: ConvOptions::new([stride; 3], [pad; 3], [1; 3], 1),
                padding_out: [pad_out; 3],
            };
            assert!(t.geometry([n, ci, d, h, w], [ci, co, k, k, k]).is_some());
            let x = random::<A, 5>([n, ci, d, h, w], Distribution::Normal(0.2, 1.0), &device);
            let params = || (up.weight.val(), up.bias.as_ref().map(Param::val));
            let fast = forward_and_grads(&x, params(), |x| conv_transpose3d(&up, x));
            let reference = forward_and_grads(&x, params(), |x| up.forward(x));
            let case = (n, ci, co, [d, h, w], k, stride, pad, pad_out);
            assert_match(case, &fast, &reference);
            // and on Flex (inference)
            let up_flex = burn::module::AutodiffModule::valid(&up);
            let xf = x.clone().inner();
            let e = max_rel(
                &values(conv_transpose3d(&up_flex, xf.clone())),
                &values(up_flex.forward(xf)),
            );
            assert!(e < 1e-4, "Flex {case:?}: relative error {e}");
        }
    }
}

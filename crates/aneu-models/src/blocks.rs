//! Building blocks shared by the networks.

use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{
    BatchNormConfig, GroupNormConfig, Initializer, InstanceNormConfig, PaddingConfig3d,
    norm::{Normalization, NormalizationConfig},
};
use burn::prelude::*;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

/// The normalisation after each convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// Instance norm with affine parameters (nnU-Net's default).
    Instance,
    /// Batch norm.
    Batch,
    /// Group norm with this many groups (channels must divide).
    Group(usize),
    /// No normalisation.
    None,
}

impl NormKind {
    pub(crate) fn init<B: Backend>(self, channels: usize, device: &B::Device) -> Option<Normalization<B>> {
        let cfg: NormalizationConfig = match self {
            NormKind::Instance => InstanceNormConfig::new(channels).with_affine(true).into(),
            NormKind::Batch => BatchNormConfig::new(channels).into(),
            NormKind::Group(g) => GroupNormConfig::new(g.clamp(1, channels), channels).into(),
            NormKind::None => return None,
        };
        Some(cfg.init(device))
    }
}

/// The initialisation of a convolution followed by a ReLU.
///
/// With a normalisation after it, Burn's default (PyTorch's: Kaiming
/// uniform with gain 1/√3) is kept. Without one, a stack of such layers
/// shrinks the signal by about √6 per layer, and a ten-layer U-Net starts
/// with its output at the bias: some seeds then never leave ln 2. He
/// initialisation (Kaiming normal, gain √2 over the fan-in) keeps the
/// activations' variance from layer to layer (He et al., 2015).
pub(crate) fn relu_initializer(norm: NormKind) -> Initializer {
    match norm {
        NormKind::None => Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: false,
        },
        _ => Conv3dConfig::new([1, 1], [1, 1, 1]).initializer,
    }
}

/// A 3×3×3 convolution with padding 1 (stride 2 halves the size), followed
/// by `norm` (which chooses the initialisation, [`relu_initializer`]).
pub(crate) fn conv3x3<B: Backend>(
    cin: usize,
    cout: usize,
    stride: usize,
    norm: NormKind,
    device: &B::Device,
) -> Conv3d<B> {
    Conv3dConfig::new([cin, cout], [3, 3, 3])
        .with_stride([stride; 3])
        .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
        .with_initializer(relu_initializer(norm))
        .init(device)
}

pub(crate) fn conv1x1<B: Backend>(cin: usize, cout: usize, device: &B::Device) -> Conv3d<B> {
    Conv3dConfig::new([cin, cout], [1, 1, 1]).init(device)
}

/// Two conv → norm → ReLU layers; the first may have stride 2; with
/// `residual`, the input (projected by a 1×1×1 convolution when shapes
/// differ) is added before the last ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock<B: Backend> {
    conv1: Conv3d<B>,
    norm1: Option<Normalization<B>>,
    conv2: Conv3d<B>,
    norm2: Option<Normalization<B>>,
    skip: Option<Conv3d<B>>,
    residual: bool,
}

impl<B: Backend> ConvBlock<B> {
    /// A block from `cin` to `cout` channels.
    pub fn new(cin: usize, cout: usize, stride: usize, norm: NormKind, residual: bool, device: &B::Device) -> Self {
        let skip = (residual && (cin != cout || stride != 1)).then(|| {
            Conv3dConfig::new([cin, cout], [1, 1, 1])
                .with_stride([stride; 3])
                .init(device)
        });
        ConvBlock {
            conv1: conv3x3(cin, cout, stride, norm, device),
            norm1: norm.init(cout, device),
            conv2: conv3x3(cout, cout, 1, norm, device),
            norm2: norm.init(cout, device),
            skip,
            residual,
        }
    }

    /// # Shapes
    /// `[N, cin, D, H, W]` → `[N, cout, D/s, H/s, W/s]`.
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let norm = |n: &Option<Normalization<B>>, t: Tensor<B, 5>| match n {
            Some(n) => crate::cpu::normalize(n, t),
            None => t,
        };
        let h = relu(norm(&self.norm1, crate::cpu::conv3d(&self.conv1, x.clone())));
        let h = norm(&self.norm2, crate::cpu::conv3d(&self.conv2, h));
        if self.residual {
            let s = match &self.skip {
                Some(c) => crate::cpu::conv3d(c, x),
                None => x,
            };
            relu(h + s)
        } else {
            relu(h)
        }
    }
}

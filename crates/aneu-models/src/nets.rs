//! The three networks and the trait inference uses.

use burn::nn::conv::{Conv3d, ConvTranspose3d, ConvTranspose3dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::blocks::{ConvBlock, NormKind, conv1x1, conv3x3};
use crate::ops::{global_avg_pool3d, global_max_pool3d, max_pool3d};

/// What a model returns for a batch of patches.
#[derive(Debug, Clone)]
pub struct ModelOutput<B: Backend> {
    /// The "aneurysm in this patch" logit, `[N, 1]`.
    pub logit: Tensor<B, 2>,
    /// The 13 location logits in `train.csv` order, `[N, 13]`, for models
    /// with a location head.
    pub locations: Option<Tensor<B, 2>>,
    /// The voxel-wise aneurysm logit map at input resolution,
    /// `[N, 1, D, H, W]`, for models with a dense head.
    pub dense: Option<Tensor<B, 5>>,
    /// The voxel-wise vessel-label logits at input resolution,
    /// `[N, classes, D, H, W]` (class 0 background, then
    /// `aneu_io::VESSEL_LABELS`), for models with a vessel head.
    pub vessels: Option<Tensor<B, 5>>,
}

/// Everything training and inference need from a patch model, so that all
/// models are used alike.
pub trait PatchModel<B: Backend> {
    /// Runs a batch of patches.
    ///
    /// # Shapes
    /// `[N, in_channels, D, H, W]` → [`ModelOutput`]; D, H and W must be
    /// multiples of [`PatchModel::size_multiple`].
    fn forward_patches(&self, x: Tensor<B, 5>) -> ModelOutput<B>;
    /// Input channels (1, or 4 with the position prior).
    fn in_channels(&self) -> usize;
    /// Patch edges must be multiples of this.
    fn size_multiple(&self) -> usize;
    /// Whether [`ModelOutput::dense`] is set.
    fn has_dense_head(&self) -> bool;
    /// Whether [`ModelOutput::locations`] is set.
    fn has_location_head(&self) -> bool;
    /// The classes of [`ModelOutput::vessels`] (0: no vessel head).
    fn vessel_classes(&self) -> usize {
        0
    }
}

// ---------------------------------------------------------------- Simple3dCnn

/// Configuration of [`Simple3dCnn`].
#[derive(Config, Debug, PartialEq)]
pub struct Simple3dCnnConfig {
    /// Input channels.
    #[config(default = 1)]
    pub in_channels: usize,
    /// Channels of the three conv blocks (16, 32, 64 in the seed).
    #[config(default = "[16, 32, 64]")]
    pub channels: [usize; 3],
}

/// The seed's baseline: three conv3d → ReLU → 2× max-pool blocks, global
/// average pooling and a linear layer to one logit.
#[derive(Module, Debug)]
pub struct Simple3dCnn<B: Backend> {
    convs: Vec<Conv3d<B>>,
    head: Linear<B>,
    in_channels: usize,
}

impl Simple3dCnnConfig {
    /// Initialises the network on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Simple3dCnn<B> {
        let c = self.channels;
        let convs = vec![
            conv3x3(self.in_channels, c[0], 1, NormKind::None, device),
            conv3x3(c[0], c[1], 1, NormKind::None, device),
            conv3x3(c[1], c[2], 1, NormKind::None, device),
        ];
        Simple3dCnn {
            convs,
            head: LinearConfig::new(c[2], 1).init(device),
            in_channels: self.in_channels,
        }
    }
}

impl<B: Backend> Simple3dCnn<B> {
    /// # Shapes
    /// `[N, C, D, H, W]` → `[N, 1]` (D, H, W multiples of 8).
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 2> {
        let mut x = x;
        for c in &self.convs {
            x = max_pool3d(relu(crate::cpu::conv3d(c, x)), [2, 2, 2]);
        }
        self.head.forward(global_avg_pool3d(x))
    }
}

impl<B: Backend> PatchModel<B> for Simple3dCnn<B> {
    fn forward_patches(&self, x: Tensor<B, 5>) -> ModelOutput<B> {
        ModelOutput {
            logit: self.forward(x),
            locations: None,
            dense: None,
            vessels: None,
        }
    }
    fn in_channels(&self) -> usize {
        self.in_channels
    }
    fn size_multiple(&self) -> usize {
        8
    }
    fn has_dense_head(&self) -> bool {
        false
    }
    fn has_location_head(&self) -> bool {
        false
    }
}

// ----------------------------------------------------------------- TinyUNet3d

/// Configuration of [`TinyUNet3d`].
#[derive(Config, Debug, PartialEq)]
pub struct TinyUNet3dConfig {
    /// Input channels.
    #[config(default = 1)]
    pub in_channels: usize,
    /// Filters of the first stage (8 or 16 in the seed).
    #[config(default = 8)]
    pub base_filters: usize,
}

/// The seed's best model: two encoder stages (two conv → ReLU layers, then
/// 2× max-pool), a bottleneck, two decoder stages (transposed conv up,
/// skip concatenation, two conv → ReLU), global average pooling and a
/// linear layer to one logit.
#[derive(Module, Debug)]
pub struct TinyUNet3d<B: Backend> {
    enc1: ConvBlock<B>,
    enc2: ConvBlock<B>,
    bottleneck: ConvBlock<B>,
    up2: ConvTranspose3d<B>,
    dec2: ConvBlock<B>,
    up1: ConvTranspose3d<B>,
    dec1: ConvBlock<B>,
    head: Linear<B>,
    in_channels: usize,
}

fn up<B: Backend>(cin: usize, cout: usize, device: &B::Device) -> ConvTranspose3d<B> {
    ConvTranspose3dConfig::new([cin, cout], [2, 2, 2])
        .with_stride([2, 2, 2])
        .init(device)
}

impl TinyUNet3dConfig {
    /// Initialises the network on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> TinyUNet3d<B> {
        let f = self.base_filters;
        let block = |a, b| ConvBlock::new(a, b, 1, NormKind::None, false, device);
        TinyUNet3d {
            enc1: block(self.in_channels, f),
            enc2: block(f, 2 * f),
            bottleneck: block(2 * f, 4 * f),
            up2: up(4 * f, 2 * f, device),
            dec2: block(4 * f, 2 * f),
            up1: up(2 * f, f, device),
            dec1: block(2 * f, f),
            head: LinearConfig::new(f, 1).init(device),
            in_channels: self.in_channels,
        }
    }
}

impl<B: Backend> TinyUNet3d<B> {
    /// # Shapes
    /// `[N, C, D, H, W]` → `[N, 1]` (D, H, W multiples of 4).
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 2> {
        let e1 = self.enc1.forward(x);
        let e2 = self.enc2.forward(max_pool3d(e1.clone(), [2, 2, 2]));
        let b = self.bottleneck.forward(max_pool3d(e2.clone(), [2, 2, 2]));
        let d2 = self
            .dec2
            .forward(Tensor::cat(vec![crate::cpu::conv_transpose3d(&self.up2, b), e2], 1));
        let d1 = self
            .dec1
            .forward(Tensor::cat(vec![crate::cpu::conv_transpose3d(&self.up1, d2), e1], 1));
        self.head.forward(global_avg_pool3d(d1))
    }
}

impl<B: Backend> PatchModel<B> for TinyUNet3d<B> {
    fn forward_patches(&self, x: Tensor<B, 5>) -> ModelOutput<B> {
        ModelOutput {
            logit: self.forward(x),
            locations: None,
            dense: None,
            vessels: None,
        }
    }
    fn in_channels(&self) -> usize {
        self.in_channels
    }
    fn size_multiple(&self) -> usize {
        4
    }
    fn has_dense_head(&self) -> bool {
        false
    }
    fn has_location_head(&self) -> bool {
        false
    }
}

// --------------------------------------------------------------------- UNet3d

/// Configuration of [`UNet3d`].
#[derive(Config, Debug, PartialEq)]
pub struct UNet3dConfig {
    /// Input channels (4 with the position prior: image + 3 coordinates).
    #[config(default = 1)]
    pub in_channels: usize,
    /// Resolution levels, 3 to 5 (depth − 1 downsamplings).
    #[config(default = 4)]
    pub depth: usize,
    /// Filters at full resolution, doubled per level.
    #[config(default = 16)]
    pub base_filters: usize,
    /// Filters are capped at this (nnU-Net uses 320).
    #[config(default = 320)]
    pub max_filters: usize,
    /// Normalisation after each convolution.
    #[config(default = "NormKind::Instance")]
    pub norm: NormKind,
    /// Residual blocks.
    #[config(default = false)]
    pub residual: bool,
    /// Hidden units of the classification head.
    #[config(default = 64)]
    pub head_hidden: usize,
    /// Classes of the vessel head (none when absent or 0; 14 for
    /// background and RSNA's 13 artery labels, `aneu_io::VESSEL_LABELS`):
    /// extra output channels of the dense head's 1×1×1 convolution,
    /// trained where vessel labels exist. An option, so that the configs
    /// of bundles written before it existed still read.
    pub vessel_classes: Option<usize>,
    /// Width of the position skip (none when absent or 0; needs
    /// `in_channels` = 4, the image and the three coordinate channels).
    ///
    /// Instance norm removes each channel's mean over the patch, and with
    /// it every constant the first convolution adds for where the patch
    /// lies: a network fed the coordinates only at its input sees its
    /// absolute position only through the zero padding at the borders, so
    /// it cannot tell a left artery from a right one. The skip routes the
    /// coordinates around the normalisations: a per-voxel embedding
    /// (1×1×1 convolution, ReLU, this many channels) joins the last
    /// decoder features before the dense head, and its mean over the patch
    /// joins the pooled features of the classification head. An option,
    /// so that the configs of bundles written before it existed still
    /// read.
    pub position_skip: Option<usize>,
}

/// The main detector: a 3D U-Net with strided-conv downsampling and
/// transposed-conv upsampling, and two heads:
///
/// * a dense head (1×1×1 conv) giving a voxel-wise aneurysm logit map at
///   input resolution;
/// * a classification head on the global average- and max-pooled features
///   of the bottleneck and of every decoder level, giving the "Aneurysm
///   Present" logit and 13 location logits;
/// * optionally (`vessel_classes` > 0) a vessel head: more channels of the
///   dense head's convolution, one logit per vessel label and voxel.
///
/// With [`UNet3dConfig::position_skip`], both heads also see an embedding
/// of the coordinate channels that no normalisation has centred.
#[derive(Module, Debug)]
pub struct UNet3d<B: Backend> {
    encoder: Vec<ConvBlock<B>>,
    ups: Vec<ConvTranspose3d<B>>,
    decoder: Vec<ConvBlock<B>>,
    dense_head: Conv3d<B>,
    position_skip: Option<Conv3d<B>>,
    hidden: Linear<B>,
    out: Linear<B>,
    in_channels: usize,
    depth: usize,
}

impl UNet3dConfig {
    /// Filters at each level.
    pub fn filters(&self) -> Vec<usize> {
        (0..self.depth)
            .map(|l| (self.base_filters << l).min(self.max_filters))
            .collect()
    }

    /// Channels of the position skip (0 without one).
    pub fn skip_width(&self) -> usize {
        self.position_skip.unwrap_or(0)
    }

    /// Checks the ranges.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=6).contains(&self.depth) {
            return Err(format!("depth {} is outside 2..=6", self.depth));
        }
        if self.base_filters == 0 || self.in_channels == 0 || self.head_hidden == 0 {
            return Err("base_filters, in_channels and head_hidden must be positive".into());
        }
        if self.skip_width() > 0 && self.in_channels != 4 {
            return Err(format!(
                "position_skip needs the three coordinate channels (in_channels 4), not {}",
                self.in_channels
            ));
        }
        if let NormKind::Group(g) = self.norm
            && let Some(f) = self.filters().into_iter().find(|f| g == 0 || !f.is_multiple_of(g))
        {
            return Err(format!("{f} filters are not divisible into {g} groups"));
        }
        Ok(())
    }

    /// Initialises the network on `device`.
    ///
    /// # Panics
    /// When [`UNet3dConfig::validate`] fails.
    pub fn init<B: Backend>(&self, device: &B::Device) -> UNet3d<B> {
        if let Err(e) = self.validate() {
            panic!("invalid UNet3dConfig: {e}");
        }
        let f = self.filters();
        let mut encoder = Vec::new();
        for l in 0..self.depth {
            let cin = if l == 0 { self.in_channels } else { f[l - 1] };
            encoder.push(ConvBlock::new(
                cin,
                f[l],
                if l == 0 { 1 } else { 2 },
                self.norm,
                self.residual,
                device,
            ));
        }
        let mut ups = Vec::new();
        let mut decoder = Vec::new();
        for l in (0..self.depth - 1).rev() {
            ups.push(up(f[l + 1], f[l], device));
            decoder.push(ConvBlock::new(2 * f[l], f[l], 1, self.norm, self.residual, device));
        }
        let skip = self.skip_width();
        // pooled features: bottleneck + each decoder level, average and
        // max, and the position embedding's mean
        let pooled: usize = 2 * f.iter().sum::<usize>() + skip;
        UNet3d {
            encoder,
            ups,
            decoder,
            dense_head: conv1x1(f[0] + skip, 1 + self.vessel_classes.unwrap_or(0), device),
            position_skip: (skip > 0).then(|| conv1x1(3, skip, device)),
            hidden: LinearConfig::new(pooled, self.head_hidden).init(device),
            out: LinearConfig::new(self.head_hidden, 14).init(device),
            in_channels: self.in_channels,
            depth: self.depth,
        }
    }
}

impl<B: Backend> UNet3d<B> {
    /// # Shapes
    /// `[N, C, D, H, W]` → dense logits `[N, 1 + vessel_classes, D, H, W]`
    /// (the aneurysm map, then the vessel classes) and head logits
    /// `[N, 14]` (Aneurysm Present, then the 13 locations); D, H, W
    /// multiples of 2^(depth−1).
    pub fn forward(&self, x: Tensor<B, 5>) -> (Tensor<B, 5>, Tensor<B, 2>) {
        let position = self
            .position_skip
            .as_ref()
            .map(|c| relu(crate::cpu::conv3d(c, x.clone().narrow(1, 1, 3))));
        let mut skips = Vec::with_capacity(self.depth);
        let mut h = x;
        for (l, e) in self.encoder.iter().enumerate() {
            h = e.forward(h);
            if l + 1 < self.encoder.len() {
                skips.push(h.clone());
            }
        }
        let mut pooled = vec![global_avg_pool3d(h.clone()), global_max_pool3d(h.clone())];
        for ((u, d), skip) in self.ups.iter().zip(&self.decoder).zip(skips.into_iter().rev()) {
            h = d.forward(Tensor::cat(vec![crate::cpu::conv_transpose3d(u, h), skip], 1));
            pooled.push(global_avg_pool3d(h.clone()));
            pooled.push(global_max_pool3d(h.clone()));
        }
        if let Some(p) = position {
            pooled.push(global_avg_pool3d(p.clone()));
            h = Tensor::cat(vec![h, p], 1);
        }
        let dense = crate::cpu::conv3d(&self.dense_head, h);
        let head = self.out.forward(relu(self.hidden.forward(Tensor::cat(pooled, 1))));
        (dense, head)
    }
}

impl<B: Backend> PatchModel<B> for UNet3d<B> {
    fn forward_patches(&self, x: Tensor<B, 5>) -> ModelOutput<B> {
        let (dense, head) = self.forward(x);
        let classes = PatchModel::<B>::vessel_classes(self);
        let (dense, vessels) = if classes > 0 {
            (dense.clone().narrow(1, 0, 1), Some(dense.narrow(1, 1, classes)))
        } else {
            (dense, None)
        };
        ModelOutput {
            logit: head.clone().narrow(1, 0, 1),
            locations: Some(head.narrow(1, 1, 13)),
            dense: Some(dense),
            vessels,
        }
    }
    fn in_channels(&self) -> usize {
        self.in_channels
    }
    fn size_multiple(&self) -> usize {
        1 << (self.depth - 1)
    }
    fn has_dense_head(&self) -> bool {
        true
    }
    fn vessel_classes(&self) -> usize {
        // the dense head's channels after the aneurysm map's (older
        // bundles load unchanged: they have one)
        self.dense_head.weight.dims()[0].saturating_sub(1)
    }
    fn has_location_head(&self) -> bool {
        true
    }
}

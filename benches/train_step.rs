//! Where a training step's time goes on Flex (the CPU backend): the whole
//! step (forward, backward, Adam) and forward only for the UNet3d workloads
//! of docs/benchmarks.md, then each layer type of `configs/ci_dense.json`'s
//! network alone, forward and forward + backward, at the shapes it has in
//! that network (24³, batch 8), through the functions the networks call
//! (`aneu_models::cpu`). `benches/torch/unet_step.py` measures the
//! same in PyTorch; run both in one session and compare ratios.
//!
//! ```sh
//! cargo bench --bench train_step              # ci_dense and default at 32³
//! cargo bench --bench train_step -- --large   # also default at 64³
//! ```
//!
//! Each figure is the median of `--reps` runs (default 5) after one
//! warm-up run, in milliseconds.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use aneu::models::burn::backend::{Autodiff, Flex};
use aneu::models::burn::module::AutodiffModule;
use aneu::models::burn::nn::conv::{Conv3dConfig, ConvTranspose3dConfig};
use aneu::models::burn::nn::norm::Normalization;
use aneu::models::burn::nn::{InstanceNormConfig, PaddingConfig3d};
use aneu::models::burn::optim::{AdamConfig, GradientsParams, Optimizer};
use aneu::models::burn::prelude::*;
use aneu::models::burn::tensor::Distribution;
use aneu::models::burn::tensor::activation::relu;
use aneu::models::{ModelConfig, NormKind, PatchModel, UNet3dConfig, cpu};

type A = Autodiff<Flex>;

/// Median milliseconds of `reps` runs of `f` after one warm-up run.
fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn normal<const D: usize>(shape: [usize; D], device: &Device<A>) -> Tensor<A, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// The loss of the benchmark: mean of every output (its cost is nil next
/// to the network's; the gradient reaches every parameter).
fn loss(model: &aneu::models::AnyModel<A>, x: Tensor<A, 5>) -> Tensor<A, 1> {
    let out = model.forward_patches(x);
    let mut l = out.logit.mean();
    if let Some(d) = out.dense {
        l = l + d.mean();
    }
    if let Some(p) = out.locations {
        l = l + p.mean();
    }
    l
}

/// Whole training step (forward, backward, Adam) and forward only.
fn network(name: &str, cfg: UNet3dConfig, size: usize, batch: usize, reps: usize) {
    let device = Default::default();
    let in_channels = cfg.in_channels;
    let mut model = ModelConfig::UNet3d(cfg).init_seeded::<A>(1, &device).unwrap();
    let mut optim = AdamConfig::new().init();
    let x = normal([batch, in_channels, size, size, size], &device);
    let step = median_ms(reps, || {
        let grads = loss(&model, x.clone()).backward();
        let grads = GradientsParams::from_grads(grads, &model);
        model = optim.step(1e-3, model.clone(), grads);
    });
    let inner = model.valid();
    let xi = x.clone().inner();
    let fwd = median_ms(reps, || {
        let out = inner.forward_patches(xi.clone());
        let _ = out.logit.into_data();
    });
    println!("| {name} | {size}³ × {batch} | {step:.0} | {fwd:.0} |");
}

/// One layer type alone: forward, and forward + backward (the gradient of
/// the sum reaches the input and the parameters); then the backward with
/// an input that needs no gradient, which leaves the parameters' gradient
/// alone ("of which parameters").
fn layer(
    name: &str,
    count: usize,
    reps: usize,
    has_params: bool,
    run: impl Fn(Tensor<A, 5>) -> Tensor<A, 5>,
    shape: [usize; 5],
) {
    let device = Default::default();
    let x = normal(shape, &device);
    let xg = x.clone().require_grad();
    let fwd = median_ms(reps, || {
        let _ = run(xg.clone()).into_data();
    });
    let both = median_ms(reps, || {
        let _ = run(xg.clone()).sum().backward();
    });
    // (an output's `is_require_grad` is false in Burn's autodiff unless it
    // is a leaf, so whether there are parameters is told, not asked)
    let params = if has_params {
        median_ms(reps, || {
            let _ = run(x.clone()).sum().backward();
        })
    } else {
        fwd
    };
    println!(
        "| {name} | {shape:?} | {count} | {fwd:.1} | {:.1} | {:.1} | {:.0} |",
        both - fwd,
        (params - fwd).max(0.0),
        both * count as f64
    );
}

fn layers(reps: usize) {
    let device: Device<A> = Default::default();
    let b = 8;
    println!(
        "\n| layer (ci_dense, batch 8) | input | per step | forward ms | backward ms | of which parameters ms | step total ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    // 3×3×3 convolutions, stride 1: (cin, cout, size, how many in the net)
    for (cin, cout, n, count) in [
        (4, 8, 24, 1),
        (8, 8, 24, 2),
        (16, 8, 24, 1),
        (16, 16, 12, 2),
        (32, 16, 12, 1),
        (32, 32, 6, 1),
    ] {
        let conv = Conv3dConfig::new([cin, cout], [3, 3, 3])
            .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
            .init::<A>(&device);
        layer(
            &format!("conv3d 3³ s1 {cin}→{cout}"),
            count,
            reps,
            true,
            |x| cpu::conv3d(&conv, x),
            [b, cin, n, n, n],
        );
    }
    // 3×3×3 convolutions, stride 2
    for (cin, cout, n) in [(8, 16, 24), (16, 32, 12)] {
        let conv = Conv3dConfig::new([cin, cout], [3, 3, 3])
            .with_stride([2, 2, 2])
            .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
            .init::<A>(&device);
        layer(
            &format!("conv3d 3³ s2 {cin}→{cout}"),
            1,
            reps,
            true,
            |x| cpu::conv3d(&conv, x),
            [b, cin, n, n, n],
        );
    }
    // 2×2×2 transposed convolutions, stride 2
    for (cin, cout, n) in [(32, 16, 6), (16, 8, 12)] {
        let up = ConvTranspose3dConfig::new([cin, cout], [2, 2, 2])
            .with_stride([2, 2, 2])
            .init::<A>(&device);
        layer(
            &format!("conv_transpose3d 2³ s2 {cin}→{cout}"),
            1,
            reps,
            true,
            |x| cpu::conv_transpose3d(&up, x),
            [b, cin, n, n, n],
        );
    }
    // instance norm (affine) and ReLU, at each level: (channels, size, count)
    for (c, n, count) in [(8, 24, 4), (16, 12, 4), (32, 6, 2)] {
        let norm = Normalization::Instance(InstanceNormConfig::new(c).with_affine(true).init::<A>(&device));
        layer(
            &format!("instance norm {c}"),
            count,
            reps,
            true,
            |x| cpu::normalize(&norm, x),
            [b, c, n, n, n],
        );
        layer(&format!("relu {c}"), count, reps, false, relu, [b, c, n, n, n]);
    }
    // skip concatenation
    for (c, n) in [(16, 12), (8, 24)] {
        let skip = normal([b, c, n, n, n], &device).require_grad();
        layer(
            &format!("cat {c}+{c}"),
            1,
            reps,
            true,
            |x| Tensor::cat(vec![x, skip.clone()], 1),
            [b, c, n, n, n],
        );
    }
    // the dense head
    let head = Conv3dConfig::new([8, 1], [1, 1, 1]).init::<A>(&device);
    layer(
        "conv3d 1³ 8→1 (dense head)",
        1,
        reps,
        true,
        |x| cpu::conv3d(&head, x),
        [b, 8, 24, 24, 24],
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let large = args.iter().any(|a| a == "--large");
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    println!("Flex on {} threads\n", rayon_threads());
    println!("| network | input | training step ms | forward ms |");
    println!("|---|---|---|---|");
    let ci_dense = UNet3dConfig::new()
        .with_in_channels(4)
        .with_depth(3)
        .with_base_filters(8)
        .with_max_filters(32)
        .with_norm(NormKind::Instance)
        .with_head_hidden(16);
    network("ci_dense UNet3d", ci_dense, 24, 8, reps);
    network("default UNet3d", UNet3dConfig::new(), 32, 2, reps);
    if large {
        network("default UNet3d", UNet3dConfig::new(), 64, 2, reps.min(3));
    }
    layers(reps);
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

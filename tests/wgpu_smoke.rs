//! One training step and one forward pass on Burn's wgpu backend (lavapipe
//! on a CPU machine), to keep the fallback backend working. Built only with
//! `--features wgpu`, and run only when `ANEU_WGPU_SMOKE=1` (starting a
//! wgpu device without a Vulkan driver fails).

#![cfg(feature = "wgpu")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aneu::models::burn::backend::{Autodiff, Wgpu};
use aneu::models::burn::module::AutodiffModule;
use aneu::models::burn::optim::{AdamConfig, GradientsParams, Optimizer};
use aneu::models::burn::prelude::*;
use aneu::models::*;
use aneu::train::loss::bce_with_logits;

type A = Autodiff<Wgpu>;

#[test]
fn one_training_step_on_wgpu() {
    if std::env::var("ANEU_WGPU_SMOKE").as_deref() != Ok("1") {
        eprintln!("skipped: set ANEU_WGPU_SMOKE=1 with a Vulkan driver (mesa-vulkan-drivers) installed");
        return;
    }
    let device = Default::default();
    let cfg = ModelConfig::UNet3d(UNet3dConfig::new().with_depth(2).with_base_filters(4));
    let mut model = cfg.init_seeded::<A>(1, &device).unwrap();
    let x = with_backend_rng(|| {
        Tensor::<A, 5>::random(
            [2, 1, 8, 8, 8],
            aneu::models::burn::tensor::Distribution::Default,
            &device,
        )
    });
    let y = Tensor::<A, 1>::from_floats([1.0f32, 0.0].as_slice(), &device).reshape([2, 1]);
    let mut opt = AdamConfig::new().init();
    let before = bce_with_logits(model.forward_patches(x.clone()).logit, y.clone());
    let b: f32 = before.clone().into_scalar();
    let grads = GradientsParams::from_grads(before.backward(), &model);
    model = opt.step(1e-2, model, grads);
    let out = model.valid().forward_patches(x.clone().inner());
    assert_eq!(out.dense.unwrap().dims(), [2, 1, 8, 8, 8]);
    let after: f32 = bce_with_logits(model.forward_patches(x).logit, y).into_scalar();
    assert!(b.is_finite() && after.is_finite());
    println!("wgpu: loss {b:.4} → {after:.4}");
}

//! Forward + backward time per batch on Flex (the CPU backend) for each
//! model at 32³ and 64³, batch 2; see docs/benchmarks.md.
//!
//! ```sh
//! cargo bench --bench models
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use aneu::models::burn::backend::{Autodiff, Flex};
use aneu::models::burn::prelude::*;
use aneu::models::burn::tensor::Distribution;
use aneu::models::*;
use criterion::{Criterion, criterion_group, criterion_main};

type A = Autodiff<Flex>;

fn forward_backward(c: &mut Criterion) {
    let device = Default::default();
    let models = [
        ("simple3dcnn", ModelConfig::Simple3dCnn(Simple3dCnnConfig::new())),
        ("tinyunet3d_8", ModelConfig::TinyUNet3d(TinyUNet3dConfig::new())),
        ("unet3d_d4_f16_instance", ModelConfig::UNet3d(UNet3dConfig::new())),
    ];
    for n in [32usize, 64] {
        let mut g = c.benchmark_group(format!("fwd_bwd_batch2_{n}cubed"));
        g.sample_size(10);
        for (name, cfg) in &models {
            let model = cfg.init_seeded::<A>(1, &device).unwrap();
            let x =
                with_backend_rng(|| Tensor::<A, 5>::random([2, 1, n, n, n], Distribution::Normal(0.0, 1.0), &device));
            g.bench_function(*name, |b| {
                b.iter(|| {
                    let out = model.forward_patches(x.clone());
                    let mut loss = out.logit.mean();
                    if let Some(d) = out.dense {
                        loss = loss + d.mean();
                    }
                    loss.backward()
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, forward_backward);
criterion_main!(benches);

//! Patch-sampling throughput: planning an epoch and extracting 32³
//! patches (image, dense target, labels) with and without the standard
//! augmentation, from a 160³ case at 1 mm; see docs/benchmarks.md.
//!
//! ```sh
//! cargo bench --bench patch_sampling
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use aneu::io::{Affine, Location, Volume, Voxel};
use aneu::patch::augment::{Compose, RandTransform};
use aneu::patch::{Case, Finding, PatchSampler, SamplerConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array3;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn cases() -> Vec<Case> {
    let n = 160;
    let c = 79.5;
    (0..4)
        .map(|s| {
            let img = Array3::from_shape_fn((n, n, n), |(k, j, i)| {
                let r = ((k as f64 - c).powi(2) + (j as f64 - c).powi(2) + (i as f64 - c).powi(2)).sqrt();
                let vessel = ((k as f64 - c).powi(2) + (j as f64 - c - 10.0).powi(2)).sqrt() < 1.5;
                (if r < 70.0 { 1.0 } else { 0.0 })
                    + if vessel { 4.0 } else { 0.0 }
                    + ((k + j * 3 + i * 7 + s) % 13) as f32 * 0.01
            });
            let image = Volume::new(img, Affine::identity()).unwrap();
            let mask = image.map(|v| u8::from(*v > 0.5));
            let f = Finding {
                voxel: Voxel::new(60.0, 90.0, 80.0),
                location: Some(Location::AcomA),
                radius_mm: Some(3.0),
            };
            Case::new(format!("c{s}"), image, mask, vec![f]).unwrap()
        })
        .collect()
}

fn sampling(c: &mut Criterion) {
    let sampler = PatchSampler::new(
        SamplerConfig::default()
            .with_patch_size(32)
            .with_positives_per_finding(8)
            .with_negatives_per_case(24),
    )
    .unwrap();
    let mut cases = cases();
    for case in &mut cases {
        sampler.prepare(case);
    }
    let specs = sampler.plan_epoch(&cases, &mut StdRng::seed_from_u64(1));
    let mut g = c.benchmark_group("patch_sampling_32cubed");
    g.sample_size(10);
    g.throughput(Throughput::Elements(specs.len() as u64));
    g.bench_function("plan_epoch", |b| {
        b.iter(|| sampler.plan_epoch(&cases, &mut StdRng::seed_from_u64(2)))
    });
    g.bench_function("extract_parallel", |b| b.iter(|| sampler.extract_many(&cases, &specs)));
    let aug = Compose::standard();
    g.bench_function("extract_and_augment_parallel", |b| {
        b.iter(|| {
            use rayon::prelude::*;
            specs
                .par_iter()
                .enumerate()
                .map(|(n, s)| {
                    let mut p = sampler.extract(&cases, s);
                    aug.apply(&mut p, &mut StdRng::seed_from_u64(n as u64));
                    p
                })
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

criterion_group!(benches, sampling);
criterion_main!(benches);

//! Whole-scan sliding-window inference on Flex (the CPU backend): one
//! `small` TOF-MRA phantom, preprocessed to 1 mm (≈ 110 × 110 × 100
//! voxels), through UNet3d windows with Gaussian blending, then candidate
//! extraction; see docs/benchmarks.md.
//!
//! ```sh
//! cargo bench --profile dev --bench inference
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use aneu::infer::{CandidateOptions, SlidingWindow, WindowOutput, find_peaks};
use aneu::io::{DicomSeries, Modality};
use aneu::models::burn::backend::Flex;
use aneu::models::burn::prelude::*;
use aneu::models::burn::tensor::activation::sigmoid;
use aneu::models::{ModelConfig, PatchModel, UNet3dConfig};
use aneu::patch::Case;
use aneu::phantom::{PhantomConfig, SizePreset, generate};
use aneu::preproc::{PreprocessConfig, preprocess_series};
use criterion::{Criterion, criterion_group, criterion_main};

fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    generate(
        &PhantomConfig::new(1, 3, SizePreset::Small).with_modalities(&[aneu::io::Modality::Mra]),
        dir.path(),
    )
    .unwrap();
    let series_dir = std::fs::read_dir(dir.path().join("series"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let s = DicomSeries::read(series_dir).unwrap();
    let p = preprocess_series(&s, Modality::Mra, &[], None, &PreprocessConfig::default()).unwrap();
    Case::new("bench", p.image, p.mask, vec![]).unwrap()
}

fn sliding_window(c: &mut Criterion) {
    let case = case();
    let device = Default::default();
    let models = [
        (
            "unet3d_d3_f8_roi48",
            ModelConfig::UNet3d(
                UNet3dConfig::new()
                    .with_in_channels(4)
                    .with_depth(3)
                    .with_base_filters(8)
                    .with_max_filters(32)
                    .with_head_hidden(16),
            ),
            48,
        ),
        (
            "unet3d_d4_f16_roi64",
            ModelConfig::UNet3d(UNet3dConfig::new().with_in_channels(4)),
            64,
        ),
    ];
    let mut g = c.benchmark_group(format!(
        "infer_mra_small_1mm_{:?}_overlap0.25",
        case.image.size().to_ijk()
    ));
    g.sample_size(10);
    for (name, cfg, roi) in models {
        let model = cfg.init_seeded::<Flex>(1, &device).unwrap();
        let w = SlidingWindow::default().with_overlap(0.25).with_batch_size(2);
        g.bench_function(name, |b| {
            b.iter(|| {
                let map = w
                    .run(&case, roi, true, |batch| {
                        let n = batch.len();
                        let x = Tensor::<Flex, 1>::from_floats(batch.data.as_slice(), &device)
                            .reshape([n, 4, roi, roi, roi]);
                        let d = sigmoid(model.forward_patches(x).dense.unwrap());
                        let v = d.into_data().to_vec::<f32>().unwrap();
                        let per = roi * roi * roi;
                        Ok((0..n)
                            .map(|k| {
                                WindowOutput::Dense(
                                    ndarray::Array3::from_shape_vec(
                                        (roi, roi, roi),
                                        v[k * per..(k + 1) * per].to_vec(),
                                    )
                                    .unwrap(),
                                )
                            })
                            .collect())
                    })
                    .unwrap();
                find_peaks(map.view(), case.image.affine(), &CandidateOptions::default())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, sliding_window);
criterion_main!(benches);

//! Time to generate one phantom series (render + write DICOM + ground
//! truth), for the `small` and `full` presets. Each iteration writes one
//! series of a fresh index, so modalities vary across samples.
//!
//! ```sh
//! cargo bench --bench phantom_generate
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // criterion_group! generates an undocumented fn

use std::sync::atomic::{AtomicU64, Ordering};

use aneu::phantom::{PhantomConfig, SizePreset, generate};
use criterion::{Criterion, criterion_group, criterion_main};

fn per_series(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("phantom_generate_one_series");
    g.sample_size(10);
    for (name, size) in [("small", SizePreset::Small), ("full", SizePreset::Full)] {
        let seed = AtomicU64::new(0);
        g.bench_function(name, |b| {
            b.iter(|| {
                let s = seed.fetch_add(1, Ordering::Relaxed);
                let root = dir.path().join(format!("{name}-{s}"));
                generate(&PhantomConfig::new(1, s, size), &root).unwrap();
                std::fs::remove_dir_all(&root).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, per_series);
criterion_main!(benches);

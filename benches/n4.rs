//! N4 on the checked-in `make_synthetic.py` volume (64 × 64 × 32, shrink 2).
//! The comparison with SimpleITK on the full 512 × 512 × 160 volume is in
//! docs/benchmarks.md (examples/n4.rs and ref_n4.py in one session).
//!
//! ```sh
//! cargo bench --bench n4
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // criterion_group! generates an undocumented fn

use aneu::io::read_nifti;
use aneu::preproc::{N4Options, n4};
use criterion::{Criterion, criterion_group, criterion_main};

fn synthetic_64x64x32(c: &mut Criterion) {
    let d = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ref/n4/");
    let img = read_nifti(format!("{d}synth.nii.gz")).unwrap();
    let mask = read_nifti(format!("{d}mask.nii.gz"))
        .unwrap()
        .map(|v| u8::from(*v != 0.0));
    let mut g = c.benchmark_group("n4_synthetic_64x64x32");
    g.sample_size(10);
    g.bench_function("shrink2_defaults", |b| {
        b.iter(|| n4(&img, &mask, &N4Options::default().with_shrink(2)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, synthetic_64x64x32);
criterion_main!(benches);

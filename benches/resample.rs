//! Resampling the real dipy b0 volume (58 × 58 × 24 at 4 × 4 × 5 mm) to
//! 1 mm isotropic (232 × 232 × 120), as `ref_resample.py` does with
//! SimpleITK; see docs/benchmarks.md for the comparison.
//!
//! ```sh
//! cargo bench --bench resample
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // criterion_group! generates an undocumented fn

use aneu::io::read_nifti;
use aneu::preproc::{Interpolator, ResampleOptions, resample_with_options};
use criterion::{Criterion, criterion_group, criterion_main};

fn aniso_to_1mm(c: &mut Criterion) {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nifti/dipy_aniso_vox.nii.gz");
    let v = read_nifti(p).unwrap();
    let mut g = c.benchmark_group("resample_dipy_58x58x24_to_1mm");
    g.sample_size(10);
    for (name, i) in [
        ("linear", Interpolator::Linear),
        ("nearest", Interpolator::Nearest),
        ("bspline", Interpolator::BSpline),
    ] {
        let o = ResampleOptions::default().with_interpolator(i);
        g.bench_function(name, |b| b.iter(|| resample_with_options(&v, &o).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, aniso_to_1mm);
criterion_main!(benches);

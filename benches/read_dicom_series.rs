//! Reading a 160-slice 512 × 512 uint16 single-frame series (52 MB of
//! pixels, 1 file per slice), which the bench writes first.
//!
//! Three measurements in one run, on the same files:
//! * `aneu/1_thread` — `DicomSeries::read` inside a 1-thread rayon pool;
//! * `aneu/all_threads` — the default pool;
//! * `aneu_to_nii/1_thread` — read, then write an uncompressed `.nii`
//!   (float32), the same job as dcm2niix `-z n`;
//! * `dcm2niix_z_n` — the dcm2niix binary (`-z n`, uncompressed NIfTI
//!   output), when `dcm2niix` is on PATH (see docs/benchmarks.md).
//!
//! ```sh
//! PATH=../.venv-refs/bin:$PATH cargo bench --bench read_dicom_series
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // criterion_group! generates an undocumented fn

use std::process::Command;

use aneu::io::{Affine, DicomSeries, DicomWriteOptions, StoredType, Volume, write_nifti, write_series};
use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::Array3;

fn series_160x512x512_u16(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("series");
    let affine = Affine::from_parts(
        [[-0.45, 0.0, 0.0], [0.0, -0.45, 0.0], [0.0, 0.0, 0.8]],
        [115.0, 115.0, -60.0],
    )
    .unwrap();
    let data = Array3::from_shape_fn((160, 512, 512), |(k, j, i)| ((i * 7 + j * 13 + k * 31) % 4096) as f32);
    let vol = Volume::new(data, affine).unwrap();
    let opts = DicomWriteOptions::default()
        .with_stored(StoredType::U16)
        .with_modality("CT");
    write_series(&vol, &src, &opts).unwrap();
    drop(vol);

    let mut g = c.benchmark_group("read_dicom_series_160x512x512_u16");
    g.sample_size(10);
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    g.bench_function("aneu/1_thread", |b| {
        b.iter(|| one.install(|| DicomSeries::read(&src).unwrap()))
    });
    g.bench_function("aneu/all_threads", |b| b.iter(|| DicomSeries::read(&src).unwrap()));
    // the same job as dcm2niix -z n: read, then write an uncompressed .nii
    let nii = dir.path().join("aneu.nii");
    g.bench_function("aneu_to_nii/1_thread", |b| {
        b.iter(|| one.install(|| write_nifti(&DicomSeries::read(&src).unwrap().volume, &nii).unwrap()))
    });
    if Command::new("dcm2niix").arg("-v").output().is_ok() {
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        g.bench_function("dcm2niix_z_n", |b| {
            b.iter(|| {
                let s = Command::new("dcm2niix")
                    .args(["-z", "n", "-b", "n", "-w", "1", "-f", "v", "-o"])
                    .arg(&out)
                    .arg(&src)
                    .output()
                    .unwrap();
                assert!(s.status.success());
            })
        });
    } else {
        eprintln!("dcm2niix not on PATH: skipping the reference measurement");
    }
    g.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default();
    targets = series_160x512x512_u16
);
criterion_main!(benches);

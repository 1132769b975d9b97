//! Converts one DICOM series (a folder, or one Enhanced multi-frame file)
//! to NIfTI and prints a one-line geometry summary.
//!
//! ```sh
//! cargo run --release --example dicom_to_nifti -- <series_dir> <out.nii.gz> [SeriesInstanceUID]
//! ```

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use aneu::io::{DicomSeries, ReadOptions, write_nifti};

fn main() -> ExitCode {
    common::init_logging();
    // paths as the OS gives them: a name that is not UTF-8 is still a path
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let [input, output, rest @ ..] = args.as_slice() else {
        eprintln!("usage: dicom_to_nifti <series_dir> <out.nii.gz> [SeriesInstanceUID]");
        return ExitCode::from(2);
    };
    let (input, output) = (Path::new(input), Path::new(output));
    let mut opts = ReadOptions::default();
    if let Some(uid) = rest.first() {
        let Some(uid) = uid.to_str() else {
            eprintln!("error: the SeriesInstanceUID {uid:?} is not text");
            return ExitCode::from(2);
        };
        opts = opts.with_series_uid(uid);
    }
    let series = match DicomSeries::read_with_options(input, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = write_nifti(&series.volume, output) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let v = &series.volume;
    let (s, sp) = (v.size(), v.spacing());
    println!(
        "{}: {}x{}x{} voxels, {:.4}x{:.4}x{:.4} mm, {}, {} {}",
        output.display(),
        s.ni,
        s.nj,
        s.nk,
        sp[0],
        sp[1],
        sp[2],
        v.affine().axis_codes_string(),
        series.meta.modality,
        series.meta.series_uid
    );
    ExitCode::SUCCESS
}

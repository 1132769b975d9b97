//! Skull-strips a NIfTI head image and reports the intracranial volume.
//!
//! ```sh
//! cargo run --release --example skull_strip -- <in.nii[.gz]> <CTA|MRA|"MRI T2"|"MRI T1post"> <out_mask.nii.gz>
//! ```

use std::process::ExitCode;

use aneu::io::{Modality, read_nifti, write_nifti};
use aneu::preproc::intracranial_mask;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, modality, out] = args.as_slice() else {
        eprintln!("usage: skull_strip <in> <modality> <out_mask>");
        return ExitCode::from(2);
    };
    let run = || -> Result<String, Box<dyn std::error::Error>> {
        let m: Modality = modality.parse()?;
        let img = read_nifti(input)?;
        let t = std::time::Instant::now();
        let mask = intracranial_mask(&img, m)?;
        let secs = t.elapsed().as_secs_f64();
        write_nifti(&mask, out)?;
        let sp = img.spacing();
        let n = mask.as_slice().iter().filter(|v| **v != 0).count();
        Ok(format!(
            "{out}: {:.3} L intracranial ({n} voxels) in {secs:.1} s",
            n as f64 * sp[0] * sp[1] * sp[2] / 1e6
        ))
    };
    match run() {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

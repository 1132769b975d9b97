//! N4 bias-field correction of a NIfTI volume.
//!
//! ```sh
//! cargo run --release --example n4 -- <in.nii[.gz]> <mask.nii[.gz]> <out_corrected.nii.gz> <out_logbias.nii.gz> [shrink]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use aneu::io::{read_nifti, write_nifti};
use aneu::preproc::{N4Options, n4};

fn main() -> ExitCode {
    // paths as the OS gives them: a name that is not UTF-8 is still a path
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [input, mask, out_c, out_b, rest @ ..] = args.as_slice() else {
        eprintln!("usage: n4 <in> <mask> <out_corrected> <out_logbias> [shrink]");
        return ExitCode::from(2);
    };
    let shrink = match rest.first().map(|s| s.to_str().and_then(|s| s.parse::<usize>().ok())) {
        None => 4,
        Some(Some(s)) if s > 0 => s,
        Some(_) => {
            eprintln!("error: shrink {:?} is not a positive integer", rest[0]);
            return ExitCode::from(2);
        }
    };
    let run = || -> Result<String, Box<dyn std::error::Error>> {
        let img = read_nifti(input)?;
        let m = read_nifti(mask)?.map(|v| u8::from(*v != 0.0));
        let t = std::time::Instant::now();
        let r = n4(&img, &m, &N4Options::default().with_shrink(shrink))?;
        let fit = t.elapsed().as_secs_f64();
        write_nifti(&r.corrected, out_c)?;
        write_nifti(&r.log_bias, out_b)?;
        Ok(format!(
            "N4 shrink {shrink}: {fit:.2} s, iterations per level {:?}",
            r.iterations
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

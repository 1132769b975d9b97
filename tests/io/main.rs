//! Integration tests of aneu-io against the reference tools' outputs
//! (dcm2niix, nibabel, ref_lps2ras.py) checked into `tests/data`.
//! See `tests/data/PROVENANCE.md` for where each file comes from.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

mod common;
mod compressed;
mod errors;
mod hostile;
mod localizers;
mod parity;
mod round_trip;
mod rsna;

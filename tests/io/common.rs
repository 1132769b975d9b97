//! Shared helpers.

use std::path::{Path, PathBuf};

use aneu::io::{Volume, Voxel};

pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

/// Largest distance (mm) between the world positions that two volumes give
/// to the same voxel, over the corners of the grid (the maps are affine, so
/// the corners bound every voxel).
pub fn max_corner_distance<T>(a: &Volume<T>, b: &Volume<T>) -> f64 {
    let s = a.size();
    let mut worst: f64 = 0.0;
    for &i in &[0.0, (s.ni - 1) as f64] {
        for &j in &[0.0, (s.nj - 1) as f64] {
            for &k in &[0.0, (s.nk - 1) as f64] {
                let v = Voxel::new(i, j, k);
                worst = worst.max(a.voxel_to_world(v).distance(&b.voxel_to_world(v)));
            }
        }
    }
    worst
}

/// Gunzips the Philips Enhanced MPRAGE into a temporary folder.
pub fn philips_mprage(dir: &Path) -> PathBuf {
    let gz = std::fs::File::open(data("dicom/enhanced/philips_mprage.dcm.gz")).unwrap();
    let mut dec = flate2::read::GzDecoder::new(gz);
    let out = dir.join("philips_mprage.dcm");
    let mut f = std::fs::File::create(&out).unwrap();
    std::io::copy(&mut dec, &mut f).unwrap();
    out
}

//! Resource limits that readers check before they allocate.

use serde::{Deserialize, Serialize};

/// Caps on what a reader may allocate for one file or one series. Every
/// size that comes from a header is checked against these **before** any
/// buffer is allocated, so a hostile header cannot make a reader allocate
/// gigabytes.
///
/// The defaults allow a 1024 × 1024 × 1024 volume of `f32` (4 GiB),
/// 2 GiB files and DICOM sequences nested 64 deep; tighten them for
/// services that read untrusted uploads.
///
/// ```
/// let small = aneu_io::Limits::default().with_max_voxels(1 << 20).with_max_sequence_depth(16);
/// assert_eq!(small.max_voxels, 1 << 20);
/// assert_eq!(small.max_sequence_depth, 16);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// The largest number of voxels in one volume.
    pub max_voxels: u64,
    /// The largest number of bytes a decoded volume may occupy.
    pub max_bytes: u64,
    /// The largest file a reader will open (and the largest inflated
    /// size of a compressed file).
    pub max_file_bytes: u64,
    /// The deepest nesting of DICOM sequences (a sequence inside an item of
    /// a sequence, …) that a reader accepts. The DICOM parser recurses once
    /// per level, so a small file nested thousands of levels deep would
    /// overflow the stack and abort the process; the structural pre-scan
    /// counts the depth without recursion and refuses such a file first.
    /// Real images nest fewer than 10 levels (an Enhanced MR file: 2).
    pub max_sequence_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_voxels: 1 << 30,
            max_bytes: 4 << 30,
            max_file_bytes: 2 << 30,
            max_sequence_depth: 64,
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_voxels`].
    pub fn with_max_voxels(mut self, n: u64) -> Self {
        self.max_voxels = n;
        self
    }

    /// Sets [`Limits::max_bytes`].
    pub fn with_max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n;
        self
    }

    /// Sets [`Limits::max_file_bytes`].
    pub fn with_max_file_bytes(mut self, n: u64) -> Self {
        self.max_file_bytes = n;
        self
    }

    /// Sets [`Limits::max_sequence_depth`].
    pub fn with_max_sequence_depth(mut self, n: u32) -> Self {
        self.max_sequence_depth = n;
        self
    }

    /// Checks a volume of `voxels` elements of `bytes_per_voxel` bytes.
    pub(crate) fn check_volume(&self, path: &std::path::Path, voxels: u64, bytes_per_voxel: u64) -> crate::Result<()> {
        if voxels > self.max_voxels {
            return Err(crate::Error::LimitExceeded {
                path: path.to_path_buf(),
                what: "voxels",
                requested: voxels,
                limit: self.max_voxels,
            });
        }
        let bytes = voxels.saturating_mul(bytes_per_voxel);
        if bytes > self.max_bytes {
            return Err(crate::Error::LimitExceeded {
                path: path.to_path_buf(),
                what: "bytes",
                requested: bytes,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    /// Checks the size of a file (or of an inflated stream).
    pub(crate) fn check_file(&self, path: &std::path::Path, bytes: u64) -> crate::Result<()> {
        if bytes > self.max_file_bytes {
            return Err(crate::Error::LimitExceeded {
                path: path.to_path_buf(),
                what: "file bytes",
                requested: bytes,
                limit: self.max_file_bytes,
            });
        }
        Ok(())
    }
}

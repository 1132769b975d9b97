//! # aneu-patch
//!
//! 3D patches for training and inference, on [`aneu_io::Volume`]s that
//! aneu-preproc wrote (canonical RAS, isotropic):
//!
//! * [`Case`]: a scan in memory (image, brain mask, [`Finding`]s and a
//!   hard-negative pool);
//! * [`PatchSampler`]: positives centred on each aneurysm with uniform
//!   jitter, and negatives from three pools mixed by ratio: uniform inside
//!   the mask (with a minimum brain fraction), vessel-biased (bright,
//!   tubular voxels found from the image's Hessian, [`vessel_candidates`])
//!   and hard negatives (earlier false positives), all outside an
//!   exclusion radius around every aneurysm. Each [`Patch`] carries the
//!   binary label, the 13-location multi-hot, a dense sphere or Gaussian
//!   target around every aneurysm inside it, and its normalised position
//!   in the brain (an anatomical prior);
//! * [`PatchGrid`]: nnU-Net-style sliding windows whose last tile ends at
//!   the border, optionally only tiles that touch the mask, and the
//!   Gaussian importance map for blending;
//! * [`augment`]: composable `Rand*` transforms with an explicit RNG that
//!   keep image, dense target and labels aligned (a left-right flip swaps
//!   left and right locations).
//!
//! All randomness comes from the RNG the caller passes; planning an epoch
//! is parallel (rayon) and still deterministic.
//!
//! ```
//! use aneu_io::{Affine, Location, Volume, Voxel};
//! use aneu_patch::augment::{Compose, RandFlip, RandTransform, Transform};
//! use aneu_patch::{Case, Finding, PatchSampler, SamplerConfig};
//! use rand::SeedableRng;
//!
//! let img = Volume::new(ndarray::Array3::<f32>::zeros((40, 40, 40)), Affine::identity())?;
//! let mask = img.map(|_| 1u8);
//! let f = Finding { voxel: Voxel::new(12.0, 20.0, 20.0), location: Some(Location::LeftMca), radius_mm: None };
//! let cases = vec![Case::new("a", img, mask, vec![f])?];
//! let sampler = PatchSampler::new(SamplerConfig::default().with_patch_size(16).with_jitter(3))?;
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1);
//! let specs = sampler.plan_epoch(&cases, &mut rng);
//! let pos = specs.iter().find(|s| s.source == aneu_patch::PatchSource::Positive).unwrap();
//! let mut patch = sampler.extract(&cases, pos);
//! assert_eq!(patch.location_list(), vec![Location::LeftMca]);
//! // a certain left-right flip turns the left MCA into the right MCA
//! Compose(vec![Transform::Flip(RandFlip { axis: 2, p: 1.0 })]).apply(&mut patch, &mut rng);
//! assert_eq!(patch.location_list(), vec![Location::RightMca]);
//! # Ok::<(), aneu_patch::Error>(())
//! ```

pub mod augment;
mod case;
mod error;
mod grid;
mod patch;
mod sampler;
mod vessel;

pub use case::{Case, Finding};
pub use error::{Error, Result};
pub use grid::{PatchGrid, Tile};
pub use patch::{DenseTarget, Patch, PatchSource, PatchSpec, extract_box, mask_fraction, patch_start, render_dense};
pub use sampler::{PatchSampler, PlanSummary, PoolRatios, SamplerConfig, SizeWeighting, extract_patch};
pub use vessel::{VesselOptions, vessel_candidates};

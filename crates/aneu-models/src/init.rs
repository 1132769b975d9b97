//! Reproducible initialisation.
//!
//! Burn draws initial weights from the backend's **process-wide** random
//! number generator, and creates parameters lazily, on their first use.
//! Two threads that each seed the backend and build a model therefore
//! interleave their draws, and each gets weights that depend on thread
//! timing: a test binary whose tests run in parallel, or two folds trained
//! at once, would not get the weights of their seed.
//!
//! Every draw aneu makes from a backend's generator goes through one
//! process-wide lock, [`with_backend_rng`]: [`ModelConfig::init_seeded`]
//! seeds, builds and materialises a model under it, and
//! [`ModelConfig::init`] builds and materialises under it too, so that an
//! unseeded model can never take values out of a seeded one's stream.

use std::sync::{Mutex, PoisonError};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

use crate::{AnyModel, ModelConfig, Result};

/// The lock around the backends' random-number generators.
static BACKEND_RNG: Mutex<()> = Mutex::new(());

/// Runs `f` while holding the process-wide lock that every seeded or
/// random initialisation in aneu takes. Wrap any other draw from a Burn
/// backend's generator (`Tensor::random`, say) in it when other threads
/// may be initialising models at the same time.
///
/// ```
/// use aneu_models::with_backend_rng;
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// use burn::tensor::Distribution;
///
/// let x = with_backend_rng(|| {
///     Tensor::<Flex, 2>::random([2, 3], Distribution::Default, &Default::default())
/// });
/// assert_eq!(x.dims(), [2, 3]);
/// ```
pub fn with_backend_rng<R>(f: impl FnOnce() -> R) -> R {
    // a panic in another holder leaves nothing half-done that matters here
    let _guard = BACKEND_RNG.lock().unwrap_or_else(PoisonError::into_inner);
    f()
}

/// Touches every float parameter, so that lazily initialised ones draw
/// their values now, while the caller holds the lock.
struct Materialise;

impl<B: Backend> ModuleVisitor<B> for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

impl ModelConfig {
    /// Initialises the network with the weights of `seed`: the backend is
    /// seeded and every parameter drawn under the process-wide lock
    /// ([`with_backend_rng`]), so the same config, seed and backend give
    /// bit-identical weights whatever other threads do meanwhile.
    ///
    /// This is the only place in aneu that seeds a backend.
    ///
    /// ```
    /// use aneu_models::{ModelConfig, PatchModel, TinyUNet3dConfig};
    /// use burn::backend::Flex;
    /// use burn::prelude::*;
    ///
    /// let device = Default::default();
    /// let config = ModelConfig::TinyUNet3d(TinyUNet3dConfig::new());
    /// let a = config.init_seeded::<Flex>(7, &device).unwrap();
    /// let b = config.init_seeded::<Flex>(7, &device).unwrap();
    /// let x = Tensor::<Flex, 5>::ones([1, 1, 8, 8, 8], &device);
    /// let (ya, yb) = (a.forward_patches(x.clone()).logit, b.forward_patches(x).logit);
    /// assert_eq!(ya.into_data(), yb.into_data());
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for an
    /// invalid config.
    pub fn init_seeded<B: Backend>(&self, seed: u64, device: &B::Device) -> Result<AnyModel<B>> {
        with_backend_rng(|| {
            B::seed(device, seed);
            self.materialised(device)
        })
    }

    /// Initialises the network from the backend's generator as it stands
    /// (use [`ModelConfig::init_seeded`] for reproducible weights). The
    /// parameters are drawn at once, under the process-wide lock, so that
    /// they never interleave with a seeded initialisation elsewhere.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for an
    /// invalid config.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<AnyModel<B>> {
        with_backend_rng(|| self.materialised(device))
    }

    /// Builds and materialises; the caller holds the lock.
    fn materialised<B: Backend>(&self, device: &B::Device) -> Result<AnyModel<B>> {
        let model = self.init_lazy(device)?;
        model.visit(&mut Materialise);
        Ok(model)
    }
}

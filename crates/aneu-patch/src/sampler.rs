//! The training-patch sampler: jittered positives and three negative pools.

use aneu_io::VoxelIndex;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::patch::{mask_fraction, patch_start, render_dense};
use crate::{Case, DenseTarget, Error, Patch, PatchSource, PatchSpec, Result, VesselOptions, extract_box};

/// Relative weights of the three negative pools. Pools a case cannot
/// serve (no hard negatives yet, no vessel candidates) pass their share on
/// to the others; with no pool left, uniform is used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolRatios {
    /// Uniform inside the mask.
    pub uniform: f64,
    /// Bright tubular voxels (vessels) inside the mask.
    pub vessel: f64,
    /// Earlier false positives.
    pub hard: f64,
}

impl Default for PoolRatios {
    fn default() -> Self {
        PoolRatios {
            uniform: 1.0,
            vessel: 1.0,
            hard: 1.0,
        }
    }
}

/// More positive patches for smaller aneurysms: an aneurysm of radius `r`
/// gets `positives_per_finding × min(max_factor, max(1, (reference_mm /
/// r)²))` of them, rounded to the nearest whole patch. The dense and
/// classification losses see a small aneurysm in few voxels: on the
/// detection benchmark the shipped first stage finds 1 of 18 aneurysms
/// under 3 mm across (docs/benchmarks.md, "Small aneurysms"). It needs
/// the aneurysms' sizes ([`crate::Finding::radius_mm`]; aneu-train's
/// `phantom_truth` gives phantoms theirs), and an aneurysm of unknown size
/// counts as [`SamplerConfig::default_radius_mm`].
///
/// ```
/// use aneu_patch::SizeWeighting;
/// let w = SizeWeighting { reference_mm: 3.0, max_factor: 4.0 };
/// assert_eq!(w.positives(6, 3.0), 6); // at the reference: the base count
/// assert_eq!(w.positives(6, 2.0), 14); // (3 / 2)² = 2.25 → 13.5 → 14
/// assert_eq!(w.positives(6, 1.0), 24); // 9, capped at 4
/// assert_eq!(w.positives(6, 5.0), 6); // never fewer than the base count
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeWeighting {
    /// Aneurysms of this radius (mm) or larger get `positives_per_finding`.
    pub reference_mm: f64,
    /// The largest factor any aneurysm gets (≥ 1).
    pub max_factor: f64,
}

impl SizeWeighting {
    /// The positives for an aneurysm of `radius_mm`, `base` at the
    /// reference radius.
    pub fn positives(&self, base: usize, radius_mm: f64) -> usize {
        let factor = (self.reference_mm / radius_mm).powi(2).clamp(1.0, self.max_factor);
        (base as f64 * factor).round() as usize
    }
}

/// Configuration of a [`PatchSampler`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplerConfig {
    /// Edge of the cubic patch, in voxels.
    pub patch_size: usize,
    /// Positive patches per aneurysm.
    pub positives_per_finding: usize,
    /// Uniform jitter of a positive's centre, ±voxels per axis; below
    /// `patch_size / 2`, so the aneurysm stays inside.
    pub jitter: usize,
    /// Negative patches per scan, split over the pools by `pools`.
    pub negatives_per_case: usize,
    /// The pool weights.
    pub pools: PoolRatios,
    /// Uniform and vessel negatives need at least this fraction of their
    /// voxels inside the mask (0.75 in the seed).
    pub min_brain_fraction: f64,
    /// No negative's centre lies within this distance (mm) of an aneurysm.
    pub exclusion_radius_mm: f64,
    /// The dense target's shape.
    pub dense: DenseTarget,
    /// Radius (mm) for aneurysms whose radius is unknown.
    pub default_radius_mm: f64,
    /// The vessel pool's parameters.
    pub vessel: VesselOptions,
    /// Candidate draws per negative before the sampler gives up on it.
    pub max_tries: usize,
    /// More positives for smaller aneurysms (the radius, or
    /// `default_radius_mm` when unknown); every aneurysm gets
    /// `positives_per_finding` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_weighting: Option<SizeWeighting>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            patch_size: 32,
            positives_per_finding: 4,
            jitter: 8,
            negatives_per_case: 12,
            pools: PoolRatios::default(),
            min_brain_fraction: 0.75,
            exclusion_radius_mm: 28.0,
            dense: DenseTarget::Sphere,
            default_radius_mm: 3.0,
            vessel: VesselOptions::default(),
            max_tries: 200,
            size_weighting: None,
        }
    }
}

impl SamplerConfig {
    /// With this patch size.
    pub fn with_patch_size(mut self, n: usize) -> Self {
        self.patch_size = n;
        self
    }
    /// With this jitter.
    pub fn with_jitter(mut self, j: usize) -> Self {
        self.jitter = j;
        self
    }
    /// With this many positives per aneurysm.
    pub fn with_positives_per_finding(mut self, n: usize) -> Self {
        self.positives_per_finding = n;
        self
    }
    /// With this many negatives per scan.
    pub fn with_negatives_per_case(mut self, n: usize) -> Self {
        self.negatives_per_case = n;
        self
    }
    /// With these pool weights.
    pub fn with_pools(mut self, p: PoolRatios) -> Self {
        self.pools = p;
        self
    }
    /// With this minimum brain fraction.
    pub fn with_min_brain_fraction(mut self, f: f64) -> Self {
        self.min_brain_fraction = f;
        self
    }
    /// With this exclusion radius.
    pub fn with_exclusion_radius_mm(mut self, r: f64) -> Self {
        self.exclusion_radius_mm = r;
        self
    }
    /// With this dense target.
    pub fn with_dense(mut self, d: DenseTarget) -> Self {
        self.dense = d;
        self
    }
    /// With this size weighting of the positives.
    pub fn with_size_weighting(mut self, w: SizeWeighting) -> Self {
        self.size_weighting = Some(w);
        self
    }
    /// The positive patches for one aneurysm (of `radius_mm`, when known):
    /// `positives_per_finding`, scaled by [`SamplerConfig::size_weighting`].
    pub fn positives_for(&self, radius_mm: Option<f64>) -> usize {
        let r = radius_mm.unwrap_or(self.default_radius_mm);
        self.size_weighting.map_or(self.positives_per_finding, |w| {
            w.positives(self.positives_per_finding, r)
        })
    }

    /// Checks ranges and consistency.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(Error::InvalidConfig(s));
        if self.patch_size < 4 {
            return bad(format!("patch_size {} is below 4", self.patch_size));
        }
        if 2 * self.jitter >= self.patch_size {
            return bad(format!(
                "jitter {} must be below patch_size / 2 = {} so that the aneurysm stays inside the patch",
                self.jitter,
                self.patch_size / 2
            ));
        }
        let p = &self.pools;
        if [p.uniform, p.vessel, p.hard]
            .iter()
            .any(|w| !(w.is_finite() && *w >= 0.0))
        {
            return bad(format!("pool weights must be finite and ≥ 0: {p:?}"));
        }
        if !(0.0..=1.0).contains(&self.min_brain_fraction) {
            return bad(format!(
                "min_brain_fraction {} is outside [0, 1]",
                self.min_brain_fraction
            ));
        }
        if !(self.exclusion_radius_mm.is_finite() && self.exclusion_radius_mm >= 0.0) {
            return bad(format!("exclusion_radius_mm {} must be ≥ 0", self.exclusion_radius_mm));
        }
        if !(self.default_radius_mm.is_finite() && self.default_radius_mm > 0.0) {
            return bad(format!("default_radius_mm {} must be > 0", self.default_radius_mm));
        }
        if !(0.0..=1.0).contains(&self.vessel.quantile) || self.vessel.sigma_vox < 0.0 {
            return bad(format!("vessel options out of range: {:?}", self.vessel));
        }
        if self.max_tries == 0 {
            return bad("max_tries must be at least 1".into());
        }
        if let Some(w) = &self.size_weighting
            && !(w.reference_mm.is_finite() && w.reference_mm > 0.0 && w.max_factor.is_finite() && w.max_factor >= 1.0)
        {
            return bad(format!(
                "size_weighting needs reference_mm > 0 and a finite max_factor ≥ 1: {w:?}"
            ));
        }
        Ok(())
    }
}

/// What one planning pass produced, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Positive patches.
    pub positives: usize,
    /// Negatives per pool: uniform, vessel, hard.
    pub negatives: [usize; 3],
    /// Negatives that found no acceptable centre within `max_tries`.
    pub shortfall: usize,
}

/// Draws patch centres from [`Case`]s and extracts the patches.
///
/// ```
/// use aneu_io::{Affine, Volume, Voxel};
/// use aneu_patch::{Case, Finding, PatchSampler, PatchSource, SamplerConfig};
/// use ndarray::Array3;
/// use rand::SeedableRng;
///
/// let img = Volume::new(Array3::<f32>::zeros((48, 48, 48)), Affine::identity())?;
/// let mask = img.map(|_| 1u8);
/// let finding = Finding { voxel: Voxel::new(20.0, 24.0, 30.0), location: None, radius_mm: Some(2.0) };
/// let case = Case::new("demo", img, mask, vec![finding])?;
/// let sampler = PatchSampler::new(
///     SamplerConfig::default().with_patch_size(16).with_jitter(4).with_exclusion_radius_mm(14.0),
/// )?;
/// let mut cases = vec![case];
/// sampler.prepare(&mut cases[0]);
/// let mut rng = rand::rngs::StdRng::seed_from_u64(7);
/// let specs = sampler.plan_epoch(&cases, &mut rng);
/// let patches: Vec<_> = specs.iter().map(|s| sampler.extract(&cases, s)).collect();
/// for p in &patches {
///     assert_eq!(p.image.dim(), (16, 16, 16));
///     assert_eq!(p.label, if p.spec.source == PatchSource::Positive { 1.0 } else { 0.0 });
/// }
/// # Ok::<(), aneu_patch::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct PatchSampler {
    config: SamplerConfig,
}

impl PatchSampler {
    /// A sampler with a validated config.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`].
    pub fn new(config: SamplerConfig) -> Result<Self> {
        config.validate()?;
        Ok(PatchSampler { config })
    }

    /// The config.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Computes the case's vessel pool (when the vessel weight is above 0).
    /// Run once per case, before planning.
    pub fn prepare(&self, case: &mut Case) {
        if self.config.pools.vessel > 0.0 && case.vessels.is_empty() {
            case.vessels = crate::vessel_candidates(&case.image, &case.mask, &self.config.vessel);
            tracing::debug!(case = %case.id, vessels = case.vessels.len(), "vessel pool");
        }
    }

    /// Splits `n` negatives over the pools by weight (largest remainder),
    /// giving nothing to pools marked unavailable.
    pub fn allocate(&self, n: usize, available: [bool; 3]) -> [usize; 3] {
        let p = &self.config.pools;
        let mut w = [p.uniform, p.vessel, p.hard];
        for (w, a) in w.iter_mut().zip(available) {
            if !a {
                *w = 0.0;
            }
        }
        let total: f64 = w.iter().sum();
        if total <= 0.0 {
            return [n, 0, 0];
        }
        let exact: [f64; 3] = std::array::from_fn(|a| n as f64 * w[a] / total);
        let mut out: [usize; 3] = std::array::from_fn(|a| exact[a].floor() as usize);
        let mut rest = n - out.iter().sum::<usize>();
        let mut order = [0usize, 1, 2];
        order.sort_by(|a, b| (exact[*b] - out[*b] as f64).total_cmp(&(exact[*a] - out[*a] as f64)));
        for a in order {
            if rest == 0 {
                break;
            }
            if w[a] > 0.0 {
                out[a] += 1;
                rest -= 1;
            }
        }
        out
    }

    /// Plans one case's patches: positives, then the negatives of each pool.
    pub fn plan_case<R: Rng + ?Sized>(
        &self,
        case_index: usize,
        case: &Case,
        rng: &mut R,
        summary: &mut PlanSummary,
    ) -> Vec<PatchSpec> {
        let c = &self.config;
        let [nk, nj, ni] = case.image.size().to_kji();
        let dims = [nk, nj, ni];
        let mut out = Vec::new();
        for f in &case.findings {
            let centre = f.voxel.to_kji().map(|x| x.round() as i64);
            for _ in 0..c.positives_for(f.radius_mm) {
                let j = c.jitter as i64;
                let p: [usize; 3] = std::array::from_fn(|a| {
                    (centre[a] + rng.random_range(-j..=j)).clamp(0, dims[a] as i64 - 1) as usize
                });
                out.push(PatchSpec {
                    case: case_index,
                    centre: VoxelIndex::from_kji(p),
                    source: PatchSource::Positive,
                });
                summary.positives += 1;
            }
        }
        let available = [true, !case.vessels.is_empty(), !case.hard_negatives.is_empty()];
        let counts = self.allocate(c.negatives_per_case, available);
        let spacing = case.spacing_kji();
        let size = [c.patch_size; 3];
        let excluded = |p: [usize; 3]| {
            case.findings.iter().any(|f| {
                let d = f.voxel.to_kji();
                let d2: f64 = (0..3).map(|a| ((p[a] as f64 - d[a]) * spacing[a]).powi(2)).sum();
                d2 < c.exclusion_radius_mm * c.exclusion_radius_mm
            })
        };
        let mask = case.mask.data();
        let bbox = case.bbox;
        for (pool, &count) in counts.iter().enumerate() {
            for _ in 0..count {
                let mut accepted = None;
                for _ in 0..c.max_tries {
                    let p: [usize; 3] = match pool {
                        0 => std::array::from_fn(|a| rng.random_range(bbox[a][0]..bbox[a][1])),
                        1 => case.vessels[rng.random_range(0..case.vessels.len())].to_kji(),
                        _ => case.hard_negatives[rng.random_range(0..case.hard_negatives.len())].to_kji(),
                    };
                    if p.iter().zip(dims).any(|(x, n)| *x >= n) || excluded(p) {
                        continue;
                    }
                    if pool == 0 && mask[p] == 0 {
                        continue;
                    }
                    if pool < 2 && mask_fraction(mask, patch_start(p, size), size) < c.min_brain_fraction {
                        continue;
                    }
                    accepted = Some(p);
                    break;
                }
                match accepted {
                    Some(p) => {
                        let source = [PatchSource::Uniform, PatchSource::Vessel, PatchSource::Hard][pool];
                        out.push(PatchSpec {
                            case: case_index,
                            centre: VoxelIndex::from_kji(p),
                            source,
                        });
                        summary.negatives[pool] += 1;
                    }
                    None => summary.shortfall += 1,
                }
            }
        }
        out
    }

    /// Plans an epoch over all cases, in parallel and deterministically
    /// (one seed per case drawn from `rng`), then shuffles.
    pub fn plan_epoch<R: Rng + ?Sized>(&self, cases: &[Case], rng: &mut R) -> Vec<PatchSpec> {
        self.plan_epoch_with_summary(cases, rng).0
    }

    /// [`PatchSampler::plan_epoch`], with what was drawn from each pool.
    pub fn plan_epoch_with_summary<R: Rng + ?Sized>(
        &self,
        cases: &[Case],
        rng: &mut R,
    ) -> (Vec<PatchSpec>, PlanSummary) {
        let seeds: Vec<u64> = cases.iter().map(|_| rng.random()).collect();
        let per_case: Vec<(Vec<PatchSpec>, PlanSummary)> = cases
            .par_iter()
            .zip(seeds)
            .enumerate()
            .map(|(n, (case, seed))| {
                let mut s = PlanSummary::default();
                let specs = self.plan_case(n, case, &mut StdRng::seed_from_u64(seed), &mut s);
                (specs, s)
            })
            .collect();
        let mut all = Vec::new();
        let mut total = PlanSummary::default();
        for (specs, s) in per_case {
            all.extend(specs);
            total.positives += s.positives;
            total.shortfall += s.shortfall;
            for a in 0..3 {
                total.negatives[a] += s.negatives[a];
            }
        }
        if total.shortfall > 0 {
            tracing::warn!(shortfall = total.shortfall, "negatives without an acceptable centre");
        }
        all.shuffle(rng);
        (all, total)
    }

    /// Extracts the patch a spec names, with its targets.
    ///
    /// # Panics
    /// When `spec.case` is not an index into `cases` (programmer misuse).
    pub fn extract(&self, cases: &[Case], spec: &PatchSpec) -> Patch {
        extract_patch(
            &cases[spec.case],
            *spec,
            self.config.patch_size,
            self.config.dense,
            self.config.default_radius_mm,
        )
    }

    /// Extracts many patches in parallel.
    pub fn extract_many(&self, cases: &[Case], specs: &[PatchSpec]) -> Vec<Patch> {
        specs.par_iter().map(|s| self.extract(cases, s)).collect()
    }
}

/// Extracts a cubic patch of `size` around `spec.centre` from `case`, with
/// its label (an aneurysm centre inside the patch), location multi-hot,
/// dense target and normalised position.
pub fn extract_patch(case: &Case, spec: PatchSpec, size: usize, dense: DenseTarget, default_radius_mm: f64) -> Patch {
    let sz = [size; 3];
    let centre = spec.centre.to_kji();
    let start = patch_start(centre, sz);
    let image = extract_box(case.image.data(), start, sz);
    let spheres = case.finding_spheres(default_radius_mm);
    let mut label = 0.0;
    let mut locations = [0.0f32; 13];
    for (c, _, loc) in &spheres {
        let inside = (0..3).all(|a| {
            let x = c[a].round() as i64;
            x >= start[a] && x < start[a] + size as i64
        });
        if inside {
            label = 1.0;
            if let Some(l) = loc {
                locations[l.index()] = 1.0;
            }
        }
    }
    let balls: Vec<([f64; 3], f64)> = spheres.iter().map(|(c, r, _)| (*c, *r)).collect();
    let dense = render_dense(start, sz, &balls, case.spacing_kji(), dense);
    let first = case.normalised_position(start.map(|x| x as f64));
    let last = case.normalised_position(std::array::from_fn(|a| (start[a] + size as i64 - 1) as f64));
    Patch {
        image,
        dense,
        label,
        locations,
        position: std::array::from_fn(|a| [first[a] as f32, last[a] as f32]),
        vessels: case.vessel_labels().map(|v| extract_box(v.data(), start, sz)),
        spec,
    }
}

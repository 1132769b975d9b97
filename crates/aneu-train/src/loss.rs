//! Losses on logits, generic over the backend (and so differentiable
//! under autodiff). Each returns a one-element tensor.

use aneu_models::ModelOutput;
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, relu, sigmoid};

use crate::config::{ClassLoss, DenseLoss, LossConfig};

/// Element-wise binary cross-entropy with logits in the stable form
/// `max(x, 0) − x·y + log(1 + e^−|x|)`.
pub fn bce_elementwise<B: Backend, const D: usize>(logits: Tensor<B, D>, targets: Tensor<B, D>) -> Tensor<B, D> {
    relu(logits.clone()) - logits.clone() * targets + logits.abs().neg().exp().log1p()
}

/// Mean binary cross-entropy with logits.
pub fn bce_with_logits<B: Backend, const D: usize>(logits: Tensor<B, D>, targets: Tensor<B, D>) -> Tensor<B, 1> {
    bce_elementwise(logits, targets).mean()
}

/// Element-wise focal loss (Lin et al. 2017) with logits:
/// `α_t (1 − p_t)^γ · BCE`, `p_t = e^−BCE`, α on positives and 1 − α on
/// negatives.
pub fn focal_elementwise<B: Backend, const D: usize>(
    logits: Tensor<B, D>,
    targets: Tensor<B, D>,
    gamma: f64,
    alpha: f64,
) -> Tensor<B, D> {
    let ce = bce_elementwise(logits, targets.clone());
    let pt = ce.clone().neg().exp();
    let mod_factor = pt.neg().add_scalar(1.0).clamp_min(0.0).powf_scalar(gamma as f32);
    let alpha_t = targets.clone().mul_scalar(alpha) + targets.neg().add_scalar(1.0).mul_scalar(1.0 - alpha);
    alpha_t * mod_factor * ce
}

/// Mean focal loss with logits.
pub fn focal_with_logits<B: Backend, const D: usize>(
    logits: Tensor<B, D>,
    targets: Tensor<B, D>,
    gamma: f64,
    alpha: f64,
) -> Tensor<B, 1> {
    focal_elementwise(logits, targets, gamma, alpha).mean()
}

/// Soft Dice loss per patch, averaged: `1 − (2Σpt + ε) / (Σp + Σt + ε)`
/// with `p = σ(logits)`, ε = 1.
///
/// # Shapes
/// `[N, 1, D, H, W]` logits and targets.
pub fn soft_dice_loss<B: Backend>(logits: Tensor<B, 5>, targets: Tensor<B, 5>) -> Tensor<B, 1> {
    let [n, ..] = logits.dims();
    let p = sigmoid(logits).reshape([n as i32, -1]);
    let t = targets.reshape([n as i32, -1]);
    let inter = (p.clone() * t.clone()).sum_dim(1);
    let denom = p.sum_dim(1) + t.sum_dim(1);
    let dice = inter.mul_scalar(2.0).add_scalar(1.0) / denom.add_scalar(1.0);
    dice.neg().add_scalar(1.0).mean()
}

/// The vessel head's loss: the voxel-wise cross-entropy of vessel-label
/// logits `[N, classes, D, H, W]` against labels `[N, D, H, W]` (their
/// one-hot `[N, classes, D, H, W]` in `one_hot`), averaged over the voxels
/// of the samples that have labels (`has`, `[N]`: 1 or 0), plus the soft
/// Dice loss of the artery classes (1 and up; nnU-Net's pairing: the
/// cross-entropy alone settles on background, which is 97 % of the
/// voxels). 0 when no sample has labels.
pub fn vessel_loss<B: Backend>(
    logits: Tensor<B, 5>,
    labels: Tensor<B, 4, Int>,
    one_hot: Tensor<B, 5>,
    has: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let [n, c, d, h, w] = logits.dims();
    let denom = has.clone().sum().clamp_min(1.0);
    let logp = log_softmax(logits, 1);
    let picked = logp.clone().gather(1, labels.unsqueeze_dim::<5>(1));
    let per_sample = picked.reshape([n, d * h * w]).mean_dim(1).reshape([n]);
    let ce = (per_sample * has.clone()).sum().neg() / denom;
    if c < 2 {
        return ce;
    }
    // soft Dice per artery class over the labelled samples' voxels
    let weight = has.reshape([n, 1, 1]);
    let p = (logp.exp().reshape([n, c, d * h * w]) * weight.clone()).narrow(1, 1, c - 1);
    let t = (one_hot.reshape([n, c, d * h * w]) * weight).narrow(1, 1, c - 1);
    let inter = (p.clone() * t.clone()).sum_dim(2).sum_dim(0).reshape([c - 1]);
    let total = (p.sum_dim(2) + t.sum_dim(2)).sum_dim(0).reshape([c - 1]);
    let dice = inter.mul_scalar(2.0).add_scalar(1.0) / total.add_scalar(1.0);
    ce + dice.neg().add_scalar(1.0).mean()
}

/// The targets of a batch.
#[derive(Debug, Clone)]
pub struct Targets<B: Backend> {
    /// `[N, 1]` patch labels.
    pub labels: Tensor<B, 2>,
    /// `[N, 13]` location multi-hot.
    pub locations: Tensor<B, 2>,
    /// `[N, 1, D, H, W]` dense targets.
    pub dense: Tensor<B, 5>,
    /// The vessel labels, when one patch of the batch has them.
    pub vessels: Option<VesselTargets<B>>,
}

/// The vessel labels of a batch (a patch without labels has a map of
/// zeros and `has` 0).
#[derive(Debug, Clone)]
pub struct VesselTargets<B: Backend> {
    /// `[N, D, H, W]` labels (`aneu_io::VESSEL_LABELS`).
    pub labels: Tensor<B, 4, Int>,
    /// `[N, 14, D, H, W]` their one-hot.
    pub one_hot: Tensor<B, 5>,
    /// `[N]`: 1 for the patches that have labels.
    pub has: Tensor<B, 1>,
}

/// The configured total loss of a model output.
pub fn total_loss<B: Backend>(cfg: &LossConfig, out: ModelOutput<B>, t: &Targets<B>) -> Tensor<B, 1> {
    let mut loss = match cfg.classification {
        ClassLoss::Bce => bce_with_logits(out.logit, t.labels.clone()),
        ClassLoss::Focal { gamma, alpha } => focal_with_logits(out.logit, t.labels.clone(), gamma, alpha),
    }
    .mul_scalar(cfg.present_weight);
    if cfg.location_weight > 0.0
        && let Some(l) = out.locations
    {
        loss = loss + bce_with_logits(l, t.locations.clone()).mul_scalar(cfg.location_weight);
    }
    if cfg.dense_weight > 0.0
        && let Some(d) = out.dense
    {
        let g = cfg.dense_focal_gamma;
        let dense = match cfg.dense {
            DenseLoss::Bce => bce_with_logits(d, t.dense.clone()),
            DenseLoss::Dice => soft_dice_loss(d, t.dense.clone()),
            DenseLoss::FocalDice => {
                // α = 0.5 weighs both classes alike; Dice handles the imbalance
                focal_with_logits(d.clone(), t.dense.clone(), g, 0.5).mul_scalar(2.0)
                    + soft_dice_loss(d, t.dense.clone())
            }
            DenseLoss::BceDice => bce_with_logits(d.clone(), t.dense.clone()) + soft_dice_loss(d, t.dense.clone()),
        };
        loss = loss + dense.mul_scalar(cfg.dense_weight);
    }
    if cfg.vessel_weight > 0.0
        && let (Some(v), Some(vt)) = (out.vessels, &t.vessels)
    {
        let l = vessel_loss(v, vt.labels.clone(), vt.one_hot.clone(), vt.has.clone());
        loss = loss + l.mul_scalar(cfg.vessel_weight);
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    fn t(v: &[f32]) -> Tensor<B, 1> {
        Tensor::from_floats(v, &Default::default())
    }

    #[test]
    fn bce_and_focal_match_the_formulas() {
        let x = [-3.0f32, -0.5, 0.0, 0.7, 4.0];
        let y = [0.0f32, 1.0, 1.0, 0.0, 1.0];
        let got: Vec<f32> = bce_elementwise(t(&x), t(&y)).into_data().to_vec().unwrap();
        let fl: Vec<f32> = focal_elementwise(t(&x), t(&y), 2.0, 0.8).into_data().to_vec().unwrap();
        for n in 0..5 {
            let p = 1.0 / (1.0 + (-x[n] as f64).exp());
            let ce = -(y[n] as f64 * p.ln() + (1.0 - y[n] as f64) * (1.0 - p).ln());
            assert!((got[n] as f64 - ce).abs() < 1e-5, "bce {n}");
            let pt = if y[n] == 1.0 { p } else { 1.0 - p };
            let a = if y[n] == 1.0 { 0.8 } else { 0.2 };
            let want = a * (1.0 - pt).powi(2) * ce;
            assert!((fl[n] as f64 - want).abs() < 1e-5, "focal {n}: {} vs {want}", fl[n]);
        }
        // γ = 0, α = 0.5 is half the BCE
        let half: Vec<f32> = focal_elementwise(t(&x), t(&y), 0.0, 0.5).into_data().to_vec().unwrap();
        for n in 0..5 {
            assert!((half[n] - got[n] / 2.0).abs() < 1e-6);
        }
    }

    #[test]
    fn dice_is_zero_for_a_perfect_map_and_near_one_for_its_inverse() {
        let target = Tensor::<B, 1>::from_floats(
            [0.0f32, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0].as_slice(),
            &Default::default(),
        )
        .reshape([1, 1, 2, 2, 2]);
        let perfect = target.clone().mul_scalar(40.0).sub_scalar(20.0);
        let d: f32 = soft_dice_loss(perfect, target.clone()).into_scalar();
        assert!(d.abs() < 1e-6, "{d}");
        let inverse = target.clone().mul_scalar(-40.0).add_scalar(20.0);
        let d: f32 = soft_dice_loss(inverse, target).into_scalar();
        assert!(d > 0.74, "{d}"); // 1 − 1/4 with ε = 1
    }

    /// The vessel loss against its formula (cross-entropy plus the soft
    /// Dice of the artery classes), counting only the samples that have
    /// labels.
    #[test]
    fn vessel_loss_matches_the_formula() {
        let device = Default::default();
        // 2 samples, 3 classes, 1 × 1 × 2 voxels
        let logits: Vec<f32> = vec![2.0, -1.0, 0.5, 0.0, 1.0, 3.0, 0.1, 0.2, -2.0, 0.7, 0.3, 0.9];
        let x = Tensor::<B, 1>::from_floats(logits.as_slice(), &device).reshape([2, 3, 1, 1, 2]);
        let truth = [[2usize, 0], [1, 1]];
        let labels = Tensor::<B, 1, Int>::from_ints([2, 0, 1, 1], &device).reshape([2, 1, 1, 2]);
        let mut hot = vec![0f32; 12];
        for (n, row) in truth.iter().enumerate() {
            for (v, &c) in row.iter().enumerate() {
                hot[n * 6 + c * 2 + v] = 1.0;
            }
        }
        let one_hot = Tensor::<B, 1>::from_floats(hot.as_slice(), &device).reshape([2, 3, 1, 1, 2]);
        let prob = |n: usize, v: usize, c: usize| {
            let z: Vec<f64> = (0..3).map(|k| f64::from(logits[n * 6 + k * 2 + v])).collect();
            let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (z[c] - m).exp() / z.iter().map(|q| (q - m).exp()).sum::<f64>()
        };
        let want = |samples: &[usize]| {
            let voxels = samples.len() as f64 * 2.0;
            let ce = -samples
                .iter()
                .flat_map(|&n| (0..2).map(move |v| (n, v)))
                .map(|(n, v)| prob(n, v, truth[n][v]).ln())
                .sum::<f64>()
                / voxels;
            let dice: f64 = (1..3)
                .map(|c| {
                    let (mut inter, mut total) = (0.0, 0.0);
                    for &n in samples {
                        for (v, &label) in truth[n].iter().enumerate() {
                            let t = f64::from(u8::from(label == c));
                            inter += prob(n, v, c) * t;
                            total += prob(n, v, c) + t;
                        }
                    }
                    1.0 - (2.0 * inter + 1.0) / (total + 1.0)
                })
                .sum::<f64>()
                / 2.0;
            ce + dice
        };
        let got = |has: [f32; 2]| -> f64 {
            let l = vessel_loss(
                x.clone(),
                labels.clone(),
                one_hot.clone(),
                Tensor::from_floats(has, &device),
            );
            f64::from(l.into_scalar())
        };
        assert!(
            (got([1.0, 0.0]) - want(&[0])).abs() < 1e-5,
            "{} vs {}",
            got([1.0, 0.0]),
            want(&[0])
        );
        assert!((got([1.0, 1.0]) - want(&[0, 1])).abs() < 1e-5);
    }

    /// A U-Net with a vessel head, trained on [`vessel_loss`] alone,
    /// segments two tubes of one brightness by their side (what the
    /// artery labels ask of it): the head, the one-hot and the loss agree.
    #[test]
    fn a_vessel_head_learns_labels_by_side() {
        use aneu_models::{ModelConfig, PatchModel, UNet3dConfig};
        use burn::backend::Autodiff;
        use burn::optim::{AdamConfig, GradientsParams, Optimizer};
        type A = Autodiff<Flex>;
        let device = Default::default();
        let model = ModelConfig::UNet3d(
            UNet3dConfig::new()
                .with_depth(2)
                .with_base_filters(8)
                .with_max_filters(8)
                .with_head_hidden(4)
                .with_vessel_classes(Some(3)),
        );
        let mut model = model.init_seeded::<A>(5, &device).unwrap_or_else(|e| panic!("{e}"));
        // a tube along k at j = 2..4 on each side: label 1 left (i < 4), 2 right
        let n = 8usize;
        let label = |j: usize, i: usize| -> usize {
            match (j, i) {
                (2..=3, 1..=2) => 1,
                (2..=3, 5..=6) => 2,
                _ => 0,
            }
        };
        let (mut img, mut lab, mut hot) = (Vec::new(), Vec::new(), vec![0f32; 3 * n * n * n]);
        for k in 0..n {
            for j in 0..n {
                for i in 0..n {
                    let l = label(j, i);
                    img.push(if l > 0 { 1.0f32 } else { 0.0 });
                    lab.push(l as i64);
                    hot[(l * n + k) * n * n + j * n + i] = 1.0;
                }
            }
        }
        let x = Tensor::<A, 1>::from_floats(img.as_slice(), &device).reshape([1, 1, n, n, n]);
        let labels = Tensor::<A, 4, Int>::from_data(TensorData::new(lab.clone(), [1, n, n, n]), &device);
        let one_hot = Tensor::<A, 1>::from_floats(hot.as_slice(), &device).reshape([1, 3, n, n, n]);
        let has = Tensor::<A, 1>::from_floats([1.0f32], &device);
        let mut optim = AdamConfig::new().init();
        for _ in 0..80 {
            let v = model
                .forward_patches(x.clone())
                .vessels
                .unwrap_or_else(|| panic!("no vessel head"));
            let loss = vessel_loss(v, labels.clone(), one_hot.clone(), has.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        let v = model
            .forward_patches(x)
            .vessels
            .unwrap_or_else(|| panic!("no vessel head"));
        let predicted: Vec<i64> = v.argmax(1).into_data().convert::<i64>().to_vec().unwrap_or_default();
        for class in [1i64, 2] {
            let tp = predicted
                .iter()
                .zip(&lab)
                .filter(|(p, t)| **p == class && **t == class)
                .count();
            let both = predicted.iter().filter(|p| **p == class).count() + lab.iter().filter(|t| **t == class).count();
            let dice = 2.0 * tp as f64 / both as f64;
            assert!(dice > 0.9, "class {class}: Dice {dice}");
        }
    }
}

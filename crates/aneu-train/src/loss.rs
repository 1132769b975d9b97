//! Losses on logits, generic over the backend (and so differentiable
//! under autodiff). Each returns a one-element tensor.

use aneu_models::ModelOutput;
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};

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

/// The targets of a batch.
#[derive(Debug, Clone)]
pub struct Targets<B: Backend> {
    /// `[N, 1]` patch labels.
    pub labels: Tensor<B, 2>,
    /// `[N, 13]` location multi-hot.
    pub locations: Tensor<B, 2>,
    /// `[N, 1, D, H, W]` dense targets.
    pub dense: Tensor<B, 5>,
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
}

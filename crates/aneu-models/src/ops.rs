//! The 3D operations Burn 0.21 lacks, built once from ops it has (so they
//! run on every backend and differentiate through autodiff):
//! max and average pooling, global and adaptive pooling, and nearest and
//! trilinear upsampling.

use burn::prelude::*;
use burn::tensor::module::{avg_pool2d, max_pool2d};

/// 3D max pooling with `kernel` = stride, no padding, floor mode (trailing
/// voxels that do not fill a window are dropped, as PyTorch's default).
///
/// A `max_pool2d` over the `[N·C, D, H, W]` view pools H and W, then the
/// maximum over each group of `kernel[0]` slices pools D.
///
/// # Shapes
/// `[N, C, D, H, W]` → `[N, C, D / kd, H / kh, W / kw]`.
pub fn max_pool3d<B: Backend>(x: Tensor<B, 5>, kernel: [usize; 3]) -> Tensor<B, 5> {
    let (x, [n, c, od, oh, ow]) = crop_to_windows(x, kernel);
    let [kd, kh, kw] = kernel;
    let x = x.reshape([n * c, od * kd, oh * kh, ow * kw]);
    let x = max_pool2d(x, [kh, kw], [kh, kw], [0, 0], [1, 1], false);
    x.reshape([n * c, od, kd, oh, ow])
        .max_dim(2)
        .reshape([n, c, od, oh, ow])
}

/// 3D average pooling with `kernel` = stride, no padding, floor mode.
///
/// # Shapes
/// `[N, C, D, H, W]` → `[N, C, D / kd, H / kh, W / kw]`.
pub fn avg_pool3d<B: Backend>(x: Tensor<B, 5>, kernel: [usize; 3]) -> Tensor<B, 5> {
    let (x, [n, c, od, oh, ow]) = crop_to_windows(x, kernel);
    let [kd, kh, kw] = kernel;
    let x = x.reshape([n * c, od * kd, oh * kh, ow * kw]);
    let x = avg_pool2d(x, [kh, kw], [kh, kw], [0, 0], true, false);
    x.reshape([n * c, od, kd, oh, ow])
        .mean_dim(2)
        .reshape([n, c, od, oh, ow])
}

fn crop_to_windows<B: Backend>(x: Tensor<B, 5>, kernel: [usize; 3]) -> (Tensor<B, 5>, [usize; 5]) {
    assert!(
        kernel.iter().all(|k| *k > 0),
        "pooling kernel must be positive, got {kernel:?}"
    );
    let [n, c, d, h, w] = x.dims();
    let o = [d / kernel[0], h / kernel[1], w / kernel[2]];
    assert!(
        o.iter().all(|v| *v > 0),
        "input {:?} is smaller than the kernel {kernel:?}",
        [d, h, w]
    );
    let mut x = x;
    for (a, (&out, &k)) in o.iter().zip(&kernel).enumerate() {
        if out * k != [d, h, w][a] {
            x = x.narrow(a + 2, 0, out * k);
        }
    }
    (x, [n, c, o[0], o[1], o[2]])
}

/// Global average pooling over D, H and W.
///
/// # Shapes
/// `[N, C, D, H, W]` → `[N, C]`.
pub fn global_avg_pool3d<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 2> {
    let [n, c, ..] = x.dims();
    x.mean_dim(4).mean_dim(3).mean_dim(2).reshape([n, c])
}

/// Global max pooling over D, H and W.
///
/// # Shapes
/// `[N, C, D, H, W]` → `[N, C]`.
pub fn global_max_pool3d<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 2> {
    let [n, c, ..] = x.dims();
    x.max_dim(4).max_dim(3).max_dim(2).reshape([n, c])
}

/// Adaptive average pooling to `out` (PyTorch's bins: output `o` of an
/// axis of length `n` averages `[⌊o·n/out⌋, ⌈(o+1)·n/out⌉)`), one axis at a
/// time (a box mean is separable).
///
/// # Shapes
/// `[N, C, D, H, W]` → `[N, C, out[0], out[1], out[2]]`.
///
/// # Panics
/// When an output size is 0.
pub fn adaptive_avg_pool3d<B: Backend>(x: Tensor<B, 5>, out: [usize; 3]) -> Tensor<B, 5> {
    assert!(
        out.iter().all(|o| *o > 0),
        "adaptive pooling output must be positive, got {out:?}"
    );
    let mut x = x;
    for (a, &o) in out.iter().enumerate() {
        let dim = a + 2;
        let n = x.dims()[dim];
        if n == o {
            continue;
        }
        let parts: Vec<Tensor<B, 5>> = (0..o)
            .map(|i| {
                let lo = i * n / o;
                let hi = ((i + 1) * n).div_ceil(o);
                x.clone().narrow(dim, lo, hi - lo).mean_dim(dim)
            })
            .collect();
        x = Tensor::cat(parts, dim);
    }
    x
}

/// Nearest-neighbour upsampling by integer factors.
///
/// # Shapes
/// `[N, C, D, H, W]` → `[N, C, sd·D, sh·H, sw·W]`.
pub fn upsample_nearest3d<B: Backend>(x: Tensor<B, 5>, scale: [usize; 3]) -> Tensor<B, 5> {
    let [n, c, d, h, w] = x.dims();
    let [sd, sh, sw] = scale;
    x.reshape([n, c, d, 1, h, 1, w, 1])
        .expand([n, c, d, sd, h, sh, w, sw])
        .reshape([n, c, d * sd, h * sh, w * sw])
}

/// Trilinear upsampling by 2 along every axis, with PyTorch's
/// `align_corners = false` (half-pixel centres, border replicated): along
/// an axis, output `2i` is `¾·x[i] + ¼·x[i−1]` and `2i+1` is
/// `¾·x[i] + ¼·x[i+1]`.
///
/// # Shapes
/// `[N, C, D, H, W]` → `[N, C, 2D, 2H, 2W]`.
pub fn upsample_trilinear3d_x2<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 5> {
    let mut x = x;
    for dim in 2..5 {
        let dims = x.dims();
        let n = dims[dim];
        let (prev, next) = if n == 1 {
            (x.clone(), x.clone())
        } else {
            let first = x.clone().narrow(dim, 0, 1);
            let last = x.clone().narrow(dim, n - 1, 1);
            (
                Tensor::cat(vec![first, x.clone().narrow(dim, 0, n - 1)], dim),
                Tensor::cat(vec![x.clone().narrow(dim, 1, n - 1), last], dim),
            )
        };
        let even = x.clone().mul_scalar(0.75).add(prev.mul_scalar(0.25));
        let odd = x.mul_scalar(0.75).add(next.mul_scalar(0.25));
        let mut out_dims = dims;
        out_dims[dim] = 2 * n;
        x = Tensor::stack::<6>(vec![even, odd], dim + 1).reshape(out_dims);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    type B = Flex;
    type A = Autodiff<Flex>;

    fn input(dims: [usize; 5]) -> Vec<f32> {
        // distinct values, deterministic
        (0..dims.iter().product::<usize>())
            .map(|x| ((x * 7919) % 1013) as f32 * 0.01 - 3.0)
            .collect()
    }

    fn tensor<Bk: Backend>(v: &[f32], dims: [usize; 5]) -> Tensor<Bk, 5> {
        Tensor::<Bk, 1>::from_floats(v, &Default::default()).reshape(dims)
    }

    fn at(v: &[f32], dims: [usize; 5], idx: [usize; 5]) -> f32 {
        let mut o = 0;
        for a in 0..5 {
            o = o * dims[a] + idx[a];
        }
        v[o]
    }

    fn values<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn pooling_matches_naive_loops() {
        let dims = [2, 3, 5, 6, 7];
        let v = input(dims);
        let k = [2, 3, 2];
        let mx = values(max_pool3d(tensor::<B>(&v, dims), k));
        let av = values(avg_pool3d(tensor::<B>(&v, dims), k));
        let o = [2, 2, 3];
        let mut n = 0;
        for b in 0..2 {
            for c in 0..3 {
                for d in 0..o[0] {
                    for h in 0..o[1] {
                        for w in 0..o[2] {
                            let mut m = f32::NEG_INFINITY;
                            let mut s = 0.0;
                            for (kd, kh, kw) in itertools3(k) {
                                let x = at(&v, dims, [b, c, d * k[0] + kd, h * k[1] + kh, w * k[2] + kw]);
                                m = m.max(x);
                                s += x;
                            }
                            assert_eq!(mx[n], m);
                            assert!((av[n] - s / 12.0).abs() < 1e-5);
                            n += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(n, mx.len());
    }

    fn itertools3(k: [usize; 3]) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        for a in 0..k[0] {
            for b in 0..k[1] {
                for c in 0..k[2] {
                    out.push((a, b, c));
                }
            }
        }
        out
    }

    #[test]
    fn max_pool_gradient_goes_to_the_maxima() {
        let dims = [1, 2, 4, 4, 4];
        let v = input(dims);
        let x = tensor::<A>(&v, dims).require_grad();
        let y = max_pool3d(x.clone(), [2, 2, 2]);
        let grads = y.sum().backward();
        let g = values(x.grad(&grads).unwrap());
        // naive: 1 at each window's arg max, 0 elsewhere
        let mut want = vec![0.0f32; v.len()];
        for c in 0..2 {
            for d in 0..2 {
                for h in 0..2 {
                    for w in 0..2 {
                        let mut best = (f32::NEG_INFINITY, 0);
                        for (a, b, e) in itertools3([2, 2, 2]) {
                            let idx = [0, c, 2 * d + a, 2 * h + b, 2 * w + e];
                            let mut o = 0;
                            for t in 0..5 {
                                o = o * dims[t] + idx[t];
                            }
                            if v[o] > best.0 {
                                best = (v[o], o);
                            }
                        }
                        want[best.1] = 1.0;
                    }
                }
            }
        }
        assert_eq!(g, want);
    }

    #[test]
    fn avg_and_global_gradients() {
        let dims = [1, 1, 4, 4, 4];
        let x = tensor::<A>(&input(dims), dims).require_grad();
        let grads = avg_pool3d(x.clone(), [2, 2, 2]).sum().backward();
        assert!(values(x.grad(&grads).unwrap()).iter().all(|g| (g - 0.125).abs() < 1e-6));
        let x = tensor::<A>(&input(dims), dims).require_grad();
        let grads = global_avg_pool3d(x.clone()).sum().backward();
        assert!(
            values(x.grad(&grads).unwrap())
                .iter()
                .all(|g| (g - 1.0 / 64.0).abs() < 1e-7)
        );
    }

    #[test]
    fn adaptive_pooling_matches_pytorch_bins() {
        let dims = [1, 1, 5, 3, 7];
        let v = input(dims);
        let out = [2, 3, 3];
        let got = values(adaptive_avg_pool3d(tensor::<B>(&v, dims), out));
        let bins = |o: usize, n: usize, no: usize| (o * n / no, ((o + 1) * n).div_ceil(no));
        let mut idx = 0;
        for d in 0..2 {
            for h in 0..3 {
                for w in 0..3 {
                    let (d0, d1) = bins(d, 5, 2);
                    let (h0, h1) = bins(h, 3, 3);
                    let (w0, w1) = bins(w, 7, 3);
                    let mut s = 0.0;
                    let mut cnt = 0.0;
                    for a in d0..d1 {
                        for b in h0..h1 {
                            for c in w0..w1 {
                                s += at(&v, dims, [0, 0, a, b, c]);
                                cnt += 1.0;
                            }
                        }
                    }
                    assert!((got[idx] - s / cnt).abs() < 1e-5, "{d} {h} {w}");
                    idx += 1;
                }
            }
        }
    }

    #[test]
    fn upsampling_matches_naive_loops() {
        let dims = [1, 2, 3, 2, 4];
        let v = input(dims);
        let near = values(upsample_nearest3d(tensor::<B>(&v, dims), [2, 3, 1]));
        let mut n = 0;
        for c in 0..2 {
            for d in 0..6 {
                for h in 0..6 {
                    for w in 0..4 {
                        assert_eq!(near[n], at(&v, dims, [0, c, d / 2, h / 3, w]));
                        n += 1;
                    }
                }
            }
        }
        // trilinear, align_corners = false: source coordinate (o + 0.5) / 2 − 0.5, clamped
        let tri = values(upsample_trilinear3d_x2(tensor::<B>(&v, dims)));
        let lin = |o: usize, n: usize| {
            let s = ((o as f64 + 0.5) / 2.0 - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(n - 1);
            let i1 = (i0 + 1).min(n - 1);
            (i0, i1, s - i0 as f64)
        };
        let mut n = 0;
        for c in 0..2 {
            for d in 0..6 {
                for h in 0..4 {
                    for w in 0..8 {
                        let (a0, a1, ta) = lin(d, 3);
                        let (b0, b1, tb) = lin(h, 2);
                        let (e0, e1, te) = lin(w, 4);
                        let mut s = 0.0;
                        for (a, wa) in [(a0, 1.0 - ta), (a1, ta)] {
                            for (b, wb) in [(b0, 1.0 - tb), (b1, tb)] {
                                for (e, we) in [(e0, 1.0 - te), (e1, te)] {
                                    s += wa * wb * we * at(&v, dims, [0, c, a, b, e]) as f64;
                                }
                            }
                        }
                        assert!((tri[n] as f64 - s).abs() < 1e-4, "{c} {d} {h} {w}: {} vs {s}", tri[n]);
                        n += 1;
                    }
                }
            }
        }
    }
}

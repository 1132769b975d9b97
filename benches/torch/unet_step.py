"""PyTorch's side of `benches/train_step.rs`: the same UNet3d (strided-conv
encoder, transposed-conv decoder, instance norm with affine, ReLU, a 1x1x1
dense head and the pooled 14-logit head), the same training step (forward,
backward of the mean of every output, Adam) and the same layers alone, on
the CPU with as many threads as aneu uses.

    pip install torch==2.15.0
    python3 benches/torch/unet_step.py [--threads 2] [--reps 5] [--large]

Reference for benchmarks only: nothing in aneu depends on PyTorch.
"""

import argparse
import time

import torch
from torch import nn
import torch.nn.functional as F

from aneu_unet import UNet3d


def median_ms(reps, f):
    f()
    t = []
    for _ in range(max(reps, 1)):
        s = time.perf_counter()
        f()
        t.append((time.perf_counter() - s) * 1e3)
    t.sort()
    return t[len(t) // 2]


def network(name, model, size, batch, reps):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, model.encoder[0].conv1.in_channels, size, size, size)

    def step():
        opt.zero_grad(set_to_none=True)
        dense, head = model(x)
        loss = head[:, :1].mean() + dense.mean() + head[:, 1:].mean()
        loss.backward()
        opt.step()

    ms_step = median_ms(reps, step)
    with torch.no_grad():
        ms_fwd = median_ms(reps, lambda: model(x))
    print(f"| {name} | {size}³ × {batch} | {ms_step:.0f} | {ms_fwd:.0f} |")


def layer(name, count, reps, mod, shape, extra=None):
    x = torch.randn(*shape)
    xg = x.clone().requires_grad_(True)
    run = (lambda t: mod(t)) if extra is None else (lambda t: mod(t, extra))
    with torch.no_grad():
        fwd = median_ms(reps, lambda: run(xg))
    both = median_ms(reps, lambda: run(xg).sum().backward())

    def params_only():
        y = run(x)
        if y.requires_grad:
            y.sum().backward()

    params = median_ms(reps, params_only)
    print(f"| {name} | {list(shape)} | {count} | {fwd:.1f} | {both - fwd:.1f} | {max(params - fwd, 0):.1f} | {both * count:.0f} |")


def layers(reps):
    b = 8
    print("\n| layer (ci_dense, batch 8) | input | per step | forward ms | backward ms | of which parameters ms | step total ms |")
    print("|---|---|---|---|---|---|---|")
    for cin, cout, n, count in [(4, 8, 24, 1), (8, 8, 24, 2), (16, 8, 24, 1), (16, 16, 12, 2), (32, 16, 12, 1), (32, 32, 6, 1)]:
        layer(f"conv3d 3³ s1 {cin}→{cout}", count, reps, nn.Conv3d(cin, cout, 3, padding=1), (b, cin, n, n, n))
    for cin, cout, n in [(8, 16, 24), (16, 32, 12)]:
        layer(f"conv3d 3³ s2 {cin}→{cout}", 1, reps, nn.Conv3d(cin, cout, 3, stride=2, padding=1), (b, cin, n, n, n))
    for cin, cout, n in [(32, 16, 6), (16, 8, 12)]:
        layer(f"conv_transpose3d 2³ s2 {cin}→{cout}", 1, reps, nn.ConvTranspose3d(cin, cout, 2, stride=2), (b, cin, n, n, n))
    for c, n, count in [(8, 24, 4), (16, 12, 4), (32, 6, 2)]:
        layer(f"instance norm {c}", count, reps, nn.InstanceNorm3d(c, affine=True), (b, c, n, n, n))
        layer(f"relu {c}", count, reps, F.relu, (b, c, n, n, n))
    for c, n in [(16, 12), (8, 24)]:
        skip = torch.randn(b, c, n, n, n, requires_grad=True)
        layer(f"cat {c}+{c}", 1, reps, lambda x, s: torch.cat([x, s], 1), (b, c, n, n, n), skip)
    layer("conv3d 1³ 8→1 (dense head)", 1, reps, nn.Conv3d(8, 1, 1), (b, 8, 24, 24, 24))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--large", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    print(f"PyTorch {torch.__version__} on {torch.get_num_threads()} threads\n")
    print("| network | input | training step ms | forward ms |")
    print("|---|---|---|---|")
    network("ci_dense UNet3d", UNet3d(in_channels=4, depth=3, base_filters=8, max_filters=32, head_hidden=16), 24, 8, a.reps)
    network("default UNet3d", UNet3d(), 32, 2, a.reps)
    if a.large:
        network("default UNet3d", UNet3d(), 64, 2, min(a.reps, 3))
    layers(a.reps)


if __name__ == "__main__":
    main()

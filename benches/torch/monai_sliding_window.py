"""aneu's UNet3d in PyTorch, through MONAI's sliding-window inference.

The reference for aneu's GPU sliding window (docs/benchmarks.md, "GPU"):
the same network as `aneu_models::UNet3d` (conv-norm-ReLU blocks with
instance norm, residual 1x1x1 projections, strided-conv downsampling,
transposed-conv upsampling, a 1x1x1 dense head and the pooled 14-output
head), the same volume shape, window, overlap, batch and Gaussian blending
(sigma scale 0.125) as `examples/device_bench.rs` used, whose JSON this
script reads. Weights are random: the timing does not depend on them.

    python3 benches/torch/monai_sliding_window.py --bench bench.json --out monai.json

Timed, each as the median of --repeats runs after two warm-ups:
  * host_f32: the volume starts on the host and the map comes back to it
    (what aneu's `Predictor::probability_map` does), float32;
  * device_f32: the volume is already on the GPU and the map stays there;
  * host_amp: as host_f32 under torch.autocast(float16);
each with cudnn.benchmark on (nnU-Net's setting). MONAI runs every tile
(it has no mask restriction), so the fair aneu figure is its all-tiles map.
"""

import argparse
import json
import time

import torch
from torch import nn
from monai.inferers import sliding_window_inference


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, stride, residual):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride, 1)
        self.norm1 = nn.InstanceNorm3d(cout, affine=True)
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1)
        self.norm2 = nn.InstanceNorm3d(cout, affine=True)
        self.residual = residual
        self.skip = nn.Conv3d(cin, cout, 1, stride) if residual and (cin != cout or stride != 1) else None

    def forward(self, x):
        h = torch.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        if self.residual:
            return torch.relu(h + (self.skip(x) if self.skip is not None else x))
        return torch.relu(h)


class UNet3d(nn.Module):
    """aneu_models::UNet3d; forward returns the dense logits."""

    def __init__(self, in_channels=4, depth=4, base_filters=16, max_filters=320, residual=True, head_hidden=64):
        super().__init__()
        f = [min(base_filters << l, max_filters) for l in range(depth)]
        self.encoder = nn.ModuleList(
            ConvBlock(in_channels if l == 0 else f[l - 1], f[l], 1 if l == 0 else 2, residual) for l in range(depth)
        )
        self.ups = nn.ModuleList(nn.ConvTranspose3d(f[l + 1], f[l], 2, 2) for l in reversed(range(depth - 1)))
        self.decoder = nn.ModuleList(ConvBlock(2 * f[l], f[l], 1, residual) for l in reversed(range(depth - 1)))
        self.dense_head = nn.Conv3d(f[0], 1, 1)
        self.hidden = nn.Linear(2 * sum(f), head_hidden)
        self.out = nn.Linear(head_hidden, 14)

    def forward(self, x):
        skips = []
        h = x
        for n, e in enumerate(self.encoder):
            h = e(h)
            if n + 1 < len(self.encoder):
                skips.append(h)
        pooled = [h.mean((2, 3, 4)), h.amax((2, 3, 4))]
        for u, d, s in zip(self.ups, self.decoder, reversed(skips)):
            h = d(torch.cat([u(h), s], 1))
            pooled += [h.mean((2, 3, 4)), h.amax((2, 3, 4))]
        dense = self.dense_head(h)
        # the 14-output head runs as in aneu (its result is not used here)
        self.last_head = self.out(torch.relu(self.hidden(torch.cat(pooled, 1))))
        return dense


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", help="device_bench's JSON (its grid sets the shape, window and batch)")
    ap.add_argument("--shape", type=int, nargs=3, help="the volume (k j i) when there is no --bench")
    ap.add_argument("--roi", type=int, default=64)
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    if a.bench:
        g = json.load(open(a.bench))["chain"]["grid"]
    else:
        g = {"preprocessed_shape_kji": a.shape, "roi": a.roi, "overlap": a.overlap, "batch": a.batch, "in_channels": 4}
    shape = g["preprocessed_shape_kji"]
    roi, overlap, batch, cin = g["roi"], g["overlap"], g["batch"], g["in_channels"]
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    net = UNet3d(in_channels=cin).to(dev).eval()
    vol = torch.randn(1, cin, *shape)

    def run(x, amp):
        with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=amp):
            y = sliding_window_inference(
                x.to(dev), (roi,) * 3, batch, net, overlap=overlap, mode="gaussian", sigma_scale=0.125,
                sw_device=dev, device=dev,
            )
            y = torch.sigmoid(y.float())
            return y

    results = {"shape_kji": shape, "roi": roi, "overlap": overlap, "batch": batch, "in_channels": cin,
               "torch": torch.__version__, "gpu": torch.cuda.get_device_name()}
    import monai
    results["monai"] = monai.__version__
    vol_dev = vol.to(dev)
    cases = {
        "host_f32": (lambda: run(vol, False).cpu()),
        "device_f32": (lambda: run(vol_dev, False)),
        "host_amp": (lambda: run(vol, True).cpu()),
    }
    for name, f in cases.items():
        torch.cuda.reset_peak_memory_stats()
        for _ in range(2):
            f()
        torch.cuda.synchronize()
        ts = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            f()
            torch.cuda.synchronize()
            ts.append(time.perf_counter() - t)
        ts.sort()
        results[name] = {"median_s": ts[len(ts) // 2], "all_s": ts,
                         "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
        print(name, results[name], flush=True)
    json.dump(results, open(a.out, "w"), indent=2)


if __name__ == "__main__":
    main()

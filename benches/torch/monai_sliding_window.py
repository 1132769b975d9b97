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

from aneu_unet import UNet3d


class DenseOnly(nn.Module):
    """The network as MONAI's inferer wants it: the dense logits only (the
    14-output head still runs, as in aneu)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[0]


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
    net = DenseOnly(UNet3d(in_channels=cin, residual=True)).to(dev).eval()
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

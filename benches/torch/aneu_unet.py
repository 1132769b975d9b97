"""aneu_models::UNet3d in PyTorch, layer for layer (crates/aneu-models/src/nets.rs):
conv-norm-ReLU blocks with instance norm (affine), optional residual 1x1x1
projections, strided-conv downsampling, transposed-conv upsampling, a 1x1x1
dense head and the 14-output head on the average- and max-pooled features
of the bottleneck and of every decoder level. The benchmark scripts beside
this file import it; nothing in aneu depends on PyTorch."""

import torch
from torch import nn


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, stride, residual=False):
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
    """aneu_models::UNet3d; forward returns (dense logits, the 14 head logits)."""

    def __init__(self, in_channels=1, depth=4, base_filters=16, max_filters=320, residual=False, head_hidden=64):
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
        return dense, self.out(torch.relu(self.hidden(torch.cat(pooled, 1))))

"""Paired comparison of the artery maps of two `benchmark_detection` runs on the same phantoms.

Two runs with the same `--seed` and `--n` hold the same phantoms, so their
artery maps (`<uid>_arteries.nii.gz`) can be paired: this compares, for
example, one bundle with and without its artery labeller. Per scan it
recomputes the benchmark's artery Dice (the mean over the arteries the
phantom's segmentation holds of each artery's Dice) and vessel Dice (any
artery against background), the segmentation put on the map's grid by
nearest neighbour in world space as `aneu_preproc::labels_on_grid` does; then
the paired bootstrap interval of each difference (the same resampled scans
for both runs; 1000 resamples), per modality and overall, and each artery's
mean Dice with its paired interval. The point figures equal the tool's own `benchmark.md`.

    pip install numpy nibabel
    python benches/analysis/paired_dice.py --a runs/bench_a --b runs/bench_b --label-a A --label-b B
"""
import argparse
import os

import nibabel as nib
import numpy as np


def on_grid(seg, ref):
    """The segmentation `seg` on the grid of the image `ref` (nearest neighbour, world space)."""
    shape = ref.shape
    ijk = np.indices(shape).reshape(3, -1)
    world = ref.affine @ np.vstack([ijk, np.ones(ijk.shape[1])])
    src = np.rint(np.linalg.inv(seg.affine) @ world)[:3].astype(int)
    data = np.asarray(seg.dataobj)
    inside = np.all((src >= 0) & (src < np.array(data.shape)[:, None]), axis=0)
    out = np.zeros(ijk.shape[1], np.uint8)
    out[inside] = data[src[0, inside], src[1, inside], src[2, inside]]
    return out.reshape(shape)


def scores(pred, truth):
    """Per artery the Dice of the arteries `truth` holds, and the vessel Dice."""
    arteries = {}
    for label in range(1, 14):
        t = truth == label
        if t.any():
            p = pred == label
            arteries[label] = 2 * (p & t).sum() / (p.sum() + t.sum())
    p, t = pred > 0, truth > 0
    return arteries, 2 * (p & t).sum() / (p.sum() + t.sum())


def interval(x, rng):
    means = [x[rng.integers(0, len(x), len(x))].mean() for _ in range(1000)]
    return x.mean(), np.percentile(means, 2.5), np.percentile(means, 97.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--label-a", required=True)
    ap.add_argument("--label-b", required=True)
    args = ap.parse_args()
    rows = []
    for mod in ["MRA", "CTA"]:
        segs = f"{args.a}/phantoms/{mod}/segmentations"
        for uid in sorted(os.listdir(segs)):
            a = nib.load(f"{args.a}/predictions/{args.label_a}/{mod}/{uid}_arteries.nii.gz")
            b = nib.load(f"{args.b}/predictions/{args.label_b}/{mod}/{uid}_arteries.nii.gz")
            truth = on_grid(nib.load(f"{segs}/{uid}/{uid}_cowseg.nii.gz"), a)
            rows.append((mod, scores(np.asarray(a.dataobj), truth), scores(np.asarray(b.dataobj), truth)))
    rng = np.random.default_rng(0)
    for name, pick in [("artery Dice", lambda s: np.mean(list(s[0].values()))), ("vessel Dice", lambda s: s[1])]:
        for mod in ["MRA", "CTA", None]:
            sel = [r for r in rows if mod is None or r[0] == mod]
            a = np.array([pick(r[1]) for r in sel])
            b = np.array([pick(r[2]) for r in sel])
            d = interval(b - a, rng)
            print(f"{name} {mod or 'all'} ({len(sel)} scans): {a.mean():.3f} -> {b.mean():.3f}, "
                  f"paired {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]")
    for label in range(1, 14):
        held = [r for r in rows if label in r[1][0]]  # the scans whose phantom holds the artery
        a = np.array([r[1][0][label] for r in held])
        b = np.array([r[2][0][label] for r in held])
        d = interval(b - a, rng)
        print(f"label {label}: {a.mean():.3f} -> {b.mean():.3f} ({len(held)} scans), "
              f"paired {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]")


if __name__ == "__main__":
    main()

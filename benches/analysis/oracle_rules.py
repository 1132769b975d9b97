"""Oracle ceilings of the cheap candidate rules (issue 22, part 2; issue 23, part 5).

Reads a `benchmark_detection` output folder (its phantoms' ground truth and one
bundle's predictions) and places every candidate against the phantom's TRUE
vessels: inside the vessel tree or not (`vessels.nii.gz`, domes included), and
inside the parent lumen or not (the same without `aneurysms.nii.gz`). It then
scores scans by their highest remaining candidate under each rule:

* none: the bundle as it is;
* in vessel: drop candidates more than 1 mm outside the vessel tree (the
  vessel-mask filter);
* off parent lumen: drop candidates inside the parent vessel's lumen (deeper
  than 0.5 mm), i.e. keep those on the wall or beyond it;
* a bulge: both.

The masks are the truth, so each figure is a ceiling: what the rule gives with a
perfect vessel segmentation, not what aneu does. Scan AUCs come with 95 %
bootstrap intervals over scans, and the differences against "none" with the
paired bootstrap (the same resampled scans for both).

    pip install numpy scipy nibabel
    python benches/analysis/oracle_rules.py --bench runs/bench --label unet-vessels-mra-cta
"""

import argparse
import glob
import json
import math

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from scan_auc import auc


def candidates(bench, label):
    rows = []
    for mod in ["MRA", "CTA"]:
        for f in sorted(glob.glob(f"{bench}/predictions/{label}/{mod}/*.json")):
            p = json.load(open(f))
            if "series_uid" not in p:
                continue
            d = f"{bench}/phantoms/{mod}/ground_truth/{p['series_uid']}"
            truth = json.load(open(f"{d}/truth.json"))
            im = nib.load(f"{d}/vessels.nii.gz")
            vessels = np.asarray(im.dataobj) > 0
            parent = vessels & ~(np.asarray(nib.load(f"{d}/aneurysms.nii.gz").dataobj) > 0)
            # the phantoms' grids are axis-aligned: the spacing is the diagonal
            assert np.allclose(im.affine[:3, :3], np.diag(np.diag(im.affine)[:3])), f"{d}: an oblique grid"
            sp = np.abs(np.diag(im.affine)[:3])
            # signed depth: > 0 inside, < 0 outside (mm)
            depth = ndi.distance_transform_edt(vessels, sampling=sp) - ndi.distance_transform_edt(~vessels, sampling=sp)
            pdepth = ndi.distance_transform_edt(parent, sampling=sp) - ndi.distance_transform_edt(~parent, sampling=sp)
            inv = np.linalg.inv(im.affine)
            scan = dict(uid=p["series_uid"], modality=mod, positive=bool(truth["aneurysms"]), cands=[])
            for c in p["candidates"]:
                w = np.array([c["world"]["x"], c["world"]["y"], c["world"]["z"], 1.0])
                ijk = tuple(np.clip(np.rint((inv @ w)[:3]).astype(int), 0, np.array(vessels.shape) - 1))
                hit = any(
                    math.dist(w[:3], [a["centre_world"][k] for k in "xyz"]) <= max(a["radius_mm"], 2.0)
                    for a in truth["aneurysms"]
                )
                scan["cands"].append(dict(score=c["score"], hit=hit, depth=depth[ijk], pdepth=pdepth[ijk]))
            rows.append(scan)
    return rows


RULES = {
    "none": lambda c: True,
    "in vessel (≤ 1 mm outside)": lambda c: c["depth"] > -1.0,
    "off parent lumen": lambda c: c["pdepth"] < -0.5,
    "a bulge (both)": lambda c: c["depth"] > -1.0 and c["pdepth"] < -0.5,
}


def scan_scores(scans, rule):
    return np.array([max([c["score"] for c in s["cands"] if rule(c)] + [0.0]) for s in scans])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--label", required=True, help="the bundle's label (its folder under predictions/)")
    ap.add_argument("--resamples", type=int, default=1000)
    a = ap.parse_args()
    scans = candidates(a.bench, a.label)
    y = np.array([s["positive"] for s in scans])
    rng = np.random.default_rng(0)
    boots = [rng.integers(0, len(scans), len(scans)) for _ in range(a.resamples)]
    base = scan_scores(scans, RULES["none"])
    strong = 0.99
    print(f"{len(scans)} scans ({y.sum()} positive), bundle {a.label}; ceilings with the TRUE vessel masks\n")
    print("| rule | scan AUC | Δ against none (paired) | hits kept | false candidates ≥ 0.99 kept |")
    print("|---|---|---|---|---|")
    for name, rule in RULES.items():
        s = scan_scores(scans, rule)
        est = auc(y, s)
        bs = np.array([auc(y[b], s[b]) for b in boots])
        ds = np.array([auc(y[b], s[b]) - auc(y[b], base[b]) for b in boots])
        lo, hi = np.nanpercentile(bs, [2.5, 97.5])
        dlo, dhi = np.nanpercentile(ds, [2.5, 97.5])
        hits = sum(c["hit"] and rule(c) for x in scans for c in x["cands"])
        all_hits = sum(c["hit"] for x in scans for c in x["cands"])
        fps = sum((not c["hit"]) and c["score"] >= strong and rule(c) for x in scans for c in x["cands"])
        all_fps = sum((not c["hit"]) and c["score"] >= strong for x in scans for c in x["cands"])
        print(
            f"| {name} | {est:.3f} [{lo:.3f}, {hi:.3f}] | {est - auc(y, base):+.3f} [{dlo:+.3f}, {dhi:+.3f}] "
            f"| {hits} of {all_hits} | {fps} of {all_fps} |"
        )


if __name__ == "__main__":
    main()

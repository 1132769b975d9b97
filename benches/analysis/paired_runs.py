"""Paired comparison of two `benchmark_detection` runs on the same phantoms.

`benchmark_detection` pairs the bundles of one run. Two runs with the same
`--seed` and `--n` hold the same phantoms, so their predictions can be paired
too: this compares, for example, one bundle under two inference configs (a
candidate option that the tool applies to every bundle of a run). It recomputes
the scan AUC, the mean location AUC (over the columns that hold both classes),
the RSNA weighted AUC, the FROC sensitivity at 0.5, 1 and 2 false positives per scan
(aneu_metrics::froc's rules: a candidate hits an aneurysm within
max(radius, 2 mm) of its centre, the best-scoring hit counts, every other
candidate is a false positive) and the median localisation error, per modality
and overall, and the paired bootstrap interval of each difference (the same
resampled scans for both runs; 1000 resamples). The point figures equal the
tool's own `benchmark.md`; the intervals differ from its by the random draws.

    pip install numpy
    python benches/analysis/paired_runs.py --a runs/bench_a --b runs/bench_b --label unet-vessels-mra-cta

Two options re-read a run's predictions. `--smoothing-a L` / `--smoothing-b L`
recompute that run's 13 scan location probabilities from its saved candidates
with location smoothing L (`aneu_infer::scan_locations`: the best candidate's
`score · ((1 − L) q + L / 13)`, `Aneurysm Present` everywhere when no candidate
has locations), so one run pairs with itself under two smoothings. `--not-in R`
/ `--only-in R` keep the series that another run's predictions (same label)
do not / do hold: a run of `--n 120` holds the phantoms of a run of `--n 60`
with the same seed, so this splits it into those scans and the fresh ones.
"""

import argparse
import glob
import json
import math

import numpy as np

from scan_auc import auc

RATES = [0.5, 1.0, 2.0]
# the 13 location columns in RSNA order (aneu_io::Location::ALL)
LOCATIONS = [
    "Left Infraclinoid Internal Carotid Artery", "Right Infraclinoid Internal Carotid Artery",
    "Left Supraclinoid Internal Carotid Artery", "Right Supraclinoid Internal Carotid Artery",
    "Left Middle Cerebral Artery", "Right Middle Cerebral Artery", "Anterior Communicating Artery",
    "Left Anterior Cerebral Artery", "Right Anterior Cerebral Artery", "Left Posterior Communicating Artery",
    "Right Posterior Communicating Artery", "Basilar Tip", "Other Posterior Circulation",
]


def load(bench, label, smoothing=None):
    """Per series: (modality, positive, scan score, lesion best scores, FP scores, errors), the
    scan locations recomputed with `smoothing` when it is given."""
    scans = {}
    for mod in ["MRA", "CTA"]:
        for f in sorted(glob.glob(f"{bench}/predictions/{label}/{mod}/*.json")):
            p = json.load(open(f))
            if "series_uid" not in p:
                continue
            truth = json.load(open(f"{bench}/phantoms/{mod}/ground_truth/{p['series_uid']}/truth.json"))
            lesions = [([a["centre_world"][k] for k in "xyz"], a["radius_mm"]) for a in truth["aneurysms"]]
            best = [None] * len(lesions)
            fps = []
            for c in p["candidates"]:
                w = [c["world"][k] for k in "xyz"]
                hit = False
                for n, (centre, r) in enumerate(lesions):
                    d = math.dist(w, centre)
                    if d <= max(r, 2.0):
                        hit = True
                        if best[n] is None or c["score"] > best[n][0]:
                            best[n] = (c["score"], d)
                if not hit:
                    fps.append(c["score"])
            scans[p["series_uid"]] = dict(
                modality=mod,
                positive=bool(lesions),
                score=p["aneurysm_present"],
                lesions=len(lesions),
                best=[b[0] for b in best if b is not None],
                fps=fps,
                errors=[b[1] for b in best if b is not None],
                truth_locations=[name in {a["location"] for a in truth["aneurysms"]} for name in LOCATIONS],
                locations=p["locations"] if smoothing is None else smoothed_locations(p, smoothing),
            )
    return scans


def series_in(bench, label):
    """The series a run's predictions hold (without reading their truth)."""
    return {
        p["series_uid"]
        for mod in ["MRA", "CTA"]
        for p in map(lambda f: json.load(open(f)), glob.glob(f"{bench}/predictions/{label}/{mod}/*.json"))
        if "series_uid" in p
    }


def smoothed_locations(prediction, smoothing):
    """aneu_infer::scan_locations on a saved prediction's candidates."""
    located = [c for c in prediction["candidates"] if c.get("locations")]
    if not located:
        return [prediction["aneurysm_present"]] * len(LOCATIONS)
    return [
        max(c["score"] * ((1 - smoothing) * c["locations"][n] + smoothing / len(LOCATIONS)) for c in located)
        for n in range(len(LOCATIONS))
    ]


def sensitivities(scans):
    lesions = sum(s["lesions"] for s in scans)
    if lesions == 0:
        return [float("nan")] * len(RATES)
    events = sorted(
        [(v, True) for s in scans for v in s["best"]] + [(v, False) for s in scans for v in s["fps"]],
        key=lambda e: -e[0],
    )
    tp = fp = 0
    curve = []
    for n, (score, det) in enumerate(events):
        tp += det
        fp += not det
        if n + 1 == len(events) or events[n + 1][0] != score:
            curve.append((fp / len(scans), tp / lesions))
    return [max([s for f, s in curve if f <= r], default=0.0) for r in RATES]


def location_aucs(scans):
    """Each location column's AUC, NaN where the scans hold one class only."""
    out = []
    for n in range(len(LOCATIONS)):
        y = [s["truth_locations"][n] for s in scans]
        out.append(auc(y, [s["locations"][n] for s in scans]) if 0 < sum(y) < len(y) else float("nan"))
    return np.array(out)


def figures(scans):
    errors = sorted(e for s in scans for e in s["errors"])
    present = auc([s["positive"] for s in scans], [s["score"] for s in scans])
    locs = location_aucs(scans)
    defined = locs[np.isfinite(locs)]
    # aneu_metrics::rsna_weighted_auc: weight 13 for Aneurysm Present, 1 per defined location
    rsna = (13 * present + defined.sum()) / (13 + len(defined))
    return [present, *sensitivities(scans), float(np.median(errors)) if errors else float("nan"),
            float(defined.mean()) if len(defined) else float("nan"), rsna]


NAMES = ["scan AUC", *[f"sensitivity at {r:g} FP/scan" for r in RATES], "median localisation error (mm)",
         "mean location AUC", "RSNA weighted AUC"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="the baseline run's folder")
    ap.add_argument("--b", required=True, help="the other run's folder")
    ap.add_argument("--label", required=True, help="the bundle's label in both runs")
    ap.add_argument("--label-b", help="its label in the other run, when it differs")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--smoothing-a", type=float, help="recompute a's scan locations with this smoothing")
    ap.add_argument("--smoothing-b", type=float, help="recompute b's scan locations with this smoothing")
    subset = ap.add_mutually_exclusive_group()
    subset.add_argument("--not-in", help="keep the series this other run does not hold")
    subset.add_argument("--only-in", help="keep the series this other run holds")
    args = ap.parse_args()
    a = load(args.a, args.label, args.smoothing_a)
    b = load(args.b, args.label_b or args.label, args.smoothing_b)
    assert a.keys() == b.keys(), "the runs hold different series: not the same phantoms"
    if args.not_in or args.only_in:
        other = series_in(args.not_in or args.only_in, args.label)
        keep = {u for u in a if (u in other) == bool(args.only_in)}
        assert keep, "no series left"
        a = {u: v for u, v in a.items() if u in keep}
        b = {u: v for u, v in b.items() if u in keep}
    rng = np.random.default_rng(0)
    print(f"b = {args.b}, a = {args.a}; Δ = b − a with its paired 95 % bootstrap interval\n")
    print("| modality | scans | figure | a | b | Δ |")
    print("|---|---|---|---|---|---|")
    for mod in ["MRA", "CTA", "all"]:
        uids = [u for u in sorted(a) if mod == "all" or a[u]["modality"] == mod]
        fa = figures([a[u] for u in uids])
        fb = figures([b[u] for u in uids])
        draws = []
        for _ in range(args.resamples):
            idx = rng.integers(0, len(uids), len(uids))
            sa = [a[uids[i]] for i in idx]
            sb = [b[uids[i]] for i in idx]
            draws.append(np.array(figures(sb)) - np.array(figures(sa)))
        draws = np.array(draws)
        for k, name in enumerate(NAMES):
            d = draws[:, k][np.isfinite(draws[:, k])]
            lo, hi = (np.percentile(d, [2.5, 97.5]) if len(d) else (float("nan"),) * 2)
            print(f"| {mod} | {len(uids)} | {name} | {fa[k]:.3f} | {fb[k]:.3f} | {fb[k] - fa[k]:+.3f} [{lo:+.3f}, {hi:+.3f}] |")


if __name__ == "__main__":
    main()

"""scikit-learn reference values for aneu-metrics (tests/metrics.rs).

    ../.venv-refs/bin/pip install scikit-learn==1.9.1
    ../.venv-refs/bin/python tests/data/metrics/make_sklearn_fixtures.py > tests/data/metrics/sklearn.json

Infinite thresholds are written as the string "inf".
"""
import json
import numpy as np
import sklearn
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                             confusion_matrix, fbeta_score, matthews_corrcoef, precision_recall_curve,
                             precision_score, recall_score, roc_auc_score, roc_curve)

rng = np.random.default_rng(20261122)


def case(name, y, s, t=0.5):
    y = np.asarray(y, dtype=int)
    s = np.asarray(s, dtype=float)
    p = (s >= t).astype(int)
    out = {"name": name, "labels": y.tolist(), "scores": s.tolist(), "threshold": t}
    tn, fp, fn, tp = confusion_matrix(y, p, labels=[0, 1]).ravel()
    out["confusion"] = {"tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)}
    out["accuracy"] = accuracy_score(y, p)
    out["recall"] = recall_score(y, p, zero_division=0)
    out["precision"] = precision_score(y, p, zero_division=0)
    out["f1"] = fbeta_score(y, p, beta=1, zero_division=0)
    out["f2"] = fbeta_score(y, p, beta=2, zero_division=0)
    out["mcc"] = matthews_corrcoef(y, p)
    out["balanced_accuracy"] = balanced_accuracy_score(y, p)
    if 0 < y.sum() < len(y):
        out["auc"] = roc_auc_score(y, s)
        fpr, tpr, thr = roc_curve(y, s)
        out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                      "thresholds": ["inf" if np.isinf(v) else float(v) for v in thr]}
        fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
        out["roc_full"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                           "thresholds": ["inf" if np.isinf(v) else float(v) for v in thr]}
    if y.sum() > 0:
        out["ap"] = average_precision_score(y, s)
        pr, rc, thr = precision_recall_curve(y, s)
        out["pr"] = {"precision": pr.tolist(), "recall": rc.tolist(), "thresholds": thr.tolist()}
    return out


cases = []
n = 200
y = (rng.random(n) < 0.3).astype(int)
cases.append(case("random", y, rng.random(n) * 0.6 + 0.4 * y * rng.random(n)))
y = (rng.random(150) < 0.4).astype(int)
cases.append(case("tied", y, np.round(rng.random(150) * 0.7 + 0.3 * y, 1)))
y = (rng.random(60) < 0.5).astype(int)
cases.append(case("heavily_tied", y, rng.integers(0, 3, 60) / 2.0))
cases.append(case("all_equal_scores", [0, 1, 0, 1, 1, 0], [0.5] * 6))
cases.append(case("perfect", [0, 0, 1, 1, 1], [0.1, 0.2, 0.7, 0.8, 0.9]))
cases.append(case("reversed", [1, 1, 0, 0, 0], [0.1, 0.2, 0.7, 0.8, 0.9]))
cases.append(case("two_points", [0, 1], [0.3, 0.3]))
cases.append(case("single_class_positive", [1, 1, 1], [0.2, 0.6, 0.9]))
cases.append(case("single_class_negative", [0, 0, 0, 0], [0.2, 0.6, 0.9, 0.1]))
y = (rng.random(500) < 0.05).astype(int)
cases.append(case("rare_positives", y, rng.normal(0, 1, 500) + 1.5 * y, t=1.0))
# Platt scaling as CalibratedClassifierCV(method="sigmoid") fits it: P = 1 / (1 + exp(a s + b))
from sklearn.calibration import _sigmoid_calibration
platt = []
for c in cases[:3] + cases[-1:]:
    a, b = _sigmoid_calibration(np.asarray(c["scores"]), np.asarray(c["labels"]))
    platt.append({"name": c["name"], "a": float(a), "b": float(b)})
print(json.dumps({"sklearn": sklearn.__version__, "cases": cases, "platt": platt}, indent=None))

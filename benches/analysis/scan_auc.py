"""The scan-level ROC AUC shared by the analysis scripts (ties get mean ranks,
as in scikit-learn's `roc_auc_score`)."""

import numpy as np


def auc(y, s):
    """ROC AUC of scores `s` for labels `y`; NaN when a class is missing."""
    y = np.asarray(y, bool)
    s = np.asarray(s, float)
    n1, n0 = y.sum(), (~y).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ss = s[order]
    i = 0
    while i < len(ss):
        j = i
        while j < len(ss) and ss[j] == ss[i]:
            j += 1
        ranks[order[i:j]] = (i + j + 1) / 2
        i = j
    return (ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)

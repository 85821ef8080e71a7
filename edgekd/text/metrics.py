"""How closely a student's sentence embeddings follow the teacher's, on held-out sentences.

* mean cosine between each sentence's student and teacher embedding (only meaningful when both share a space);
* Spearman correlation between the two pairwise cosine-similarity matrices (upper triangle): does the student rank
  sentence pairs as the teacher does? (independent of the embedding space, so it also judges the untrained floor);
* top-k retrieval agreement: for every sentence, the overlap of its k nearest neighbours under each model;
* linear-probe accuracy on categories (5-fold stratified cross-validation on the evaluation sentences).
"""

from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def mean_cosine(s: np.ndarray, t: np.ndarray) -> float:
    if s.shape != t.shape:
        return float("nan")
    return float((_unit(s) * _unit(t)).sum(1).mean())


def _ranks(v: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's rho needs."""
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v), np.float64)
    sv = v[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sv)) + 1]
    ends = np.r_[starts[1:], len(v)]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b - 1) / 2.0
    return ranks


def similarity_spearman(s: np.ndarray, t: np.ndarray) -> float:
    """Spearman's rho between the upper triangles of the two cosine-similarity matrices."""
    iu = np.triu_indices(len(s), k=1)
    a, b = (_unit(s) @ _unit(s).T)[iu], (_unit(t) @ _unit(t).T)[iu]
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra * ra).sum() * (rb * rb).sum()))


def topk_overlap(s: np.ndarray, t: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each sentence's k nearest neighbours (itself excluded) that both models agree on."""
    k = min(k, len(s) - 1)
    out = []
    for e in (s, t):
        sim = _unit(e) @ _unit(e).T
        np.fill_diagonal(sim, -np.inf)
        out.append(np.argpartition(-sim, k, axis=1)[:, :k])
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(out[0], out[1], strict=True)]))


def probe_labels(labels: list, min_per_class: int = 15) -> np.ndarray:
    """Integer labels for the probe; -1 for sentences without a label or in a class too small to cross-validate."""
    from collections import Counter

    counts = Counter(v for v in labels if v is not None)
    keep = sorted(c for c, n in counts.items() if n >= min_per_class)
    index = {c: i for i, c in enumerate(keep)}
    return np.array([index.get(v, -1) if v is not None else -1 for v in labels], np.int64)


def linear_probe(emb: np.ndarray, y: np.ndarray, seed: int = 0, folds: int = 5) -> float | None:
    """Accuracy of a logistic regression on the embeddings (stratified k-fold); None with fewer than 2 classes."""
    keep = y >= 0
    if len(np.unique(y[keep])) < 2:
        return None
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x = _unit(emb[keep])
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    clf = LogisticRegression(max_iter=2000, C=10.0)
    return float(cross_val_score(clf, x, y[keep], cv=cv).mean())


def embedding_metrics(s: np.ndarray, t: np.ndarray, labels: np.ndarray | None = None, k: int = 10) -> dict:
    """Every figure at once, rounded for reports."""
    out = {
        "mean_cosine": round(mean_cosine(s, t), 4),
        "spearman": round(similarity_spearman(s, t), 4),
        f"top{k}_overlap": round(topk_overlap(s, t, k), 4),
    }
    if labels is not None:
        acc = linear_probe(s, labels)
        out["probe_accuracy"] = None if acc is None else round(acc, 4)
    return out

"""The probe's two measures, in numpy.

`ridge_probe_r2`: a ridge-regularised linear probe, cross-validated. k folds; in each, the features are
scaled with the training part's statistics — either standardised per feature (each spread floored at a tenth of the
median feature's, so that nearly dead features are not blown up) or centred with one common scale — and the
scaling and the ridge strength are chosen per target by leave-one-out error on the training part alone (closed
form, from one eigendecomposition of the training kernel per scaling); the probe then predicts the held-out part.
The R² is computed over all held-out predictions: 1 means the position can be read from the features by a linear
map, 0 means no better than guessing the mean (below 0: worse).

`cosine_summary`: the mean cosine similarity of pairs of frames, by how far apart their cubes are. Features are
centred first (the mean over all frames subtracted), so that what every frame shares does not dominate: a random
pair then scores about 0, and a layer that separates positions scores near pairs clearly above far pairs.
"""

from __future__ import annotations

import numpy as np

ALPHAS = np.logspace(-4, 3, 15)  # ridge strengths, relative to the mean eigenvalue of the training kernel
STD_FLOOR = 0.1  # features are scaled by max(their spread, this x the median spread)
NEAR_M = 0.01
FAR_M = 0.04


def fold_indices(n: int, folds: int, seed: int = 0) -> list[np.ndarray]:
    if not 2 <= folds <= n:
        raise ValueError(f"folds: expected 2..{n} (the number of frames), got {folds}")
    return np.array_split(np.random.default_rng(seed).permutation(n), folds)


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    alive = std > 0
    # floored at a tenth of the typical spread: a feature that is almost always zero (a dead ReLU channel) would
    # otherwise be blown up to unit spread and its rare non-zero values in the held-out part dominate the probe
    floor = STD_FLOOR * float(np.median(std[alive])) if alive.any() else 1.0
    std = np.where(alive, np.maximum(std, floor), np.inf)  # constant features carry nothing: drop them
    return (train - mean) / std, (test - mean) / std


def _centre(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean(axis=0)
    scale = max(float(train.std()), 1e-12)  # one scale for all: the features' own proportions kept
    return (train - mean) / scale, (test - mean) / scale


def _ridge_path(xtr: np.ndarray, xte: np.ndarray, yc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each target: the leave-one-out error of the best ridge strength on the training part, that strength,
    and the held-out predictions (before adding the mean) with it. Kernel (dual) form: the cost is set by the
    number of frames, not by the feature dimension."""
    n = len(xtr)
    evals, evecs = np.linalg.eigh(xtr @ xtr.T)
    evals = np.clip(evals, 0.0, None)
    uty = evecs.T @ yc  # [n, T]
    best_err, best = np.full(yc.shape[1], np.inf), np.zeros(yc.shape[1])
    for lam in ALPHAS * max(evals.mean(), 1e-12):
        shrink = evals / (evals + lam)
        fitted = evecs @ (shrink[:, None] * uty)
        leverage = (evecs ** 2) @ shrink + 1.0 / n  # the hat matrix's diagonal, the intercept included
        err = (((yc - fitted) / np.maximum(1.0 - leverage, 1e-9)[:, None]) ** 2).mean(axis=0)
        better = err < best_err
        best_err[better], best[better] = err[better], lam
    dual = np.stack([evecs @ (uty[:, t] / (evals + best[t])) for t in range(yc.shape[1])], axis=1)
    return best_err, best, (xte @ xtr.T) @ dual


def ridge_fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ridge with the scaling (per-feature standardised, or centred with one common scale) and the strength chosen
    per target by leave-one-out error on the training part alone. Returns (predictions for x_test [M, T], the
    chosen strengths [T])."""
    x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    y_mean = y_train.mean(axis=0)
    yc = y_train - y_mean
    best_err = np.full(yc.shape[1], np.inf)
    predictions, strengths = np.zeros((len(x_test), yc.shape[1])), np.zeros(yc.shape[1])
    for scale in (_standardise, _centre):
        err, lam, pred = _ridge_path(*scale(x_train, x_test), yc)
        better = err < best_err
        best_err[better], strengths[better], predictions[:, better] = err[better], lam[better], pred[:, better]
    return y_mean + predictions, strengths


def ridge_probe_r2(features: np.ndarray, targets: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Held-out R² per target column of a linear probe features [N, D] -> targets [N, T], k-fold."""
    targets = np.asarray(targets, np.float64).reshape(len(features), -1)
    predictions = np.zeros_like(targets)
    for test in fold_indices(len(features), folds, seed):
        train = np.setdiff1d(np.arange(len(features)), test)
        predictions[test], _ = ridge_fit_predict(features[train], targets[train], features[test])
    residual = ((targets - predictions) ** 2).sum(axis=0)
    total = ((targets - targets.mean(axis=0)) ** 2).sum(axis=0)
    return 1.0 - residual / np.maximum(total, 1e-300)


def cosine_summary(features: np.ndarray, positions: np.ndarray, near: float = NEAR_M,
                   far: float = FAR_M) -> dict[str, float | None]:
    """Mean cosine similarity of centred features over pairs of frames: cubes nearer than `near` metres, farther
    than `far`, one in front of the median x and one behind it (``front_back``), and both on the same side
    (``same_side``). None where no pair qualifies."""
    x = np.asarray(features, np.float64)
    x = x - x.mean(axis=0)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    i, j = np.triu_indices(len(x), k=1)
    s = sim[i, j]
    pos = np.asarray(positions, np.float64)
    dist = np.linalg.norm(pos[i] - pos[j], axis=1)
    front = pos[:, 0] > np.median(pos[:, 0])
    back = pos[:, 0] < np.median(pos[:, 0])
    across = (front[i] & back[j]) | (back[i] & front[j])
    same = (front[i] & front[j]) | (back[i] & back[j])

    def mean(mask: np.ndarray) -> float | None:
        return float(s[mask].mean()) if mask.any() else None

    return {"near": mean(dist < near), "far": mean(dist > far), "front_back": mean(across),
            "same_side": mean(same)}

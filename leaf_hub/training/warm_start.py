"""Warm start: fit the leaf's projection by ridge regression before any gradient step.

A random projection starts training at cosine ~0 to the teacher and spends its first hundreds of steps
finding a linear map that closed-form regression gives at once: the least-squares map from the student's
pooled embeddings to the teacher's. Pooled transformer embeddings are strongly anisotropic (rank-deficient
in practice), so the plain float32 least-squares map has singular values near 1e6 and blows up fine-tuning
and int8 quantization. A float64 ridge solve with the penalty chosen on held-out rows is well conditioned.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from leaf_hub.data.store import shuffled_rows
from leaf_hub.training.data import TrainData

logger = logging.getLogger(__name__)

ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1)


def fit_ridge_projection(
    pooled: np.ndarray, targets: np.ndarray, alphas: tuple[float, ...] = ALPHAS, seed: int = 0
) -> tuple[np.ndarray, dict]:
    """Return W (d_student, d_teacher) minimizing ||XW - Y||^2 + lam ||W||^2, lam chosen on held-out rows.

    ``lam = alpha * mean(diag(X^T X))`` makes alpha independent of the embeddings' scale. The choice is by
    held-out cosine between XW and Y, the quantity training then improves.
    """
    x = pooled.astype(np.float64)
    y = targets.astype(np.float64)
    n = len(x)
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, n // 10) if n >= 20 else 0
    val, fit = perm[:n_val], perm[n_val:]
    xtx = x[fit].T @ x[fit]
    xty = x[fit].T @ y[fit]
    scale = float(np.trace(xtx)) / len(xtx)
    # One eigendecomposition serves every alpha.
    evals, evecs = np.linalg.eigh(xtx)
    proj = evecs.T @ xty

    def solve(alpha: float) -> np.ndarray:
        return evecs @ (proj / (evals + alpha * scale)[:, None])

    scores = {}
    for alpha in alphas:
        if n_val == 0:
            scores[alpha] = 0.0
            continue
        pred = x[val] @ solve(alpha)
        cos = (pred * y[val]).sum(1) / (np.linalg.norm(pred, axis=1) * np.linalg.norm(y[val], axis=1) + 1e-12)
        scores[alpha] = float(cos.mean())
    best = max(scores, key=scores.get)
    w = solve(best)
    info = {
        "alpha": best,
        "heldout_cosine": scores[best],
        "scores": {str(a): s for a, s in scores.items()},
        "max_singular_value": float(np.linalg.svd(w, compute_uv=False)[0]),
        "rows": n,
    }
    logger.info(
        "warm start: ridge alpha=%g, held-out cosine %.4f, largest singular value %.3g (%d rows)",
        best,
        info["heldout_cosine"],
        info["max_singular_value"],
        n,
    )
    return w, info


def set_projection(linear: torch.nn.Linear, w: np.ndarray) -> None:
    """Load W (d_in, d_out) into a Linear layer, whose weight is (d_out, d_in)."""
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(w.T.astype(np.float32)))


def pooled_embeddings(leaf, input_ids: list[list[int]], pad_id: int, batch_size: int = 64) -> np.ndarray:
    """The leaf's mean-pooled backbone output (before the projection) for each row."""
    import torch

    from leaf_hub.training.data import collate

    transformer, pooling = leaf[0], leaf[1]
    order = np.argsort([len(x) for x in input_ids], kind="stable")
    out = np.zeros((len(input_ids), pooling.get_embedding_dimension()), dtype=np.float32)
    leaf.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = {k: v.to(leaf.device) for k, v in collate([input_ids[i] for i in rows], pad_id).items()}
            out[rows] = pooling(transformer(batch))["sentence_embedding"].float().cpu().numpy()
    return out


def warm_start(leaf, data: TrainData, *, rows: int = 20000, seed: int = 0) -> dict:
    """Fit ``leaf``'s projection on up to ``rows`` random training rows of ``data``; returns the fit's facts.

    What ``distill`` does before the first step (unless told not to), and what the benchmarks call to start
    from the same leaf.
    """
    from leaf_hub.leaf import projection

    picked = data.train_idx[shuffled_rows(np.random.default_rng(seed), len(data.train_idx))[:rows]]
    pooled = pooled_embeddings(leaf, [data.input_ids[i] for i in picked], data.pad_token_id)
    w, info = fit_ridge_projection(pooled, data.targets[picked], seed=seed)
    set_projection(projection(leaf), w)
    return info

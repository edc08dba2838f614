"""Held-out validation: how close the leaf's embeddings are to the teacher's on texts it does not train on."""

from __future__ import annotations

import numpy as np
import torch

from leaf_hub.training.data import TrainData


@torch.no_grad()
def validate(model, data: TrainData, batch_size: int, device) -> dict[str, float]:
    """Mean L2 distance and cosine to the teacher on the held-out rows (``val_l2``, ``val_cosine``)."""
    was_training = model.training
    model.eval()
    l2, cos = [], []
    idx = data.val_idx[np.argsort(data.lengths[data.val_idx], kind="stable")]
    for start in range(0, len(idx), batch_size):
        batch = {k: v.to(device) for k, v in data.batch(idx[start : start + batch_size]).items()}
        target = batch.pop("target")
        pred = model(batch)["sentence_embedding"].float()
        l2.append((pred - target).norm(dim=1).cpu())
        cos.append(torch.nn.functional.cosine_similarity(pred, target, dim=1).cpu())
    model.train(was_training)
    return {"val_l2": float(torch.cat(l2).mean()), "val_cosine": float(torch.cat(cos).mean())}

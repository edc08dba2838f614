"""The LEAF loss: per text, the L2 distance between the leaf's embedding and the teacher's, averaged.

No labels beyond the teacher's vectors, no negatives. sentence-transformers ships this loss as
``EmbedDistillLoss(distance_metric="l2")``; in float32 it computes exactly :func:`leaf_loss` (the test
suite checks it), but it casts the teacher's vectors to the leaf's dtype, so under bf16/fp16 autocast the
distance would be taken in half precision. :class:`LeafDistillLoss` keeps its input handling and takes the
distance in float32.
"""

from __future__ import annotations

import torch
from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss


def leaf_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the L2 distance between leaf and teacher embeddings, in float32."""
    return (pred.float() - target.float()).norm(dim=1).mean()


class LeafDistillLoss(EmbedDistillLoss):
    """``EmbedDistillLoss(model, distance_metric="l2")`` with the distance taken in float32."""

    def __init__(self, model) -> None:
        super().__init__(model, distance_metric="l2")

    def compute_loss_from_embeddings(
        self, embeddings: list[torch.Tensor], teacher_embeddings: list[torch.Tensor]
    ) -> torch.Tensor:
        return torch.stack(
            [leaf_loss(s, t) for s, t in zip(embeddings, teacher_embeddings, strict=True)]
        ).mean()

"""The leaf model: student backbone -> mean pooling -> Linear(d_student -> d_teacher) -> [Normalize].

This is the whole architecture of LEAF (arXiv 2509.12539): the projection has no bias and no activation,
so the leaf's output lives in the teacher's vector space and can be compared with teacher embeddings
directly. It is an ordinary sentence-transformers model (Transformer, Pooling, Dense, Normalize) that
``SentenceTransformer(path)`` loads with no leaf-hub code installed.
"""

from __future__ import annotations

import logging

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

from leaf_hub.errors import LeafHubError

logger = logging.getLogger(__name__)

# Models whose position ids start after the padding index (RoBERTa family): two positions are not usable.
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "mpnet": 2}


def position_limit(transformer: Transformer) -> int:
    """The longest input in tokens that the backbone's position embeddings allow."""
    config = transformer.auto_model.config
    limit = getattr(config, "max_position_embeddings", None) or 512
    return int(limit) - _POSITION_OFFSET.get(getattr(config, "model_type", ""), 0)


def build_leaf(
    student: SentenceTransformer,
    teacher_dim: int,
    normalize: bool,
    prompts: dict[str, str] | None = None,
    max_seq_length: int | None = None,
) -> SentenceTransformer:
    """Build a leaf from a loaded student: its Transformer module plus a fresh mean pooling and projection.

    ``max_seq_length`` (the teacher's) is capped at the student's position limit: a leaf that sees fewer
    tokens than its teacher is a different model on long texts, so when capping happens it is logged.
    """
    transformer = student[0]
    if not isinstance(transformer, Transformer):
        raise LeafHubError(
            f"the student's first module is {type(transformer).__name__}, not a Transformer; "
            "give a transformers backbone or a sentence-transformers model built on one"
        )
    limit = position_limit(transformer)
    wanted = max_seq_length or transformer.max_seq_length or limit
    if wanted > limit:
        logger.warning(
            "teacher reads %d tokens but the student's limit is %d: leaf uses %d", wanted, limit, limit
        )
    transformer.max_seq_length = min(wanted, limit)
    d_student = transformer.get_embedding_dimension()
    dense = Dense(d_student, teacher_dim, bias=False, activation_function=torch.nn.Identity())
    modules = [transformer, Pooling(d_student, pooling_mode="mean"), dense]
    if normalize:
        modules.append(Normalize())
    prompts = {k: v for k, v in (prompts or {}).items() if v}
    return SentenceTransformer(modules=modules, prompts=prompts or None, device=str(student.device))


def projection(leaf: SentenceTransformer) -> torch.nn.Linear:
    """The leaf's Linear projection (the Dense module's layer)."""
    for module in leaf:
        if isinstance(module, Dense):
            return module.linear
    raise LeafHubError("this model has no Dense projection: it is not a leaf built by leaf-hub")

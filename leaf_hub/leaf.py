"""The leaf model: student backbone -> mean pooling -> Linear(d_student -> d_teacher) -> [Normalize].

This is the whole architecture of LEAF (arXiv 2509.12539): the projection has no bias and no activation,
so the leaf's output lives in the teacher's vector space and can be compared with teacher embeddings
directly. It is an ordinary sentence-transformers model (Transformer, Pooling, Dense, Normalize) that
``SentenceTransformer(path)`` loads with no leaf-hub code installed.

A saved leaf loads in every sentence-transformers release from 3.x on, not only in the 6.x that wrote it:
sentence-transformers 6 names its modules ``sentence_transformers.base.modules.normalize.Normalize`` and
the like in ``modules.json``, which 5.x and older cannot import, and writes module configs in keys older
releases reject. :func:`make_portable` rewrites a saved folder into the classic layout that published
embedding models use (``sentence_transformers.models.*`` types, classic Pooling / Dense /
sentence_bert_config keys), which sentence-transformers 6 loads as well, to identical embeddings; a leaf
built by :func:`build_leaf` does it on every ``save``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

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


# What a leaf folder needs, stated on its model card. 5.7 (transformers 4.57, PyTorch and its ONNX backend) is
# checked in CI by tests/test_clients.py; 3.4.1 and 4.1.0 (transformers 4.57) loaded a saved MiniLM leaf
# by hand to identical embeddings; 6.x is what leaf-hub itself runs.
LOADS_IN = "sentence-transformers >= 3 (tested with 3.4, 4.1, 5.7 and 6.2)"
CLASSIC_MODULES = "sentence_transformers.models"
# The module classes every release knows under sentence_transformers.models, with their config files.
_PORTABLE_TYPES = ("Transformer", "Pooling", "Dense", "Normalize")
# sentence-transformers 6's Transformer config for a text model; anything else is left as it is.
_TEXT_TRANSFORMER = {
    "transformer_task": "feature-extraction",
    "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
    "module_output_name": "token_embeddings",
}
_POOLING_MODES = (
    "cls_token",
    "mean_tokens",
    "max_tokens",
    "mean_sqrt_len_tokens",
    "weightedmean_tokens",
    "lasttoken",
)
_POOLING_MODE_NAMES = {
    "cls": "cls_token",
    "mean": "mean_tokens",
    "max": "max_tokens",
    "mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "weightedmean": "weightedmean_tokens",
    "lasttoken": "lasttoken",
}


class Leaf(SentenceTransformer):
    """A SentenceTransformer whose :meth:`save` writes the portable layout (see :func:`make_portable`)."""

    def save(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().save(path, *args, **kwargs)
        if path:
            make_portable(path, max_seq_length=self.max_seq_length)


def _read(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write(path: Path, data: Any) -> None:
    from leaf_hub.files import atomic_write_json

    atomic_write_json(path, data)


def make_portable(folder: str | os.PathLike, max_seq_length: int | None = None) -> list[str]:
    """Rewrite a saved sentence-transformers folder so that sentence-transformers 3.x to 6.x all load it.

    Only what older releases cannot read changes, and only for the four standard module types (other
    modules, a Router for instance, are left as they are): ``modules.json`` types become
    ``sentence_transformers.models.X``; the Transformer's ``sentence_bert_config.json`` becomes
    ``max_seq_length`` + ``do_lower_case``; Pooling's config the ``pooling_mode_*_tokens`` flags; Dense's
    config loses its default input/output names; a tokenizer saved as transformers 5's generic
    ``TokenizersBackend`` is named ``PreTrainedTokenizerFast``, its name in transformers 4. Returns the
    files changed. ``max_seq_length`` defaults to the tokenizer's ``model_max_length``.
    """
    folder = Path(folder)
    modules_file = folder / "modules.json"
    modules = _read(modules_file)
    changed: list[str] = []
    for module in modules:
        kind = str(module.get("type", ""))
        name = kind.rsplit(".", 1)[-1]
        if not kind.startswith("sentence_transformers.") or name not in _PORTABLE_TYPES:
            continue
        if kind != f"{CLASSIC_MODULES}.{name}":
            module["type"] = f"{CLASSIC_MODULES}.{name}"
        sub = folder / module.get("path", "")
        rewrite = {"Transformer": _classic_transformer, "Pooling": _classic_pooling, "Dense": _classic_dense}
        if name in rewrite:
            changed += [str(p.relative_to(folder)) for p in rewrite[name](sub, max_seq_length)]
    if modules != _read(modules_file):
        _write(modules_file, modules)
        changed.append("modules.json")
    return changed


def _classic_transformer(folder: Path, max_seq_length: int | None) -> list[Path]:
    changed = []
    config_file = folder / "sentence_bert_config.json"
    config = _read(config_file) if config_file.is_file() else {}
    extra = {k: v for k, v in config.items() if k not in ("max_seq_length", "do_lower_case")}
    tokenizer_file = folder / "tokenizer_config.json"
    tokenizer = _read(tokenizer_file) if tokenizer_file.is_file() else {}
    if all(_TEXT_TRANSFORMER.get(k) == v for k, v in extra.items()):
        length = max_seq_length or config.get("max_seq_length") or tokenizer.get("model_max_length")
        classic = {"do_lower_case": bool(config.get("do_lower_case", False))}
        if isinstance(length, int) and length < 10**6:
            classic = {"max_seq_length": int(length), **classic}
        if classic != config:
            _write(config_file, classic)
            changed.append(config_file)
    if tokenizer.get("tokenizer_class") == "TokenizersBackend":
        _write(tokenizer_file, {**tokenizer, "tokenizer_class": "PreTrainedTokenizerFast"})
        changed.append(tokenizer_file)
    return changed


def _classic_pooling(folder: Path, _: int | None) -> list[Path]:
    config_file = folder / "config.json"
    config = _read(config_file)
    if "pooling_mode" not in config or "embedding_dimension" not in config:
        return []
    modes = config["pooling_mode"]
    modes = [modes] if isinstance(modes, str) else list(modes)
    if any(m not in _POOLING_MODE_NAMES for m in modes):
        return []
    classic: dict[str, Any] = {"word_embedding_dimension": config["embedding_dimension"]}
    classic.update(
        {f"pooling_mode_{m}": any(_POOLING_MODE_NAMES[x] == m for x in modes) for m in _POOLING_MODES}
    )
    classic["include_prompt"] = bool(config.get("include_prompt", True))
    _write(config_file, classic)
    return [config_file]


def _classic_dense(folder: Path, _: int | None) -> list[Path]:
    config_file = folder / "config.json"
    config = _read(config_file)
    classic = dict(config)
    # The defaults: the sentence embedding in, the sentence embedding out (None: the input's name).
    if classic.get("module_input_name", "sentence_embedding") == "sentence_embedding":
        classic.pop("module_input_name", None)
    if classic.get("module_output_name") in ("sentence_embedding", None):
        classic.pop("module_output_name", None)
    if classic == config:
        return []
    _write(config_file, classic)
    return [config_file]


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
    return Leaf(modules=modules, prompts=prompts or None, device=str(student.device))


def projection(leaf: SentenceTransformer) -> torch.nn.Linear:
    """The leaf's Linear projection (the Dense module's layer)."""
    for module in leaf:
        if isinstance(module, Dense):
            return module.linear
    raise LeafHubError("this model has no Dense projection: it is not a leaf built by leaf-hub")

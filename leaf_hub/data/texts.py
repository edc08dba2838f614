"""Training texts for distillation: ``--data`` specs in, de-duplicated query/document records out.

LEAF trains on plain texts (no labels): the teacher embeds them once and the leaf learns to reproduce
those embeddings. What matters is coverage (web text, news, questions, single tokens, words) and knowing
which texts are *queries*, because a teacher with a query prompt embeds those differently.

The pieces, one job each:

* :mod:`leaf_hub.data.specs` -- the spec grammar (``FILE::column=...``, ``hf:``, ``preset:leaf-paper``)
  and the paper's presets;
* :mod:`leaf_hub.data.readers` -- local files read through ``datasets``; :mod:`leaf_hub.data.hub` --
  ``hf:`` datasets streamed from the Hub; :mod:`leaf_hub.data.generated` -- ``builtin``, ``words``,
  ``bert-tokens``;
* :mod:`leaf_hub.data.store` -- ingest: every source streamed once into an on-disk text store,
  de-duplicated on the fly (what ``distill`` uses, at any scale);
* this module -- :func:`load_texts`, the same ingest handed back as a list of records in memory, for
  small data and for code that wants Python objects.

All sources are concatenated; texts are stripped of surrounding whitespace, empty ones are dropped, and
duplicates of the same ``(kind, text)`` are dropped across sources (the first occurrence wins). Every
source's counts (read, kept, dropped empty, dropped duplicate, dropped by ``max_texts``) are logged and
kept in ``TextSet.stats``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from leaf_hub.data.generated import bert_tokens, builtin_corpus, builtin_words
from leaf_hub.data.hub import _probe_hub
from leaf_hub.data.specs import (
    DATA_SPEC_HELP,
    KINDS,
    LEAF_PAPER_FULL_MIX,
    LEAF_PAPER_MIX,
    PRESETS,
    Kind,
    PresetSource,
    check_specs,
    describe_preset,
)
from leaf_hub.data.store import STAT_KEYS, TextRecord, TextStore, ingest, summary, texts_sha256

__all__ = [
    "DATA_SPEC_HELP",
    "KINDS",
    "LEAF_PAPER_FULL_MIX",
    "LEAF_PAPER_MIX",
    "PRESETS",
    "Kind",
    "PresetSource",
    "TextRecord",
    "TextSet",
    "TextStore",
    "_probe_hub",
    "bert_tokens",
    "builtin_corpus",
    "builtin_words",
    "check_specs",
    "describe_preset",
    "ingest",
    "load_texts",
]


@dataclass
class TextSet:
    """The de-duplicated training texts plus per-source counts.

    ``stats`` maps each source label to ``{"read", "kept", "dropped_empty", "dropped_duplicate",
    "dropped_max_texts"}``; ``read`` is the sum of the other four.
    """

    records: list[TextRecord]
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[TextRecord]:
        return iter(self.records)

    def texts(self, kind: Kind | None = None) -> list[str]:
        return [r.text for r in self.records if kind is None or r.kind == kind]

    def counts(self) -> dict[str, int]:
        """Number of texts per kind."""
        out = dict.fromkeys(KINDS, 0)
        for r in self.records:
            out[r.kind] += 1
        return out

    def totals(self) -> dict[str, int]:
        """The per-source counts summed over all sources."""
        return {k: sum(s.get(k, 0) for s in self.stats.values()) for k in STAT_KEYS}

    def fingerprint(self) -> str:
        """A short hash of the texts, their kinds and their order (to tell whether a cache matches)."""
        return texts_sha256(iter([([r.text for r in self.records], [r.kind for r in self.records])]))[:16]

    def summary(self) -> str:
        return summary(len(self.records), self.counts(), self.stats, self.totals())


def load_texts(
    specs: list[str] | str,
    *,
    student_tokenizer: Any = None,
    seed: int = 0,
    max_texts: int | None = None,
) -> TextSet:
    """Read every ``--data`` spec, drop empty and duplicate texts, and return them with per-source counts.

    ``student_tokenizer`` (a transformers tokenizer, or a SentenceTransformer whose tokenizer is used) is
    needed for ``bert-tokens``. ``max_texts`` keeps a random sample (by ``seed``) of that many texts,
    in their original order. Raises :class:`LeafHubError` for any bad input, before reading anything
    when a source needs the Hub and the Hub is unreachable.

    This is :func:`~leaf_hub.data.store.ingest` into a temporary folder, read back into memory: for data
    that does not fit in memory use ``ingest`` and the :class:`TextStore` it returns.
    """
    with tempfile.TemporaryDirectory(prefix="leaf-hub-texts-") as tmp:
        store = ingest(specs, tmp, student_tokenizer=student_tokenizer, seed=seed, max_texts=max_texts)
        try:
            return TextSet(store.records(), store.stats)
        finally:
            store.close()

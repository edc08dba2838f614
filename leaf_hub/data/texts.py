"""Training texts for distillation: ``--data`` specs in, de-duplicated query/document records out.

LEAF trains on plain texts (no labels): the teacher embeds them once and the leaf learns to reproduce
those embeddings. What matters is coverage (web text, news, questions, single tokens, words) and knowing
which texts are *queries*, because a teacher with a query prompt embeds those differently.

Spec grammar
------------
A spec is ``SOURCE`` or ``SOURCE::OPTIONS``, where ``OPTIONS`` is ``key=value`` pairs joined by ``,``
(the first ``::`` in the spec starts the options)::

    FILE[::column=C,type_column=T,kind=K,limit=N]   local .jsonl .json .txt .parquet .csv .tsv
                                                     (.jsonl.gz .json.gz .txt.gz .csv.gz .tsv.gz too)
    hf:DATASET[::config=,split=,column=,type_column=,kind=,limit=,revision=,data_files=]
                                                     a Hugging Face dataset (Hub id or local folder)
    bert-tokens[::kind=,limit=,tokenizer=]           every token of the student's vocabulary
    words[::kind=,limit=]                            an English word list built from Python's own docs
    words:PATH[::kind=,limit=]                       a word list file, one word per line
    builtin[::limit=]                                an English corpus built from Python's own docs
    preset:leaf-paper[::limit=,vocab=PATH]           the paper's training mix (needs the Hub)

Options:

* ``column`` -- the text column (default ``text``). Files: JSON objects' key, CSV/TSV header name (the
  first row is the header), parquet column. Not for ``.txt`` (one text per line).
* ``type_column`` -- a column holding ``query`` or ``document`` per row (default ``type``, used when
  present). ``passage`` counts as ``document``; an empty value means ``document`` (or ``kind=``).
* ``kind`` -- ``query`` or ``document``: the kind of every row, or with an explicit ``type_column=``
  the kind of rows whose type is empty.
* ``limit`` -- at most N rows from this source: the first N rows of a file, the first N rows of a
  shuffled stream for ``hf:``, a random sample (by the seed) of a generated set.
* ``hf:`` only: ``config`` (subset), ``split`` (default ``train``), ``revision``, ``data_files`` (a glob
  inside the repository). Default ``limit`` is 100,000 rows. Datasets are streamed, never downloaded
  whole, and shuffled with a 10,000-row buffer and the seed.
* ``bert-tokens`` only: ``tokenizer`` -- a tokenizer Hub id or folder instead of the student's.
* ``preset:`` only: ``limit`` caps every Hub source of the preset; ``vocab`` is the Vocabulary dataset
  file made by ``leaf-hub vocab build`` (without it the built-in ``words`` list stands in).

Examples: ``texts.jsonl.gz``, ``data.csv::column=sentence,kind=query,limit=1000``,
``hf:sentence-transformers/amazon-qa::column=query,kind=query,limit=50000``, ``builtin``.

All sources are concatenated; texts are stripped of surrounding whitespace, empty ones are dropped, and
duplicates of the same ``(kind, text)`` are dropped across sources (the first occurrence wins). Every
source's counts (read, kept, dropped empty, dropped duplicate, dropped by ``max_texts``) are logged and
kept in ``TextSet.stats``.

``builtin`` and ``words`` need nothing but Python: they are built from the documentation that every
CPython carries (``pydoc_data.topics`` and the standard library's docstrings), so the README's
quick-start runs on a fresh machine without the Hub. They are deterministic for a given Python version.
"""

from __future__ import annotations

import ast
import codecs
import csv
import functools
import gzip
import hashlib
import importlib.util
import json
import logging
import random
import re
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from leaf_hub.errors import LeafHubError
from leaf_hub.offline import ensure_hub_reachable_or_offline, hub_offline

logger = logging.getLogger(__name__)

Kind = Literal["query", "document"]
KINDS: tuple[Kind, ...] = ("query", "document")
_KIND_ALIASES = {"query": "query", "document": "document", "passage": "document"}

DEFAULT_HF_LIMIT = 100_000
HF_SHUFFLE_BUFFER = 10_000

DATA_SPEC_HELP = (
    "training texts; repeatable. FILE (.jsonl/.json/.txt/.parquet/.csv/.tsv, .gz too), hf:DATASET, "
    "bert-tokens, words, words:PATH, builtin or preset:leaf-paper, optionally followed by "
    "'::key=value,...' (column=, type_column=, kind=query|document, limit=, config=, split=); "
    "see leaf_hub/data/texts.py"
)


@dataclass(frozen=True)
class TextRecord:
    """One training text, whether the teacher should embed it as a query or a document, and its source."""

    text: str
    kind: Kind
    source: str


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
        keys = ("read", "kept", "dropped_empty", "dropped_duplicate", "dropped_max_texts")
        return {k: sum(s.get(k, 0) for s in self.stats.values()) for k in keys}

    def fingerprint(self) -> str:
        """A short hash of the texts, their kinds and their order (to tell whether a cache matches)."""
        digest = hashlib.sha256()
        for r in self.records:
            digest.update(f"{r.kind}\0{r.text}\0".encode())
        return digest.hexdigest()[:16]

    def summary(self) -> str:
        c, t = self.counts(), self.totals()
        return (
            f"{len(self.records):,} texts ({c['query']:,} queries, {c['document']:,} documents) from "
            f"{len(self.stats)} source(s); dropped {t['dropped_empty']:,} empty, "
            f"{t['dropped_duplicate']:,} duplicate, {t['dropped_max_texts']:,} over max_texts"
        )


# --------------------------------------------------------------------------------------------------
# The paper's training mix.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PresetSource:
    """One Hub dataset of a preset: where its texts are and what kind they are."""

    name: str
    dataset: str
    config: str | None
    split: str
    column: str
    kind: Kind
    limit: int
    revision: str | None = None
    data_files: str | None = None

    def spec(self, limit: int | None = None) -> str:
        opts = {
            "config": self.config,
            "split": self.split,
            "column": self.column,
            "kind": self.kind,
            "limit": str(limit or self.limit),
            "revision": self.revision,
            "data_files": self.data_files,
        }
        return f"hf:{self.dataset}::" + ",".join(f"{k}={v}" for k, v in opts.items() if v)


# The LEAF paper's mix (arXiv 2509.12539, section 3): web text and news as documents, questions from
# four QA/search collections as queries, plus BERT tokens and the Vocabulary set (added in load_texts).
# Row counts are this package's defaults (change them with ``preset:leaf-paper::limit=N``), not the paper's.
#
#   name        Hub dataset                            config          split         column    kind      rows
LEAF_PAPER_MIX: tuple[PresetSource, ...] = (
    PresetSource("FineWeb", "HuggingFaceFW/fineweb", "sample-10BT", "train", "text", "document", 200_000),
    PresetSource("CC-News", "vblagoje/cc_news", None, "train", "text", "document", 100_000),
    PresetSource("Amazon QA", "sentence-transformers/amazon-qa", None, "train", "query", "query", 100_000),
    # LoTTE's repository has a loading script, which `datasets` no longer runs: read the Hub's parquet
    # export of its dev questions (search + forum, all five topics pooled) instead.
    PresetSource(
        "LoTTE",
        "colbertv2/lotte",
        None,
        "train",
        "query",
        "query",
        50_000,
        revision="refs/convert/parquet",
        data_files="pooled/*_dev/*.parquet",
    ),
    PresetSource(
        "MS MARCO", "sentence-transformers/msmarco-corpus", "query", "train", "text", "query", 200_000
    ),
    PresetSource("PubMedQA", "qiaojin/PubMedQA", "pqa_artificial", "train", "question", "query", 100_000),
    PresetSource("TriviaQA", "mandarjoshi/trivia_qa", "rc.nocontext", "train", "question", "query", 100_000),
)
PRESETS: dict[str, tuple[PresetSource, ...]] = {"leaf-paper": LEAF_PAPER_MIX}


def describe_preset(name: str = "leaf-paper") -> str:
    """A plain-text table of a preset's sources (for help texts and model cards)."""
    rows = [("source", "Hub dataset", "config", "split", "column", "kind", "rows")]
    for s in PRESETS[name]:
        rows.append((s.name, s.dataset, s.config or "-", s.split, s.column, s.kind, f"{s.limit:,}"))
    rows.append(("BERT tokens", "student vocabulary", "-", "-", "-", "document", "all"))
    rows.append(("Vocabulary", "vocab=FILE or words", "-", "-", "text", "document", "all"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


# --------------------------------------------------------------------------------------------------
# Spec parsing.
# --------------------------------------------------------------------------------------------------

_FILE_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".txt": "txt"}
_FILE_FORMATS.update({".parquet": "parquet", ".csv": "csv", ".tsv": "tsv"})
_OPTIONS = {
    "file": {"column", "type_column", "kind", "limit"},
    "txt": {"kind", "limit"},
    "hf": {"config", "split", "column", "type_column", "kind", "limit", "revision", "data_files"},
    "bert-tokens": {"kind", "limit", "tokenizer"},
    "words": {"kind", "limit"},
    "builtin": {"limit"},
    "preset": {"limit", "vocab"},
}
_FORMS = (
    "a file (.jsonl, .json, .txt, .parquet, .csv, .tsv, or .gz of those), hf:DATASET, bert-tokens, "
    "words, words:PATH, builtin or preset:leaf-paper"
)


@dataclass
class _Source:
    label: str  # stats key and TextRecord.source
    spec: str  # the spec as the user wrote it (or as a preset generated it)
    type: str  # file | hf | bert-tokens | words | builtin
    target: str = ""  # path, dataset id, or "" for generated sets
    options: dict[str, str] = field(default_factory=dict)
    fmt: str = ""  # file format
    compressed: bool = False
    needs_hub: bool = False
    title: str = ""  # human name (preset sources)


def _split_options(spec: str) -> tuple[str, dict[str, str]]:
    head, sep, rest = spec.partition("::")
    options: dict[str, str] = {}
    if sep:
        if not rest.strip():
            raise LeafHubError(
                f"data spec {spec!r} ends with '::' but gives no options; write e.g. '{head}::kind=query'"
            )
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            key = key.strip().lower().replace("-", "_")
            if not eq or not key:
                raise LeafHubError(
                    f"option {item.strip()!r} in data spec {spec!r} is not key=value; options look like "
                    "'data.csv::column=sentence,kind=query'"
                )
            if key in options:
                raise LeafHubError(f"option {key!r} is given twice in data spec {spec!r}")
            options[key] = value.strip()
    return head.strip(), options


def _check_options(spec: str, options: dict[str, str], allowed_key: str) -> None:
    allowed = _OPTIONS[allowed_key]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise LeafHubError(
            f"unknown option {unknown[0]!r} in data spec {spec!r}; this source takes "
            f"{', '.join(sorted(allowed))}"
        )
    kind = options.get("kind")
    if kind is not None and kind.lower() not in KINDS:
        raise LeafHubError(
            f"kind={kind!r} in data spec {spec!r} is not valid; use kind=query or kind=document"
        )
    if kind is not None:
        options["kind"] = kind.lower()
    if "limit" in options:
        try:
            limit = int(options["limit"].replace("_", ""))
        except ValueError:
            limit = 0
        if limit <= 0:
            raise LeafHubError(
                f"limit={options['limit']!r} in data spec {spec!r} is not a positive whole number"
            )
        options["limit"] = str(limit)


def _file_format(path_text: str) -> tuple[str, bool] | None:
    name = path_text.lower()
    compressed = name.endswith(".gz")
    if compressed:
        name = name[:-3]
    for ext, fmt in _FILE_FORMATS.items():
        if name.endswith(ext):
            if compressed and fmt == "parquet":
                return None  # parquet compresses itself; a gzipped parquet file is a mistake
            return fmt, compressed
    return None


def _parse_spec(spec: str) -> list[_Source]:
    """One spec -> one source, or several for a preset."""
    if not isinstance(spec, str) or not spec.strip():
        raise LeafHubError(f"empty data spec {spec!r}; give {_FORMS}")
    spec = spec.strip()
    head, options = _split_options(spec)
    lowered = head.lower()
    if lowered == "builtin":
        _check_options(spec, options, "builtin")
        return [_Source(spec, spec, "builtin", options=options)]
    if lowered in ("bert-tokens", "bert_tokens"):
        _check_options(spec, options, "bert-tokens")
        return [_Source(spec, spec, "bert-tokens", options=options)]
    if lowered == "words":
        _check_options(spec, options, "words")
        return [_Source(spec, spec, "words", options=options)]
    if lowered.startswith("words:"):
        _check_options(spec, options, "words")
        path = head[len("words:") :].strip()
        if not path:
            raise LeafHubError(f"data spec {spec!r} names no file; write words:PATH (one word per line)")
        return [_Source(spec, spec, "words", target=path, options=options, compressed=path.endswith(".gz"))]
    if lowered.startswith("hf:"):
        _check_options(spec, options, "hf")
        dataset = head[3:].strip()
        if not dataset:
            raise LeafHubError(
                f"data spec {spec!r} names no dataset; write hf:OWNER/NAME, e.g. hf:vblagoje/cc_news"
            )
        local = Path(dataset).expanduser().is_dir()
        return [_Source(spec, spec, "hf", target=dataset, options=options, needs_hub=not local)]
    if lowered.startswith("preset:"):
        _check_options(spec, options, "preset")
        return _expand_preset(spec, head[len("preset:") :].strip(), options)

    # Anything else is a local file.
    path = Path(head).expanduser()
    fmt = _file_format(head)
    prefix = re.match(r"^([A-Za-z][\w.-]+):(?![/\\])", head)
    if prefix and not path.exists():
        raise LeafHubError(f"unknown data source prefix {prefix.group(1) + ':'!r} in {spec!r}; give {_FORMS}")
    if path.is_dir():
        raise LeafHubError(
            f"data file {head!r} is a folder; give a file, or hf:{head} to read it as a dataset"
        )
    if fmt is None:
        if path.exists() or "." in path.name:
            raise LeafHubError(
                f"data file {head!r} has an unsupported format; use .jsonl, .json, .txt, .parquet, .csv or "
                ".tsv (optionally .gz, except parquet)"
            )
        raise LeafHubError(f"unknown data source {head!r}; give {_FORMS}")
    if not path.exists():
        raise LeafHubError(f"data file {head!r} does not exist; check the path")
    _check_options(spec, options, "txt" if fmt[0] == "txt" else "file")
    return [_Source(spec, spec, "file", target=str(path), options=options, fmt=fmt[0], compressed=fmt[1])]


def _expand_preset(spec: str, name: str, options: dict[str, str]) -> list[_Source]:
    if name not in PRESETS:
        raise LeafHubError(f"unknown preset {name!r} in {spec!r}; available: {', '.join(sorted(PRESETS))}")
    limit = int(options["limit"]) if "limit" in options else None
    sources = []
    for entry in PRESETS[name]:
        sub = entry.spec(limit)
        (source,) = _parse_spec(sub)
        source.title = entry.name
        sources.append(source)
    (tokens,) = _parse_spec("bert-tokens")
    tokens.title = "BERT tokens"
    vocab_file = options.get("vocab")
    if vocab_file:
        (vocab,) = _parse_spec(vocab_file)
    else:
        logger.info(
            "preset %s: no vocab=FILE (made by `leaf-hub vocab build`); the built-in `words` list stands in "
            "for the Vocabulary dataset",
            name,
        )
        (vocab,) = _parse_spec("words")
    vocab.title = "Vocabulary"
    return [*sources, tokens, vocab]


# --------------------------------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------------------------------


def check_specs(specs: list[str] | str) -> bool:
    """Parse every spec and check its files exist, reading nothing: bad specs fail before models load.

    Returns whether the specs need the student's tokenizer (``bert-tokens`` without ``tokenizer=``).
    """
    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        raise LeafHubError(f"no training data given; pass --data with {_FORMS}")
    sources = [source for spec in specs for source in _parse_spec(spec)]
    return any(s.type == "bert-tokens" and "tokenizer" not in s.options for s in sources)


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
    """
    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        raise LeafHubError(f"no training data given; pass --data with {_FORMS}")
    if max_texts is not None and max_texts <= 0:
        raise LeafHubError(f"max_texts={max_texts} must be a positive number of texts")
    sources: list[_Source] = []
    for spec in specs:
        sources.extend(_parse_spec(spec))
    seen_labels: dict[str, int] = {}
    for source in sources:
        n = seen_labels[source.label] = seen_labels.get(source.label, 0) + 1
        if n > 1:
            source.label = f"{source.label}#{n}"
    _require_hub([s for s in sources if s.needs_hub])
    if any(s.type == "bert-tokens" and "tokenizer" not in s.options for s in sources) and (
        student_tokenizer is None
    ):
        raise LeafHubError(
            "the bert-tokens data set needs the student's tokenizer, and none was given; pass the student "
            "(or use bert-tokens::tokenizer=NAME_OR_FOLDER)"
        )

    records: list[TextRecord] = []
    seen: set[tuple[str, str]] = set()
    stats: dict[str, dict[str, int]] = {}
    for source in sources:
        counts = {"read": 0, "kept": 0, "dropped_empty": 0, "dropped_duplicate": 0, "dropped_max_texts": 0}
        stats[source.label] = counts
        for raw, kind in _iter_source(source, student_tokenizer, seed):
            counts["read"] += 1
            text = raw.strip() if isinstance(raw, str) else ""
            if not text:
                counts["dropped_empty"] += 1
                continue
            key = (kind, text)
            if key in seen:
                counts["dropped_duplicate"] += 1
                continue
            seen.add(key)
            records.append(TextRecord(text, kind, source.label))
            counts["kept"] += 1
        if counts["read"] - counts["dropped_empty"] == 0:
            what = "empty" if counts["read"] == 0 else f"only empty texts ({counts['read']:,} rows)"
            raise LeafHubError(
                f"data source {source.spec!r} has no texts: it is {what}; check the file or column"
            )
        logger.info(
            "data %s%s: read %d, kept %d, dropped %d empty, %d duplicate",
            source.label,
            f" ({source.title})" if source.title else "",
            counts["read"],
            counts["kept"],
            counts["dropped_empty"],
            counts["dropped_duplicate"],
        )

    if max_texts is not None and len(records) > max_texts:
        keep = sorted(random.Random(seed).sample(range(len(records)), max_texts))
        kept_set = set(keep)
        for i, r in enumerate(records):
            if i not in kept_set:
                stats[r.source]["kept"] -= 1
                stats[r.source]["dropped_max_texts"] += 1
        records = [records[i] for i in keep]
    text_set = TextSet(records, stats)
    logger.info("training data: %s", text_set.summary())
    return text_set


def _hub_reachable() -> bool:
    if hub_offline(datasets=True):
        return False
    return _probe_hub()


@functools.lru_cache(maxsize=1)
def _probe_hub() -> bool:
    """One connection attempt per process; when it fails, huggingface_hub is switched to offline mode."""
    return ensure_hub_reachable_or_offline()


def _require_hub(sources: list[_Source]) -> None:
    """One error listing every source that needs the Hub, when the Hub cannot be used."""
    if not sources or _hub_reachable():
        return
    names = ", ".join(f"{s.title} (hf:{s.target})" if s.title else f"hf:{s.target}" for s in sources)
    raise LeafHubError(
        f"these data sets need the Hugging Face Hub, which is unreachable or switched off (HF_HUB_OFFLINE): "
        f"{names}; run where the Hub is reachable, or give local files (--data FILE.jsonl) or the offline "
        "sets builtin, bert-tokens and words"
    )


def _iter_source(source: _Source, student_tokenizer: Any, seed: int) -> Iterator[tuple[Any, Kind]]:
    opts = source.options
    limit = int(opts["limit"]) if "limit" in opts else None
    if source.type == "file":
        yield from _take(_iter_file(source), limit)
    elif source.type == "hf":
        yield from _iter_hf(source, seed, limit or DEFAULT_HF_LIMIT)
    else:
        kind: Kind = opts.get("kind", "document")  # type: ignore[assignment]
        if source.type == "builtin":
            items = list(builtin_corpus())
        elif source.type == "bert-tokens":
            tokenizer = _load_tokenizer(opts["tokenizer"]) if "tokenizer" in opts else student_tokenizer
            items = [(t, kind) for t in _vocab_pieces(tokenizer)]
        elif source.target:  # words:PATH
            items = [(line, kind) for _, line in _decoded_lines(Path(source.target), source.compressed)]
        else:
            items = [(w, kind) for w in builtin_words()]
        if limit is not None and limit < len(items):
            keep = sorted(random.Random(seed).sample(range(len(items)), limit))
            items = [items[i] for i in keep]
        yield from items


def _take(it: Iterable, limit: int | None) -> Iterator:
    for i, item in enumerate(it):
        if limit is not None and i >= limit:
            return
        yield item


# --------------------------------------------------------------------------------------------------
# Local files.
# --------------------------------------------------------------------------------------------------


def _open_binary(path: Path, compressed: bool):
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def _utf8_error(path: Path, exc: UnicodeDecodeError, raw: bytes, line: int, offset: int, compressed: bool):
    where = f"line {line}, byte offset {offset + exc.start}" + (
        " of the decompressed text" if compressed else ""
    )
    bad = raw[exc.start : exc.start + 1].hex()
    return LeafHubError(
        f"data file {path} is not valid UTF-8: byte 0x{bad} at {where}; re-encode it as UTF-8, e.g. "
        f"`iconv -f latin1 -t utf-8 {path.name} > fixed-{path.name}`"
    )


def _decoded_lines(path: Path, compressed: bool) -> Iterator[tuple[int, str]]:
    """(line number, text without the line break) for each line, with a clear error on bad bytes."""
    if not path.is_file():
        raise LeafHubError(f"data file {str(path)!r} does not exist; check the path")
    offset = 0
    try:
        with _open_binary(path, compressed) as f:
            for number, raw in enumerate(f, start=1):
                start = 3 if number == 1 and raw.startswith(codecs.BOM_UTF8) else 0
                try:
                    line = raw[start:].decode("utf-8")
                except UnicodeDecodeError as exc:
                    exc.start += start
                    raise _utf8_error(path, exc, raw, number, offset, compressed) from None
                offset += len(raw)
                yield number, line.rstrip("\r\n")
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise LeafHubError(
            f"data file {path} is not a complete gzip file ({exc}); re-create or re-download it"
        ) from None


class _Columns:
    """Which column holds the text and which (if any) the kind, checked against a file's columns."""

    def __init__(self, source: _Source):
        opts = source.options
        self.where = f"data file {source.target}"
        self.column = opts.get("column", "text")
        self.explicit_type = "type_column" in opts
        self.type_column = opts.get("type_column", "type")
        self.forced_kind: Kind | None = opts.get("kind")  # type: ignore[assignment]
        self.use_type = False

    def check(self, columns: Iterable[str], where: str | None = None) -> None:
        columns = list(columns)
        where = where or self.where
        if self.column not in columns:
            shown = ", ".join(repr(c) for c in columns[:30]) or "none"
            raise LeafHubError(
                f"{where} has no column {self.column!r} (its columns: {shown}); name the text column with "
                "'::column=NAME'"
            )
        if self.forced_kind and not self.explicit_type:
            self.use_type = False  # kind= alone sets every row, whatever a `type` column says
        elif self.type_column in columns:
            self.use_type = True
        elif self.explicit_type:
            raise LeafHubError(
                f"{where} has no type column {self.type_column!r} (its columns: {', '.join(columns)}); fix "
                "type_column= or set every row's kind with '::kind=query'"
            )

    def kind(self, value: Any, where: str) -> Kind:
        if not self.use_type:
            return self.forced_kind or "document"
        if value is None or (isinstance(value, str) and not value.strip()):
            return self.forced_kind or "document"
        kind = _KIND_ALIASES.get(str(value).strip().lower())
        if kind is None:
            raise LeafHubError(
                f"{where}: unknown type {value!r} in column {self.type_column!r}; allowed values are query "
                "and document (or passage); fix the column, or set every row's kind with '::kind=query'"
            )
        return kind  # type: ignore[return-value]

    def text(self, value: Any, where: str) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise LeafHubError(
            f"{where}: column {self.column!r} holds {type(value).__name__} values, not text; pick a text "
            "column with '::column=NAME'"
        )


def _iter_file(source: _Source) -> Iterator[tuple[Any, Kind]]:
    path = Path(source.target)
    fmt = source.fmt
    if fmt == "txt":
        kind: Kind = source.options.get("kind", "document")  # type: ignore[assignment]
        for _, line in _decoded_lines(path, source.compressed):
            yield line, kind
    elif fmt == "jsonl":
        yield from _iter_rows(_jsonl_rows(path, source.compressed), _Columns(source))
    elif fmt == "json":
        yield from _iter_rows(_json_rows(path, source.compressed), _Columns(source))
    elif fmt in ("csv", "tsv"):
        yield from _iter_csv(path, source, delimiter="," if fmt == "csv" else "\t")
    elif fmt == "parquet":
        yield from _iter_parquet(path, source)
    else:  # pragma: no cover - _parse_spec only makes the formats above
        raise LeafHubError(f"unsupported data file format {fmt!r}")


def _iter_rows(rows: Iterator[tuple[str, Any]], cols: _Columns) -> Iterator[tuple[Any, Kind]]:
    """Rows of JSON: plain strings are texts; objects are checked against the columns on the first one."""
    checked = False
    for where, row in rows:
        if isinstance(row, str):
            yield row, cols.forced_kind or "document"
            continue
        if not isinstance(row, dict):
            raise LeafHubError(
                f"{where} is a JSON {type(row).__name__}, not an object with a {cols.column!r} key"
            )
        if not checked:
            cols.check(row.keys(), where)
            checked = True
        yield cols.text(row.get(cols.column), where), cols.kind(row.get(cols.type_column), where)


def _jsonl_rows(path: Path, compressed: bool) -> Iterator[tuple[str, Any]]:
    for number, line in _decoded_lines(path, compressed):
        if not line.strip():
            continue
        where = f"line {number} of data file {path}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as exc:
            raise LeafHubError(
                f"{where} is not valid JSON ({exc.msg} at column {exc.colno}); a .jsonl file holds one JSON "
                "object per line"
            ) from None


def _json_rows(path: Path, compressed: bool) -> Iterator[tuple[str, Any]]:
    if not path.is_file():
        raise LeafHubError(f"data file {str(path)!r} does not exist; check the path")
    try:
        with _open_binary(path, compressed) as f:
            data = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise LeafHubError(
            f"data file {path} is not a complete gzip file ({exc}); re-create or re-download it"
        ) from None
    start = 3 if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        pos = exc.start + start
        line_start = data.rfind(b"\n", 0, pos) + 1
        line_end = data.find(b"\n", pos)
        line = data[line_start : line_end if line_end >= 0 else len(data)]
        exc.start = pos - line_start
        raise _utf8_error(path, exc, line, data.count(b"\n", 0, pos) + 1, line_start, compressed) from None
    if not text.strip():
        return
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # JSON lines saved as .json (what `Dataset.to_json` writes)
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        yield f"line {number} of data file {path}", json.loads(line)
                    except json.JSONDecodeError as exc2:
                        raise LeafHubError(
                            f"line {number} of data file {path} is not valid JSON ({exc2.msg}); give a JSON "
                            "array of objects or one object per line"
                        ) from None
            return
        raise LeafHubError(
            f"data file {path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    if isinstance(obj, dict):
        lists = {k: v for k, v in obj.items() if isinstance(v, list)}
        if lists and len(lists) == len(obj) and len({len(v) for v in lists.values()}) == 1:
            keys = list(lists)  # columnar: {"text": [...], "type": [...]}
            for i, values in enumerate(zip(*lists.values(), strict=True)):
                yield f"row {i + 1} of data file {path}", dict(zip(keys, values, strict=True))
            return
        if len(lists) == 1 and all(isinstance(r, (dict, str)) for r in next(iter(lists.values()))):
            obj = next(iter(lists.values()))  # {"data": [{...}, ...]}
        else:
            raise LeafHubError(
                f"data file {path} is a JSON object this loader cannot read; give an array of objects "
                '([{"text": ...}, ...]), a column object ({"text": [...]}) or JSON lines'
            )
    if not isinstance(obj, list):
        raise LeafHubError(
            f"data file {path} holds a single JSON {type(obj).__name__}; give an array of objects"
        )
    for i, row in enumerate(obj):
        yield f"item {i + 1} of data file {path}", row


def _iter_csv(path: Path, source: _Source, delimiter: str) -> Iterator[tuple[Any, Kind]]:
    cols = _Columns(source)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents exceed the 128 KiB default
    lines = (line + "\n" for _, line in _decoded_lines(path, source.compressed))
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        cols.check(header, f"data file {path} (header row)")
        text_i = header.index(cols.column)
        type_i = header.index(cols.type_column) if cols.use_type else None
        for row in reader:
            if not row:
                continue
            where = f"line {reader.line_num} of data file {path}"
            text = row[text_i] if text_i < len(row) else None
            value = row[type_i] if type_i is not None and type_i < len(row) else None
            yield text, cols.kind(value, where)
    except csv.Error as exc:
        raise LeafHubError(
            f"data file {path} is not valid {'CSV' if delimiter == ',' else 'TSV'} at line {reader.line_num} ({exc})"
        ) from None


def _iter_parquet(path: Path, source: _Source) -> Iterator[tuple[Any, Kind]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = _Columns(source)
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise LeafHubError(f"data file {path} is not a readable parquet file ({exc}); re-create it") from None
    schema = pf.schema_arrow
    cols.check(schema.names)
    text_type = schema.field(cols.column).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)) and not (
        hasattr(pa.types, "is_string_view") and pa.types.is_string_view(text_type)
    ):
        raise LeafHubError(
            f"column {cols.column!r} of data file {path} holds {text_type}, not text; pick a text column "
            "with '::column=NAME'"
        )
    wanted = [cols.column] + ([cols.type_column] if cols.use_type else [])
    row = 0
    for batch in pf.iter_batches(columns=wanted, batch_size=8192):
        texts = batch.column(0).to_pylist()
        types = batch.column(1).to_pylist() if cols.use_type else [None] * len(texts)
        for text, value in zip(texts, types, strict=True):
            row += 1
            yield text, cols.kind(value, f"row {row} of data file {path}")


# --------------------------------------------------------------------------------------------------
# Hugging Face datasets.
# --------------------------------------------------------------------------------------------------


def _iter_hf(source: _Source, seed: int, limit: int) -> Iterator[tuple[Any, Kind]]:
    """Stream ``limit`` shuffled rows of a dataset; every failure becomes one LeafHubError."""
    opts = source.options
    dataset = source.target
    label = f"hf:{dataset}" + (f" (config {opts['config']})" if opts.get("config") else "")
    page = f"https://huggingface.co/datasets/{dataset}"
    cols = _Columns(source)
    cols.where = label

    def fail(exc: BaseException) -> LeafHubError:
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        if isinstance(exc, ConnectionError) or "OfflineModeIsEnabled" in detail:
            hint = "the Hugging Face Hub is needed to stream it; run where the Hub is reachable or give a local file"
        elif "scripts are no longer supported" in detail:
            hint = "the dataset uses a loading script; try '::revision=refs/convert/parquet' (the Hub's parquet export)"
        elif source.needs_hub:
            hint = (
                f"check the id, config= and split= on {page}, and log in with `hf auth login` if it is gated"
            )
        else:
            hint = "check the folder holds data files (.parquet, .jsonl, .csv, ...) and the config= and split= options"
        return LeafHubError(f"could not read {label} ({type(exc).__name__}: {detail}); {hint}")

    try:
        import datasets

        path = str(Path(dataset).expanduser()) if not source.needs_hub else dataset
        ds = datasets.load_dataset(
            path,
            opts.get("config") or None,
            split=opts.get("split", "train"),
            streaming=True,
            revision=opts.get("revision") or None,
            data_files=opts.get("data_files") or None,
        )
        if getattr(ds, "column_names", None):
            cols.check(ds.column_names)
        ds = ds.shuffle(seed=seed, buffer_size=min(HF_SHUFFLE_BUFFER, max(limit, 1))).take(limit)
    except LeafHubError:
        raise
    except (
        Exception
    ) as exc:  # datasets raises many types (ConnectionError, ValueError, FileNotFoundError, ...)
        raise fail(exc) from exc

    from tqdm.auto import tqdm

    checked = bool(getattr(ds, "column_names", None))
    iterator = iter(ds)
    with tqdm(total=limit, desc=f"reading {label}", unit="rows", disable=None, leave=False) as bar:
        row_number = 0
        while True:
            try:
                row = next(iterator)
            except StopIteration:
                break
            except Exception as exc:
                raise fail(exc) from exc
            row_number += 1
            where = f"row {row_number} of {label}"
            if not checked:
                cols.check(row.keys())
                checked = True
            bar.update(1)
            yield cols.text(row.get(cols.column), where), cols.kind(row.get(cols.type_column), where)


# --------------------------------------------------------------------------------------------------
# Generated sets: BERT tokens, words, the built-in corpus.
# --------------------------------------------------------------------------------------------------

_UNUSED_TOKEN = re.compile(r"^[\[<]unused\d+[\]>]$")


def _load_tokenizer(name: str):
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise LeafHubError(
            f"could not load the tokenizer {name!r} for bert-tokens ({type(exc).__name__}); give a Hub id or a "
            "folder with tokenizer files"
        ) from None


def _vocab_pieces(tokenizer: Any) -> list[str]:
    """Every vocabulary entry as text, in id order, not de-duplicated (so the duplicates are counted)."""
    if not hasattr(tokenizer, "get_vocab") and hasattr(tokenizer, "tokenizer"):
        tokenizer = tokenizer.tokenizer  # a SentenceTransformer
    if not hasattr(tokenizer, "get_vocab"):
        raise LeafHubError(f"bert-tokens needs a transformers tokenizer, got {type(tokenizer).__name__}")
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(added, "special", False):
            special.add(str(added.content))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    wordpiece = backend is not None and type(backend.model).__name__ == "WordPiece"
    pieces = []
    for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        if token in special or _UNUSED_TOKEN.match(token):
            continue
        if token.startswith("##") and len(token) > 2:
            text = token[2:]
        elif wordpiece:
            text = token
        else:  # SentencePiece "▁word", byte-level BPE "Ġword": let the tokenizer turn it into text
            text = tokenizer.convert_tokens_to_string([token])
        text = text.strip()
        if text and "\ufffd" not in text:  # partial UTF-8 bytes of byte-level vocabularies are not text
            pieces.append(text)
    return pieces


def bert_tokens(tokenizer: Any) -> list[str]:
    """The paper's BERT-tokens set: every vocabulary entry of ``tokenizer`` as a text, de-duplicated.

    Special tokens and ``[unusedN]`` placeholders are skipped; ``##`` continuation pieces lose the ``##``.
    """
    return list(dict.fromkeys(_vocab_pieces(tokenizer)))


# Modules whose docstrings are tests, demos or generated tables rather than English prose.
_SKIP_MODULES = {
    "test", "idlelib", "lib2to3", "turtledemo", "ensurepip", "encodings", "pydoc_data", "tkinter", "this",
    "antigravity", "turtle", "sre_constants", "sre_parse", "sre_compile", "pydoc", "venv", "msilib",
}  # fmt: skip
# Summaries that start with one of these verbs read as "how do I <summary>?" queries.
_HOWTO_VERBS = {
    "return", "create", "convert", "read", "write", "open", "close", "get", "set", "remove", "delete", "add",
    "compute", "calculate", "check", "test", "find", "parse", "format", "encode", "decode", "split", "join",
    "copy", "move", "make", "build", "send", "receive", "start", "stop", "wait", "run", "load", "save",
    "register", "change", "compare", "construct", "extract", "generate", "insert", "list", "print", "raise",
    "rename", "replace", "reset", "search", "sort", "translate", "update", "validate", "wrap", "flush",
    "acquire", "release", "execute", "call", "fetch", "install", "lock", "match", "merge", "normalize",
    "quote", "unquote", "escape", "serialize", "clear", "append", "extend", "count", "determine",
}  # fmt: skip
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"(])")
_RST_ROLE = re.compile(r":[a-z:]+:`~?([^`<]+?)(?:\s*<[^>]+>)?`")


def _clean(text: str) -> str:
    text = _RST_ROLE.sub(r"\1", text)
    text = text.replace("``", '"').replace("`", "")
    text = re.sub(r"(?<![\w*])\*{1,2}([^*\s][^*]*?)\*{1,2}(?![\w*])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def _is_prose(text: str, min_words: int = 6) -> bool:
    words = text.split()
    if len(words) < min_words or len(words) > 400:
        return False
    if ">>>" in text or "::=" in text or text.count("|") > 2 or text.count("=") > 3:
        return False
    alpha = sum(1 for w in words if re.fullmatch(r"[A-Za-z][a-z'-]*[.,;:!?)]*", w))
    return alpha / len(words) >= 0.7 and text[0].isupper()


def _topic_blocks(topic: str) -> Iterator[tuple[str, str]]:
    """('heading' | 'para', text) for one pydoc topic: headings, and prose paragraphs (code skipped)."""
    lines = topic.splitlines()
    block: list[str] = []

    def flush() -> Iterator[tuple[str, str]]:
        if not block:
            return
        first = block[0]
        indent = len(first) - len(first.lstrip())
        if first.lstrip().startswith(("+", "|", ">>>", "...")) or (
            indent >= 3 and not first.lstrip().startswith("*")
        ):
            return  # tables, doctests, grammar and code examples
        text = _clean(" ".join(line.strip().removeprefix("* ") for line in block))
        yield "para", text

    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if (
            line.strip()
            and len(set(line.strip())) == 1
            and line.strip()[0] in "*=-~^"
            and len(line.strip()) >= 3
        ):
            continue  # the underline of a heading (handled with the heading)
        if (
            line.strip()
            and nxt.strip()
            and len(set(nxt.strip())) == 1
            and nxt.strip()[0] in "*=-~^"
            and (len(nxt.strip()) >= max(3, len(line.strip()) - 2))
        ):
            yield from flush()
            block = []
            yield "heading", _clean(line)
            continue
        if not line.strip():
            yield from flush()
            block = []
            continue
        if block and line.lstrip().startswith("* ") and not block[0].lstrip().startswith("* "):
            yield from flush()  # a list starts: each item is its own paragraph
            block = []
        elif block and line.lstrip().startswith("* "):
            yield from flush()
            block = []
        block.append(line)
    yield from flush()


def _heading_queries(heading: str) -> list[str]:
    h = heading.strip().rstrip(":").replace('"', "")
    if not h or len(h.split()) > 8:
        return []
    h = re.sub(r"\s*\(.*?\)\s*", " ", h).strip()
    lower = h[0].lower() + h[1:] if not h[:2].isupper() else h
    templates = (
        f"What is {lower}?",
        f"How do {lower} work in Python?",
        f"python {lower.lower()}",
        f"Explain {lower} with an example",
        f"{lower.lower()} documentation",
    )
    i = zlib.crc32(h.encode()) % len(templates)
    return [templates[i], templates[(i + 2) % len(templates)]]


def _stdlib_files() -> list[Path]:
    """The standard library's pure-Python top-level modules (a package by its __init__), in a fixed order.

    Submodules of packages are left out: they double the parse time (about 2 s more) for texts much like
    the ones already there.
    """
    files: list[Path] = []
    for name in sorted(getattr(sys, "stdlib_module_names", ())):
        if name in _SKIP_MODULES or name.startswith("_"):
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            files.append(Path(spec.origin))
    return files


def _docstring_texts(path: Path) -> Iterator[tuple[str, Kind]]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
        return
    module = path.stem if path.stem != "__init__" else path.parent.name
    doc = ast.get_docstring(tree)
    if doc:
        for para in doc.split("\n\n"):
            text = _clean(para)
            if _is_prose(text, 8):
                yield text, "document"
    for node in tree.body:
        nodes = [(node, None)]
        if isinstance(node, ast.ClassDef):
            nodes += [(child, node.name) for child in node.body]
        for item, owner in nodes:
            if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if item.name.startswith("_"):
                continue
            doc = ast.get_docstring(item)
            if not doc:
                continue
            paras = [_clean(p) for p in doc.split("\n\n")]
            summary = paras[0]
            qualname = ".".join(p for p in (module, owner, item.name) if p)
            if _is_prose(summary, 5):
                yield summary, "document"
                yield from ((q, "query") for q in _docstring_queries(summary, qualname, item))
            for para in paras[1:3]:
                if _is_prose(para, 12):
                    yield para, "document"


def _docstring_queries(summary: str, qualname: str, node: ast.AST) -> list[str]:
    first = re.split(r"(?<=[.;:])\s", summary, maxsplit=1)[0].rstrip(".;:")
    words = first.split()
    pick = zlib.crc32(qualname.encode()) % 4
    out = []
    if words and words[0].lower().rstrip("s") in _HOWTO_VERBS and 3 <= len(words) <= 16:
        verb = words[0].lower()
        verb = verb[:-1] if verb.endswith("s") and verb[:-1] in _HOWTO_VERBS else verb
        out.append(
            f"how do I {verb} {' '.join(words[1:])} in python?"
            if pick % 2
            else f"how to {verb} {' '.join(words[1:])}"
        )
    if isinstance(node, ast.ClassDef):
        out.append(f"What is {qualname} used for?")
    elif pick == 0:
        out.append(f"What does {qualname}() do?")
    elif pick == 1:
        out.append(f"python {qualname.replace('.', ' ')}")
    return out


def _section_document(heading: str, paragraphs: list[str]) -> list[tuple[str, Kind]]:
    """A long document: a section's heading and its first paragraphs, up to about 350 words."""
    if len(paragraphs) < 2:
        return []
    parts = [heading + "."] if heading else []
    words = 0
    for para in paragraphs:
        if words > 350:
            break
        parts.append(para)
        words += len(para.split())
    return [(" ".join(parts), "document")]


@functools.lru_cache(maxsize=1)
def builtin_corpus() -> tuple[tuple[str, Kind], ...]:
    """An English corpus of queries and documents built only from what every CPython install carries.

    Documents: paragraphs of the language reference topics in ``pydoc_data.topics``, longer sections made
    of several paragraphs, single sentences, and the summaries and paragraphs of the standard library's
    docstrings. Queries: questions and keyword searches derived from section headings and from
    docstring summaries ("how to join two or more pathname components", "What does os.path.join() do?").
    Deterministic for a given Python version; texts are not de-duplicated here (``load_texts`` does it).
    """
    out: list[tuple[str, Kind]] = []
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions split the docs out of the standard library
        topics = {}
    for name in sorted(topics):
        heading = ""
        section: list[str] = []
        for kind, text in _topic_blocks(topics[name]):
            if kind == "heading":
                out.extend(_section_document(heading, section))
                heading, section = text, []
                out.extend((q, "query") for q in _heading_queries(text))
            elif _is_prose(text):
                out.append((text, "document"))
                section.append(text)
                sentences = _SENTENCE_END.split(text)
                if len(sentences) > 1:
                    out.extend((s, "document") for s in sentences if _is_prose(s, 5) and len(s.split()) <= 40)
        out.extend(_section_document(heading, section))
    for path in _stdlib_files():
        out.extend(_docstring_texts(path))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def builtin_words() -> tuple[str, ...]:
    """English words (lowercase, alphabetic, 2+ letters, seen twice or more) in the built-in corpus's prose, sorted."""
    counts: dict[str, int] = {}
    for text, kind in builtin_corpus():
        if kind == "document":
            for w in re.findall(r"(?<![\w.])[A-Za-z]{2,}(?![\w.(])", text):
                counts[w.lower()] = counts.get(w.lower(), 0) + 1
    # A word seen once is often a fragment of an identifier or an abbreviation; twice is a word.
    return tuple(sorted(w for w, n in counts.items() if n >= 2))

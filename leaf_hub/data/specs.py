"""The ``--data`` spec grammar and the paper's presets: what a user writes, parsed into :class:`Source` s.

A spec is ``SOURCE`` or ``SOURCE::OPTIONS``, where ``OPTIONS`` is ``key=value`` pairs joined by ``,``
(the first ``::`` in the spec starts the options)::

    FILE[::column=C,type_column=T,kind=K,limit=N]   local .jsonl .json .txt .parquet .csv .tsv
                                                     (.jsonl.gz .json.gz .txt.gz .csv.gz .tsv.gz too)
    hf:DATASET[::config=,split=,column=,type_column=,kind=,limit=,revision=,data_files=,where=]
                                                     a Hugging Face dataset (Hub id or local folder)
    bert-tokens[::kind=,limit=,tokenizer=]           every token of the student's vocabulary
    words[::kind=,limit=]                            an English word list built from Python's own docs
    words:PATH[::kind=,limit=]                       a word list file, one word per line
    builtin[::limit=]                                an English corpus built from Python's own docs
    preset:leaf-paper[::limit=,vocab=PATH]           the paper's training mix, capped (needs the Hub)
    preset:leaf-paper-full[::limit=,vocab=PATH]      the paper's mix at the paper's sizes (~6.4M texts)
    preset:quickstart                                builtin::limit=1200 + bert-tokens::limit=800 (no download)

Options:

* ``column`` -- the text column (default ``text``). Files: JSON objects' key, CSV/TSV header name (the
  first row is the header), parquet column. Not for ``.txt`` (one text per line).
* ``type_column`` -- a column holding ``query`` or ``document`` per row (default ``type``, used when
  present). ``passage`` counts as ``document``; an empty value means ``document`` (or ``kind=``).
* ``kind`` -- ``query`` or ``document``: the kind of every row, or with an explicit ``type_column=``
  the kind of rows whose type is empty.
* ``limit`` -- at most N rows from this source: the first N rows of a file, the first N rows of a
  shuffled stream for ``hf:``, a random sample (by the seed) of a generated set. ``limit=all`` reads
  everything (the default for files and generated sets).
* ``hf:`` only: ``config`` (subset), ``split`` (default ``train``), ``revision``, ``data_files`` (a glob
  inside the repository), ``where=COLUMN:VALUE`` (keep only rows whose COLUMN equals VALUE, e.g.
  ``where=language:en``). Default ``limit`` is 100,000 rows. Datasets are streamed, never downloaded
  whole, and shuffled with a 10,000-row buffer and the seed.
* ``bert-tokens`` only: ``tokenizer`` -- a tokenizer Hub id or folder instead of the student's.
* ``preset:`` only: ``limit`` caps every Hub source of the preset; ``vocab`` is the Vocabulary dataset
  file made by ``leaf-hub vocab build`` (without it the built-in ``words`` list stands in).

Examples: ``texts.jsonl.gz``, ``data.csv::column=sentence,kind=query,limit=1000``,
``hf:sentence-transformers/amazon-qa::column=query,kind=query,limit=50000``, ``builtin``.

Parsing reads nothing but the file system's names (:func:`check_specs` runs before any model loads).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from leaf_hub.errors import LeafHubError

logger = logging.getLogger(__name__)

# What the teacher is told a text is. The one definition (the teachers import it from here).
Kind = Literal["query", "document"]
KINDS: tuple[Kind, ...] = ("query", "document")
KIND_ALIASES: dict[str, Kind] = {"query": "query", "document": "document", "passage": "document"}

DEFAULT_HF_LIMIT = 100_000
HF_SHUFFLE_BUFFER = 10_000

DATA_SPEC_HELP = (
    "training texts; repeatable. FILE (.jsonl/.json/.txt/.parquet/.csv/.tsv, .gz too), hf:DATASET, "
    "bert-tokens, words, words:PATH, builtin, preset:quickstart, preset:leaf-paper or preset:leaf-paper-full, "
    "optionally "
    "followed by '::key=value,...' (column=, type_column=, kind=query|document, limit=N|all, config=, "
    "split=); see leaf_hub/data/specs.py"
)


# --------------------------------------------------------------------------------------------------
# The paper's training mix.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PresetSource:
    """One Hub dataset of a preset: where its texts are and what kind they are (``limit=None``: all rows)."""

    name: str
    dataset: str
    config: str | None
    split: str
    column: str
    kind: Kind
    limit: int | None
    revision: str | None = None
    data_files: str | None = None
    where: str | None = None

    def spec(self, limit: int | None = None) -> str:
        rows = limit or self.limit
        opts = {
            "config": self.config,
            "split": self.split,
            "column": self.column,
            "kind": self.kind,
            "limit": str(rows) if rows else "all",
            "revision": self.revision,
            "data_files": self.data_files,
            "where": self.where,
        }
        return f"hf:{self.dataset}::" + ",".join(f"{k}={v}" for k, v in opts.items() if v)


# LoTTE's repository has a loading script, which `datasets` no longer runs: read the Hub's parquet export of
# its dev questions (search + forum, all five topics pooled) instead.
_LOTTE = {"revision": "refs/convert/parquet", "data_files": "pooled/*_dev/*.parquet"}

# The LEAF paper's mix (arXiv 2509.12539, section 3): web text and news as documents, questions from
# five QA/search collections as queries, plus BERT tokens and the Vocabulary set (added by the preset).
# Row counts here are this package's default (about 850k texts, an hour of teacher time on one GPU),
# not the paper's: ``preset:leaf-paper-full`` below has those.
#
#   name        Hub dataset                            config          split         column    kind      rows
LEAF_PAPER_MIX: tuple[PresetSource, ...] = (
    PresetSource("FineWeb", "HuggingFaceFW/fineweb", "sample-10BT", "train", "text", "document", 200_000),
    PresetSource("CC-News", "vblagoje/cc_news", None, "train", "text", "document", 100_000),
    PresetSource("Amazon QA", "sentence-transformers/amazon-qa", None, "train", "query", "query", 100_000),
    PresetSource("LoTTE", "colbertv2/lotte", None, "train", "query", "query", 50_000, **_LOTTE),
    PresetSource(
        "MS MARCO", "sentence-transformers/msmarco-corpus", "query", "train", "text", "query", 200_000
    ),
    PresetSource("PubMedQA", "qiaojin/PubMedQA", "pqa_artificial", "train", "question", "query", 100_000),
    PresetSource("TriviaQA", "mandarjoshi/trivia_qa", "rc.nocontext", "train", "question", "query", 100_000),
)

# The paper's own sizes: 3M FineWeb documents from the 10BT sample, 100k English CC-News articles per year
# 2016-2024 (stanford-oval/ccnews has one config per year; its text column is ``plain_text``), and every
# question of the query sets; with BERT tokens and the 479k-row Vocabulary that is about 6.4M texts, the
# paper's ~200k batches of 32 per epoch. Distilling it needs the out-of-core path (the default since the
# data, tokens and teacher vectors live on disk): about 13 GB of float16 vectors for a 1024-d teacher.
LEAF_PAPER_FULL_MIX: tuple[PresetSource, ...] = (
    PresetSource("FineWeb", "HuggingFaceFW/fineweb", "sample-10BT", "train", "text", "document", 3_000_000),
    *(
        PresetSource(
            f"CC-News {year}",
            "stanford-oval/ccnews",
            str(year),
            "train",
            "plain_text",
            "document",
            100_000,
            where="language:en",
        )  # fmt: skip
        for year in range(2016, 2025)
    ),
    PresetSource("Amazon QA", "sentence-transformers/amazon-qa", None, "train", "query", "query", None),
    PresetSource("LoTTE", "colbertv2/lotte", None, "train", "query", "query", None, **_LOTTE),
    PresetSource("MS MARCO", "sentence-transformers/msmarco-corpus", "query", "train", "text", "query", None),
    PresetSource("PubMedQA", "qiaojin/PubMedQA", "pqa_artificial", "train", "question", "query", None),
    PresetSource("TriviaQA", "mandarjoshi/trivia_qa", "rc.nocontext", "train", "question", "query", None),
)
PRESETS: dict[str, tuple[PresetSource, ...]] = {
    "leaf-paper": LEAF_PAPER_MIX,
    "leaf-paper-full": LEAF_PAPER_FULL_MIX,
}
# Presets made of other specs, read without the Hub. ``quickstart`` is the README's first run: 2,000 texts,
# a few minutes of teacher time on two CPU cores.
LOCAL_PRESETS: dict[str, tuple[str, ...]] = {
    "quickstart": ("builtin::limit=1200", "bert-tokens::limit=800"),
}


def describe_preset(name: str = "leaf-paper") -> str:
    """A plain-text table of a preset's sources (for help texts and model cards)."""
    rows = [("source", "Hub dataset", "config", "split", "column", "kind", "rows")]
    for s in PRESETS[name]:
        count = f"{s.limit:,}" if s.limit else "all"
        rows.append((s.name, s.dataset, s.config or "-", s.split, s.column, s.kind, count))
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
    "hf": {"config", "split", "column", "type_column", "kind", "limit", "revision", "data_files", "where"},
    "bert-tokens": {"kind", "limit", "tokenizer"},
    "words": {"kind", "limit"},
    "builtin": {"limit"},
    "preset": {"limit", "vocab"},
}
FORMS = (
    "a file (.jsonl, .json, .txt, .parquet, .csv, .tsv, or .gz of those), hf:DATASET, bert-tokens, "
    "words, words:PATH, builtin, preset:quickstart or preset:leaf-paper"
)


@dataclass
class Source:
    """One parsed source of texts; a preset expands into several."""

    label: str  # stats key and TextRecord.source
    spec: str  # the spec as the user wrote it (or as a preset generated it)
    type: str  # file | hf | bert-tokens | words | builtin
    target: str = ""  # path, dataset id, or "" for generated sets
    options: dict[str, str] = field(default_factory=dict)
    fmt: str = ""  # file format
    compressed: bool = False
    needs_hub: bool = False
    title: str = ""  # human name (preset sources)

    @property
    def limit(self) -> int | None:
        """The ``limit=`` option as a number (None: no limit given, or ``limit=all``)."""
        value = self.options.get("limit")
        return None if value in (None, "all") else int(value)

    @property
    def kind(self) -> Kind:
        """The ``kind=`` option (documents by default)."""
        return self.options.get("kind", "document")  # type: ignore[return-value]


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
        if options["limit"].lower() == "all":
            options["limit"] = "all"
        else:
            try:
                limit = int(options["limit"].replace("_", ""))
            except ValueError:
                limit = 0
            if limit <= 0:
                raise LeafHubError(
                    f"limit={options['limit']!r} in data spec {spec!r} is not a positive whole number (or all)"
                )
            options["limit"] = str(limit)
    where = options.get("where")
    if where is not None and (":" not in where or not where.partition(":")[0].strip()):
        raise LeafHubError(
            f"where={where!r} in data spec {spec!r} is not COLUMN:VALUE; write e.g. where=language:en"
        )


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


def parse_spec(spec: str) -> list[Source]:
    """One spec -> one source, or several for a preset. Bad specs raise a one-line :class:`LeafHubError`."""
    if not isinstance(spec, str) or not spec.strip():
        raise LeafHubError(f"empty data spec {spec!r}; give {FORMS}")
    spec = spec.strip()
    head, options = _split_options(spec)
    lowered = head.lower()
    if lowered == "builtin":
        _check_options(spec, options, "builtin")
        return [Source(spec, spec, "builtin", options=options)]
    if lowered in ("bert-tokens", "bert_tokens"):
        _check_options(spec, options, "bert-tokens")
        return [Source(spec, spec, "bert-tokens", options=options)]
    if lowered == "words":
        _check_options(spec, options, "words")
        return [Source(spec, spec, "words", options=options)]
    if lowered.startswith("words:"):
        _check_options(spec, options, "words")
        path = head[len("words:") :].strip()
        if not path:
            raise LeafHubError(f"data spec {spec!r} names no file; write words:PATH (one word per line)")
        return [
            Source(
                spec, spec, "words", target=path, options=options, fmt="txt", compressed=path.endswith(".gz")
            )
        ]
    if lowered.startswith("hf:"):
        _check_options(spec, options, "hf")
        dataset = head[3:].strip()
        if not dataset:
            raise LeafHubError(
                f"data spec {spec!r} names no dataset; write hf:OWNER/NAME, e.g. hf:vblagoje/cc_news"
            )
        local = Path(dataset).expanduser().is_dir()
        return [Source(spec, spec, "hf", target=dataset, options=options, needs_hub=not local)]
    if lowered.startswith("preset:"):
        _check_options(spec, options, "preset")
        return _expand_preset(spec, head[len("preset:") :].strip(), options)

    # Anything else is a local file.
    path = Path(head).expanduser()
    fmt = _file_format(head)
    prefix = re.match(r"^([A-Za-z][\w.-]+):(?![/\\])", head)
    if prefix and not path.exists():
        raise LeafHubError(f"unknown data source prefix {prefix.group(1) + ':'!r} in {spec!r}; give {FORMS}")
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
        raise LeafHubError(f"unknown data source {head!r}; give {FORMS}")
    if not path.exists():
        raise LeafHubError(f"data file {head!r} does not exist; check the path")
    _check_options(spec, options, "txt" if fmt[0] == "txt" else "file")
    return [Source(spec, spec, "file", target=str(path), options=options, fmt=fmt[0], compressed=fmt[1])]


def _expand_preset(spec: str, name: str, options: dict[str, str]) -> list[Source]:
    if name in LOCAL_PRESETS:
        if options:
            raise LeafHubError(
                f"preset {name!r} takes no options ({spec!r}); give its parts instead: "
                + " ".join(f"--data {part}" for part in LOCAL_PRESETS[name])
            )
        return [source for part in LOCAL_PRESETS[name] for source in parse_spec(part)]
    if name not in PRESETS:
        available = ", ".join(sorted([*PRESETS, *LOCAL_PRESETS]))
        raise LeafHubError(f"unknown preset {name!r} in {spec!r}; available: {available}")
    limit = int(options["limit"]) if options.get("limit", "all") != "all" else None
    sources = []
    for entry in PRESETS[name]:
        (source,) = parse_spec(entry.spec(limit))
        source.title = entry.name
        sources.append(source)
    (tokens,) = parse_spec("bert-tokens")
    tokens.title = "BERT tokens"
    vocab_file = options.get("vocab")
    if vocab_file:
        (vocab,) = parse_spec(vocab_file)
    else:
        logger.info(
            "preset %s: no vocab=FILE (made by `leaf-hub vocab build`); the built-in `words` list stands in "
            "for the Vocabulary dataset",
            name,
        )
        (vocab,) = parse_spec("words")
    vocab.title = "Vocabulary"
    return [*sources, tokens, vocab]


def parse_specs(specs: list[str] | str) -> list[Source]:
    """Every spec parsed, labels made unique (the same file twice: ``FILE`` and ``FILE#2``)."""
    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        raise LeafHubError(f"no training data given; pass --data with {FORMS}")
    sources: list[Source] = []
    for spec in specs:
        sources.extend(parse_spec(spec))
    seen: dict[str, int] = {}
    for source in sources:
        n = seen[source.label] = seen.get(source.label, 0) + 1
        if n > 1:
            source.label = f"{source.label}#{n}"
    return sources


def check_specs(specs: list[str] | str) -> bool:
    """Parse every spec and check its files exist, reading nothing: bad specs fail before models load.

    Returns whether the specs need the student's tokenizer (``bert-tokens`` without ``tokenizer=``).
    """
    return needs_student_tokenizer(parse_specs(specs))


def needs_student_tokenizer(sources: list[Source]) -> bool:
    return any(s.type == "bert-tokens" and "tokenizer" not in s.options for s in sources)

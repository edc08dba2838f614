"""The options of ``evaluate`` and ``benchmark``, with their defaults, in one place.

:class:`EvaluateConfig` is what :func:`leaf_hub.evaluation.evaluate.evaluate` scores, :class:`BenchConfig`
what :func:`leaf_hub.evaluation.benchmark.benchmark` times. The command lines (``leaf-hub evaluate``,
``leaf-hub bench``) are generated from these dataclasses (each field's ``metadata`` carries its help line).
This module imports nothing heavy, so ``--help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leaf_hub.errors import ConfigError
from leaf_hub.models import BACKENDS

DEFAULT_ALIGNMENT_MAX = 1000
KINDS = ("queries", "documents")
INTERLEAVE = ("repeat", "batch")
BATCHING = ("sorted", "arrival")

# leaf-hub bench's two protocols. Quick (the default): the deployment backends, a single text and a full
# batch, 3 repeats; a few minutes on 2 cores. Thorough: every backend and the paper's batch sizes, 5
# repeats (2,880 timed calls; hours on 2 cores with the 110M-parameter teacher).
QUICK = {"backends": ("onnx", "onnx-int8"), "batch_sizes": (1, 16), "repeats": 3}
THOROUGH = {"backends": BACKENDS, "batch_sizes": (1, 2, 4, 8, 16, 24), "repeats": 5}


def _opt(help: str, **extra) -> dict:
    """Field metadata: the help line, and optionally ``choices``, ``flag``, ``metavar``, ``parse``."""
    return {"help": help, **extra}


def _comma_list(convert: Callable[[str], Any], what: str) -> Callable[[str], list]:
    def parse(text: str) -> list:
        try:
            values = [convert(v.strip()) for v in str(text).split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"expected comma-separated {what}, got {text!r}") from None
        if not values:
            raise ValueError(f"expected comma-separated {what}, got {text!r}")
        return values

    parse.__name__ = f"comma-separated {what}"
    return parse


parse_int_list = _comma_list(int, "integers")
parse_name_list = _comma_list(str, "names")


def _flatten(values: Iterable | None, parse: Callable[[str], list]) -> list | None:
    """A list option's values: each may be a comma-separated string, a parsed list, or one value."""
    if values is None:
        return None
    if isinstance(values, (str, int)):
        values = [values]
    out: list = []
    for value in values:
        if isinstance(value, str):
            out += parse(value)
        elif isinstance(value, (list, tuple)):
            out += list(value)
        else:
            out.append(value)
    return out


def _positive(config: Any, name: str) -> None:
    value = getattr(config, name)
    if value is not None and value < 1:
        raise ConfigError(name, f"{{option}} {value} must be at least 1")


def _choice(config: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if value not in choices:
        raise ConfigError(name, f"{{option}} is one of {', '.join(choices)}, not {value!r}")


@dataclass
class EvaluateConfig:
    """What ``evaluate`` scores: a leaf against its teacher (and the asymmetric pair) on retrieval, STS,
    alignment and MRL / quantization, or a distillation run's checkpoints. Give a leaf (or a run) and at least
    one task; the rest has defaults."""

    leaf: str | None = field(
        default=None, metadata=_opt("leaf model folder or Hub id (default: RUN_DIR/leaf with --run)")
    )
    teacher: str | None = field(
        default=None,
        metadata=_opt(
            "teacher Hub id or folder (default: the 'teacher' recorded in the leaf's leaf_run.json)"
        ),
    )
    retrieval: list[str] = field(
        default_factory=list,
        metadata=_opt(
            "BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv; split test), hf:ORG/NAME Hub dataset "
            "in BEIR layout, or nanobeir:NAME (Hub); repeatable (default: none)",
            metavar="[NAME=]PATH_OR_ID[:SPLIT]",
        ),
    )
    sts: list[str] = field(
        default_factory=list,
        metadata=_opt(
            "STS-B layout file (sts-dev.csv), score<TAB>s1<TAB>s2 TSV, hf:ORG/NAME[:SPLIT] or stsb (the Hub's "
            "STS-B test split); repeatable (default: none)",
            metavar="[NAME=]PATH_OR_ID",
        ),
    )
    overlap: list[str] = field(
        default_factory=list,
        metadata=_opt(
            "a folder with corpus.jsonl and queries.jsonl (no qrels needed) for the label-free top-10 "
            "overlap; repeatable; retrieval collections get it too (default: none)",
            metavar="[NAME=]PATH",
        ),
    )
    alignment_texts: str | None = field(
        default=None,
        metadata=_opt(
            "held-out texts for leaf-vs-teacher L2/cosine: text file, JSON lines (text, type), or a run folder "
            "with validation.jsonl (default: RUN_DIR/validation.jsonl, else the collections' texts)",
            metavar="PATH",
        ),
    )
    alignment_max: int = field(
        default=DEFAULT_ALIGNMENT_MAX, metadata=_opt("use at most the first N held-out texts")
    )
    run: Path | None = field(
        default=None,
        metadata=_opt(
            "a distillation run folder: also evaluate RUN_DIR/checkpoints/epoch-* and plot validation L2 "
            "against nDCG@10 on the first retrieval collection",
            metavar="RUN_DIR",
        ),
    )
    output: Path | None = field(
        default=Path("report.json"),
        metadata=_opt("report JSON path; the Markdown and PNGs go beside it", metavar="PATH"),
    )
    dims: list[int] | None = field(
        default=None,
        metadata=_opt(
            "Matryoshka dimensions, comma-separated (default: 64, 128, 256, ... below the full dimension, "
            "and the full one)",
            metavar="N,N,...",
        ),
    )
    mrl_quant: bool = field(
        default=True,
        metadata=_opt(
            "score truncated (Matryoshka) and int8 / binary quantized embeddings too",
            no_help="skip the truncation / quantization variants",
        ),
    )
    plots: bool = field(
        default=True, metadata=_opt("write PNG plots", no_help="write JSON and Markdown only, no plots")
    )
    batch_size: int = field(default=32, metadata=_opt("encoding batch size"))
    device: str | None = field(
        default=None, metadata=_opt("torch device (default: sentence-transformers' choice)")
    )
    leaf_backend: str = field(
        default="torch",
        metadata=_opt(
            "run the leaf in PyTorch or as its ONNX export, fp32 or int8 weights, on ONNX Runtime (CPU; CUDA "
            "with --device cuda and onnxruntime-gpu; exported into the leaf-hub cache when the folder has no "
            "onnx/): the quality of what you serve",
            choices=BACKENDS,
        ),
    )
    teacher_backend: str = field(
        default="torch",
        metadata=_opt(
            "run the teacher in PyTorch or as its ONNX export (as --leaf-backend)", choices=BACKENDS
        ),
    )
    cache_dir: Path | None = field(
        default=None,
        metadata=_opt(
            "embedding cache folder (default: $LEAF_HUB_CACHE/embeddings or ~/.cache/leaf-hub/embeddings)",
            metavar="DIR",
        ),
    )
    cache: bool = field(
        default=True,
        metadata=_opt("cache embeddings on disk", no_help="keep embeddings in memory only (no disk cache)"),
    )
    save_to_leaf: bool = field(
        default=True,
        metadata=_opt(
            "copy the report into the leaf folder",
            no_help="do not copy the report into the leaf folder (by default it lands there as "
            "eval_report.json, or eval_report.BACKEND.json for an ONNX leaf, where the model card finds it; "
            "never for Hub ids)",
        ),
    )

    def __post_init__(self) -> None:
        for name in ("retrieval", "sts", "overlap"):
            value = getattr(self, name)
            setattr(self, name, [value] if isinstance(value, str) else list(value or []))
        if self.output is not None:
            self.output = Path(self.output).expanduser()
        if self.run is not None:
            self.run = Path(self.run).expanduser()
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir).expanduser()
        self.dims = self._parse_dims(self.dims)

    @staticmethod
    def _parse_dims(dims: Any) -> list[int] | None:
        if dims is None or dims == []:
            return None
        try:
            values = _flatten(dims, parse_int_list) or []
            values = sorted({int(d) for d in values})
        except (ValueError, TypeError):
            text = ",".join(map(str, dims)) if isinstance(dims, (list, tuple)) else str(dims)
            raise ConfigError(
                "dims",
                f"{{option}} {text!r} is not a comma-separated list of integers; e.g. {{option}} 64,128,256",
            ) from None
        if not values or values[0] < 1:
            raise ConfigError("dims", f"{{option}} {values}: dimensions must be positive integers")
        return values

    def validate(self) -> None:
        """Raise :class:`ConfigError` for the first option out of range; reads nothing from disk but the
        output path's kind."""
        _positive(self, "batch_size")
        _positive(self, "alignment_max")
        _choice(self, "leaf_backend", BACKENDS)
        _choice(self, "teacher_backend", BACKENDS)
        if self.output is not None and self.output.is_dir():
            raise ConfigError(
                "output", f"{{option}} {str(self.output)!r} is a folder; give a file name such as report.json"
            )
        if not (self.leaf or self.run):
            raise ConfigError(
                "leaf", "no leaf given; pass {option} DIR (or a run folder, whose leaf/ is used)"
            )
        if self.run is not None and self.leaf_backend != "torch":
            raise ConfigError(
                "run",
                "{option} evaluates the run's PyTorch checkpoints, which have no ONNX export; evaluate the "
                f"exported leaf on its own with the {self.leaf_backend} backend, or the run with the torch one",
            )


@dataclass
class BenchConfig:
    """What ``benchmark`` times: a leaf against its teacher, texts per second and latency per batch size, on
    each backend. ``leaf`` and ``teacher`` are required. Defaults are the quick protocol (minutes on 2
    cores); ``thorough=True`` is the paper's Table 8 grid (hours); options given explicitly win over both."""

    leaf: str = field(metadata=_opt("the leaf model: folder or Hub id"))
    teacher: str = field(metadata=_opt("its teacher: Hub id or folder"))
    backends: list[str] | None = field(
        default=None,
        metadata=_opt(
            f"comma-separated, from {', '.join(BACKENDS)} (default: {','.join(QUICK['backends'])}; all three "
            "with --thorough)",
            parse=parse_name_list,
            metavar="B,B",
        ),
    )
    queries: Path | None = field(
        default=None,
        metadata=_opt(
            "queries file (.jsonl with 'text', or one per line; default: the built-in corpus's queries)",
            metavar="PATH",
        ),
    )
    documents: Path | None = field(
        default=None,
        metadata=_opt(
            "documents file (.jsonl with 'text'[, 'title'], or one per line; default: the built-in corpus's "
            "paragraphs of 30 words or more)",
            metavar="PATH",
        ),
    )
    batch_sizes: list[int] | None = field(
        default=None,
        metadata=_opt(
            f"comma-separated (default: {','.join(map(str, QUICK['batch_sizes']))}; "
            f"{','.join(map(str, THOROUGH['batch_sizes']))} with --thorough)",
            parse=parse_int_list,
            metavar="N,N",
        ),
    )
    repeats: int | None = field(
        default=None,
        metadata=_opt(
            f"timed passes over the pool per model and batch size (default: {QUICK['repeats']}; "
            f"{THOROUGH['repeats']} with --thorough)"
        ),
    )
    kinds: list[str] = field(
        default_factory=lambda: list(KINDS),
        metadata=_opt(
            "comma-separated, from queries,documents (default: both)", parse=parse_name_list, metavar="K,K"
        ),
    )
    pool_size: int | None = field(
        default=None,
        metadata=_opt(
            "texts timed at every batch size, per kind (default: the largest batch size; 48 = lcm of the "
            "thorough sizes gives full batches everywhere; a larger pool gives the length sort more room, as "
            "a bulk job's thousands of texts do)",
            flag="pool",
        ),
    )
    max_seq_length: int | None = field(
        default=None, metadata=_opt("for both models (default: the smaller of the two models' limits)")
    )
    threads: int | None = field(
        default=None, metadata=_opt("intra-op threads per model (default: all cores this process may use)")
    )
    interleave: str = field(
        default="repeat",
        metadata=_opt(
            "teacher and leaf take turns per repeat (each encodes the whole pool, as a server would) or per "
            "batch (finer against load, but the teacher evicts the leaf from the CPU caches)",
            choices=INTERLEAVE,
        ),
    )
    batching: str = field(
        default="sorted",
        metadata=_opt(
            "cut the pool into batches after sorting it by length, as encode does for bulk encoding, or in "
            "arrival order, as an online server batches whatever came in (more padding)",
            choices=BATCHING,
        ),
    )
    onnx_cache: Path | None = field(
        default=None,
        metadata=_opt("where to export models without onnx/ (default: the leaf-hub cache)", metavar="DIR"),
    )
    output: Path | None = field(
        default=Path("bench.json"),
        metadata=_opt("JSON report; the Markdown and the PNG are written next to it", metavar="PATH"),
    )
    thorough: bool = field(
        default=False,
        metadata=_opt(
            "the paper's Table 8 grid: every backend, batch sizes 1,2,4,8,16,24, 5 repeats (2,880 timed "
            "calls: hours on 2 cores) instead of the quick protocol"
        ),
    )
    sources: dict[str, str] | None = field(
        default=None,
        metadata=_opt("where the queries and documents came from, for the report", cli=False),
    )

    def __post_init__(self) -> None:
        self.backends = _flatten(self.backends, parse_name_list)
        self.batch_sizes = _flatten(self.batch_sizes, parse_int_list)
        self.kinds = _flatten(self.kinds, parse_name_list) or list(KINDS)
        if self.output is not None:
            self.output = Path(self.output).expanduser()
        for name in ("queries", "documents", "onnx_cache"):
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)).expanduser())
        preset = THOROUGH if self.thorough else QUICK
        if self.backends is None:
            self.backends = list(preset["backends"])
        if self.batch_sizes is None:
            self.batch_sizes = list(preset["batch_sizes"])
        if self.repeats is None:
            self.repeats = int(preset["repeats"])

    def validate(self) -> None:
        """Raise :class:`ConfigError` for the first option out of range, before any model loads."""
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown or not self.backends:
            raise ConfigError(
                "backends",
                f"unknown backend(s) {unknown or self.backends} for {{option}}; choose from {', '.join(BACKENDS)}",
            )
        if self.repeats < 1:
            raise ConfigError("repeats", f"{{option}} must be >= 1, got {self.repeats}")
        _choice(self, "interleave", INTERLEAVE)
        _choice(self, "batching", BATCHING)
        if not self.kinds or [k for k in self.kinds if k not in KINDS]:
            raise ConfigError(
                "kinds",
                f"unknown kind(s) of text {list(self.kinds)} for {{option}}; choose from {', '.join(KINDS)}",
            )
        self.kinds = [k for k in KINDS if k in self.kinds]  # the canonical order
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(
                "batch_sizes",
                f"{{option}}: batch sizes must be positive integers, got {list(self.batch_sizes)}",
            )
        for name in ("pool_size", "max_seq_length", "threads"):
            _positive(self, name)
        if self.pool_size is not None and self.pool_size < max(self.batch_sizes):
            raise ConfigError(
                "pool_size",
                f"{{option}} {self.pool_size} is smaller than the largest batch size {max(self.batch_sizes)}; "
                "give a pool at least that large",
            )

    @property
    def pool(self) -> int:
        """Texts timed at every batch size: ``pool_size`` or the largest batch size."""
        return self.pool_size or max(self.batch_sizes)

"""The evaluation report: typed results (:class:`EvaluationReport`), its JSON, Markdown and PNG plots.

:func:`leaf_hub.evaluation.evaluate.evaluate` returns an :class:`EvaluationReport`; the model card, the Space
and publish read the JSON it writes (``report.json``, and ``eval_report.json`` in the leaf folder) back with
:meth:`EvaluationReport.read` / :meth:`EvaluationReport.from_json`. The JSON keeps the schema reports have
always had, so older files load too::

    {"meta": {...},
     "results": {MODEL: {TASK: {METRIC: float}}},          MODEL in teacher, leaf, asymmetric
     "mrl_quant": {MODEL: {TASK: {"dim=64": float, ..., "int8": float, "binary": float}}},
     "checkpoints": [{"name", "path", "val_l2", "task", "leaf": {...}, "asymmetric": {...}}]}   (with --run)

The Markdown puts teacher, leaf and asymmetric side by side with the leaf's and the pair's share of the
teacher's score. Plots: ``<stem>-mrl_quant.png`` (nDCG@10 against embedding dimensions, and per precision)
and ``<stem>-checkpoints.png`` (validation L2 against nDCG@10 across a run's checkpoints: the paper's
"robustness margin" figure).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from leaf_hub.errors import LeafHubError
from leaf_hub.evaluation.hardware import Hardware
from leaf_hub.files import atomic_write_bytes, read_json

MODELS = ("teacher", "leaf", "asymmetric")
_COLORS = {"teacher": "#1f77b4", "leaf": "#2ca02c", "asymmetric": "#ff7f0e"}


write_atomic = atomic_write_bytes


# ------------------------------------------------------------------------------------------ the types


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


class _Metrics:
    """Named metrics of one model on one task; JSON keys in ``KEYS`` (field -> key), others in ``extra``."""

    KEYS: ClassVar[dict[str, str]] = {}
    extra: dict[str, float]

    def to_json(self) -> dict[str, float]:
        out = {key: getattr(self, name) for name, key in self.KEYS.items() if getattr(self, name) is not None}
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: Any):
        data = _dict(data)
        known = {name: _number(data.get(key)) for name, key in cls.KEYS.items()}
        extra = {
            k: float(v) for k, v in data.items() if k not in cls.KEYS.values() and _number(v) is not None
        }
        return cls(**known, extra=extra)

    def get(self, key: str) -> float | None:
        """A metric by its JSON key (``ndcg@10``, ``spearman``, ...)."""
        for name, k in self.KEYS.items():
            if k == key:
                return getattr(self, name)
        return self.extra.get(key)

    def __bool__(self) -> bool:
        return bool(self.to_json())


@dataclass
class RetrievalScores(_Metrics):
    """One model (or mode) on one collection: nDCG@10, recall@100, top-10 overlap with the teacher."""

    ndcg_at_10: float | None = None
    recall_at_100: float | None = None
    # Share of the teacher's top-10 also in this system's top-10 (leaf and asymmetric only).
    top10_overlap: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    KEYS: ClassVar[dict[str, str]] = {
        "ndcg_at_10": "ndcg@10",
        "recall_at_100": "recall@100",
        "top10_overlap": "top10_overlap",
    }


@dataclass
class StsScores(_Metrics):
    """Spearman of the cosine similarities with the gold scores (raw, not x100)."""

    spearman: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    KEYS: ClassVar[dict[str, str]] = {"spearman": "spearman"}


@dataclass
class AlignmentScores(_Metrics):
    """Leaf vs teacher, label-free: mean L2 / cosine on held-out texts, mean top-10 overlap."""

    l2: float | None = None
    cosine: float | None = None
    top10_overlap: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    KEYS: ClassVar[dict[str, str]] = {"l2": "l2", "cosine": "cosine", "top10_overlap": "top10_overlap"}


@dataclass
class MrlQuantScores:
    """nDCG@10 of one model on one collection with truncated (``dims``) and quantized embeddings."""

    dims: dict[int, float] = field(default_factory=dict)
    int8: float | None = None
    binary: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, float]:
        out: dict[str, float] = {f"dim={d}": v for d, v in sorted(self.dims.items())}
        if self.int8 is not None:
            out["int8"] = self.int8
        if self.binary is not None:
            out["binary"] = self.binary
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: Any) -> MrlQuantScores:
        out = cls()
        for key, value in _dict(data).items():
            number = _number(value)
            if number is None:
                continue
            if key.startswith("dim=") and key[4:].isdigit():
                out.dims[int(key[4:])] = number
            elif key in ("int8", "binary"):
                setattr(out, key, number)
            else:
                out.extra[key] = number
        return out


@dataclass
class RetrievalResult:
    """One retrieval collection: scores per mode (teacher, leaf, asymmetric) and the MRL / quantization
    variants. ``labelled=False``: a collection without qrels (``overlap``), scored by top-10 overlap only."""

    name: str
    scores: dict[str, RetrievalScores] = field(default_factory=dict)
    mrl_quant: dict[str, MrlQuantScores] = field(default_factory=dict)
    source: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    labelled: bool = True

    @property
    def kind(self) -> str:
        return "retrieval" if self.labelled else "overlap"


@dataclass
class StsResult:
    """One STS set: Spearman per mode (asymmetric: sentence 1 by the leaf, sentence 2 by the teacher)."""

    name: str
    scores: dict[str, StsScores] = field(default_factory=dict)
    source: str | None = None
    pairs: int | None = None

    kind: ClassVar[str] = "sts"


@dataclass
class AlignmentResult:
    """Leaf vs teacher without labels: ``scores["leaf"]`` (L2, cosine, mean top-10 overlap) and
    ``scores["asymmetric"]`` (mean top-10 overlap)."""

    scores: dict[str, AlignmentScores] = field(default_factory=dict)
    source: str | None = None
    texts: int | None = None

    name: ClassVar[str] = "alignment"
    kind: ClassVar[str] = "alignment"


@dataclass
class CheckpointResult:
    """One checkpoint of a distillation run on the first retrieval collection."""

    name: str
    path: str
    val_l2: float | None
    task: str
    leaf: RetrievalScores
    asymmetric: RetrievalScores

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "val_l2": self.val_l2,
            "task": self.task,
            "leaf": self.leaf.to_json(),
            "asymmetric": self.asymmetric.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> CheckpointResult:
        data = _dict(data)
        return cls(
            name=str(data.get("name", "")),
            path=str(data.get("path", "")),
            val_l2=_number(data.get("val_l2")),
            task=str(data.get("task", "")),
            leaf=RetrievalScores.from_json(data.get("leaf")),
            asymmetric=RetrievalScores.from_json(data.get("asymmetric")),
        )


@dataclass
class Timing:
    """Where an evaluation's time went, and what it would cost with nothing cached."""

    total_s: float = 0.0
    model_load_s: float = 0.0
    encode_s: float = 0.0
    other_s: float = 0.0
    bare_encode_s: float = 0.0
    # (bare encoding + everything but encoding) / bare encoding: the whole run with nothing cached.
    overhead_ratio: float | None = None
    cache_hits: int = 0
    cache_misses: int = 0

    @classmethod
    def from_json(cls, data: Any) -> Timing:
        data = _dict(data)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class EvaluationMeta:
    """What was evaluated, how, on what, and when."""

    leaf: str
    teacher: str
    backends: dict[str, str] = field(default_factory=lambda: {"teacher": "torch", "leaf": "torch"})
    dimension: int | None = None
    leaf_fingerprint: str | None = None
    teacher_fingerprint: str | None = None
    normalized: dict[str, bool] = field(default_factory=dict)
    max_seq_length: dict[str, int] = field(default_factory=dict)
    prompts: dict[str, dict[str, str]] = field(default_factory=dict)
    mrl_dims: list[int] | None = None
    protocol: dict[str, str] = field(default_factory=dict)
    timing: Timing | None = None
    cache: str | None = None
    model_fingerprints: dict[str, str] = field(default_factory=dict)
    leaf_hub_version: str | None = None
    hardware: Hardware | None = None
    created: str | None = None
    # Keys this version does not know (a newer report's), kept so that a rewrite loses nothing.
    extra: dict[str, Any] = field(default_factory=dict)

    # Written from the report's task results, not stored here.
    _DERIVED: ClassVar[tuple[str, ...]] = ("modes", "datasets", "hardware", "cpu", "cores", "threads", "gpu")


# mode -> (query encoder, document encoder)
MODES = {"teacher": ("teacher", "teacher"), "leaf": ("leaf", "leaf"), "asymmetric": ("leaf", "teacher")}


@dataclass
class EvaluationReport:
    """A leaf against its teacher: retrieval, STS and alignment results per mode, MRL / quantization
    variants, a run's checkpoints, and the meta data that says what was measured.

    Read a report with ``EvaluationReport.read(path)``; ``report.score("asymmetric", "cisi", "ndcg@10")``
    picks one figure, ``report.results()`` is the ``{mode: {task: {metric: value}}}`` view of the JSON.
    """

    meta: EvaluationMeta
    retrieval: list[RetrievalResult] = field(default_factory=list)
    sts: list[StsResult] = field(default_factory=list)
    alignment: AlignmentResult | None = None
    checkpoints: list[CheckpointResult] = field(default_factory=list)
    # The files evaluate() wrote (not part of the JSON).
    files: list[Path] = field(default_factory=list, compare=False, repr=False)

    # ------------------------------------------------------------------ views
    def tasks(self) -> list[RetrievalResult | StsResult | AlignmentResult]:
        """Every task, in report order: retrieval (and overlap) collections, STS sets, alignment."""
        return [*self.retrieval, *self.sts, *([self.alignment] if self.alignment else [])]

    def results(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{mode: {task: {metric: value}}}``, modes without results left out (the JSON ``results``)."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for mode in MODELS:
            for task in self.tasks():
                metrics = task.scores.get(mode)
                if metrics:
                    out.setdefault(mode, {})[task.name] = metrics.to_json()
        return out

    def mrl_quant(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{mode: {task: {"dim=N" | "int8" | "binary": nDCG@10}}}`` (the JSON ``mrl_quant``)."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for mode in MODELS:
            for task in self.retrieval:
                if mode in task.mrl_quant:
                    out.setdefault(mode, {})[task.name] = task.mrl_quant[mode].to_json()
        return out

    def score(self, mode: str, task: str, metric: str) -> float | None:
        """One figure, e.g. ``score("asymmetric", "cisi", "ndcg@10")``; None when the report lacks it."""
        for t in self.tasks():
            if t.name == task and mode in t.scores:
                return t.scores[mode].get(metric)
        return None

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        meta = self.meta
        datasets: dict[str, Any] = {}
        for r in self.retrieval:
            datasets[r.name] = {"kind": r.kind, "source": r.source, "stats": r.stats}
        for s in self.sts:
            datasets[s.name] = {"kind": "sts", "source": s.source, "stats": {"pairs": s.pairs}}
        if self.alignment is not None and self.alignment.source is not None:
            stats = {"texts": self.alignment.texts} if self.alignment.texts is not None else {}
            datasets["alignment"] = {"kind": "alignment", "source": self.alignment.source, "stats": stats}
        meta_json: dict[str, Any] = {
            "leaf": meta.leaf,
            "teacher": meta.teacher,
            "backends": meta.backends,
            "leaf_fingerprint": meta.leaf_fingerprint,
            "teacher_fingerprint": meta.teacher_fingerprint,
            "dimension": meta.dimension,
            "normalized": meta.normalized,
            "max_seq_length": meta.max_seq_length,
            "prompts": meta.prompts,
            "modes": {m: {"queries": q, "documents": d} for m, (q, d) in MODES.items()},
            "datasets": datasets,
            "mrl_dims": meta.mrl_dims,
            "protocol": meta.protocol,
            "timing": vars(meta.timing).copy() if meta.timing else {},
            "cache": meta.cache,
            "model_fingerprints": meta.model_fingerprints,
            "leaf_hub_version": meta.leaf_hub_version,
            **(meta.hardware.to_meta() if meta.hardware else {}),
            "created": meta.created,
            **meta.extra,
        }
        out: dict[str, Any] = {"meta": meta_json, "results": self.results(), "mrl_quant": self.mrl_quant()}
        if self.checkpoints:
            out["checkpoints"] = [c.to_json() for c in self.checkpoints]
        return out

    @classmethod
    def from_json(cls, data: Any) -> EvaluationReport:
        """A report from its JSON, this version's or an older one (missing parts stay empty)."""
        data = _dict(data)
        raw_meta = _dict(data.get("meta"))
        known = {f.name for f in fields(EvaluationMeta)}
        meta = EvaluationMeta(
            leaf=str(raw_meta.get("leaf", "")),
            teacher=str(raw_meta.get("teacher", "")),
            **{
                name: raw_meta[name]
                for name in known - {"leaf", "teacher", "timing", "hardware", "extra"}
                if name in raw_meta
            },
            timing=Timing.from_json(raw_meta["timing"]) if _dict(raw_meta.get("timing")) else None,
            hardware=Hardware.from_meta(raw_meta),
            extra={k: v for k, v in raw_meta.items() if k not in known and k not in EvaluationMeta._DERIVED},
        )
        results = {mode: _dict(tasks) for mode, tasks in _dict(data.get("results")).items()}
        block = {mode: _dict(tasks) for mode, tasks in _dict(data.get("mrl_quant")).items()}
        datasets = _dict(raw_meta.get("datasets"))
        names = list(dict.fromkeys([*datasets, *(t for tasks in results.values() for t in tasks)]))
        report = cls(meta=meta)
        for name in names:
            info = _dict(datasets.get(name))
            per_mode = {mode: _dict(tasks.get(name)) for mode, tasks in results.items() if name in tasks}
            kind = info.get("kind") or _guess_kind(name, per_mode)
            stats = _dict(info.get("stats"))
            if kind in ("retrieval", "overlap"):
                report.retrieval.append(
                    RetrievalResult(
                        name,
                        {m: RetrievalScores.from_json(v) for m, v in per_mode.items()},
                        {m: MrlQuantScores.from_json(t[name]) for m, t in block.items() if name in t},
                        source=info.get("source"),
                        stats=stats,
                        labelled=kind == "retrieval",
                    )
                )
            elif kind == "sts":
                pairs = stats.get("pairs")
                report.sts.append(
                    StsResult(
                        name,
                        {m: StsScores.from_json(v) for m, v in per_mode.items()},
                        source=info.get("source"),
                        pairs=int(pairs) if isinstance(pairs, int) else None,
                    )
                )
            elif kind == "alignment":
                texts = stats.get("texts")
                report.alignment = AlignmentResult(
                    {m: AlignmentScores.from_json(v) for m, v in per_mode.items()},
                    source=info.get("source"),
                    texts=int(texts) if isinstance(texts, int) else None,
                )
        report.checkpoints = [CheckpointResult.from_json(c) for c in data.get("checkpoints") or []]
        return report

    @classmethod
    def read(cls, path: str | os.PathLike) -> EvaluationReport:
        """Read a report file (``report.json``, ``eval_report.json``)."""
        data = read_json(path)
        if data is None:
            raise LeafHubError(f"{path} does not exist; give a report written by leaf-hub")
        return cls.from_json(data)

    def write(self, output: str | os.PathLike, plots: bool = True) -> list[Path]:
        """Write ``output`` (JSON), the Markdown beside it and the PNGs; returns the paths."""
        return write_report(self, output, plots=plots)


def _guess_kind(name: str, per_mode: dict[str, dict]) -> str:
    """A task's kind from its metrics, for reports without ``meta.datasets``."""
    keys = {k for metrics in per_mode.values() for k in metrics}
    if name == "alignment" or keys & {"l2", "cosine"}:
        return "alignment"
    if "spearman" in keys:
        return "sts"
    return "retrieval" if any(k.startswith(("ndcg@", "recall@")) for k in keys) else "overlap"


# ------------------------------------------------------------------------------------------ Markdown


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return f"{value:.{digits}f}"
    return "–"


def _ratio(a: Any, b: Any) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{100 * a / b:.1f}%"
    return "–"


# Lower is better for these: a share of the teacher's score would mislead.
_NO_RATIO = {"l2"}


def results_table(results: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    # Rows grouped by task (first-seen order), metrics in first-seen order within a task.
    tasks: dict[str, dict[str, None]] = {}
    for model in MODELS:
        for task, metrics in (results.get(model) or {}).items():
            tasks.setdefault(task, {}).update(dict.fromkeys(metrics))
    keys = [(task, metric) for task, metrics in tasks.items() for metric in metrics]
    lines = [
        "| task | metric | teacher | leaf | asymmetric | leaf / teacher | asymmetric / teacher |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for task, metric in keys:
        t, le, a = (((results.get(m) or {}).get(task) or {}).get(metric) for m in MODELS)
        no_ratio = metric in _NO_RATIO or t is None
        lines.append(
            f"| {task} | {metric} | {_fmt(t)} | {_fmt(le)} | {_fmt(a)} | "
            f"{'–' if no_ratio else _ratio(le, t)} | {'–' if no_ratio else _ratio(a, t)} |"
        )
    return lines


def _setting_order(setting: str) -> tuple[int, int, str]:
    if setting.startswith("dim="):
        return (0, int(setting[4:]), setting)
    return (1, {"int8": 0, "binary": 1}.get(setting, 2), setting)


def mrl_table(block: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    settings: dict[str, None] = {}
    for tasks in block.values():
        for values in tasks.values():
            settings.update(dict.fromkeys(values))
    ordered = sorted(settings, key=_setting_order)
    lines = ["| model | task | " + " | ".join(ordered) + " |", "|---|---|" + "---:|" * len(ordered)]
    for model in MODELS:
        for task, values in (block.get(model) or {}).items():
            lines.append(f"| {model} | {task} | " + " | ".join(_fmt(values.get(s)) for s in ordered) + " |")
    return lines


def _backends_line(backends: dict[str, str] | None) -> list[str]:
    """A line naming the runtimes when a model ran as its ONNX export (PyTorch needs no mention)."""
    if not backends or set(backends.values()) == {"torch"}:
        return []
    names = {"torch": "PyTorch", "onnx": "ONNX Runtime, fp32", "onnx-int8": "ONNX Runtime, int8 weights"}
    return [
        "- backends: "
        + ", ".join(f"{role} {names.get(b, b)}" for role, b in sorted(backends.items(), reverse=True))
    ]


def markdown(report: EvaluationReport | dict[str, Any], plots: list[Path] | None = None) -> str:
    """The report as Markdown: results side by side, MRL / quantization, checkpoints, data, timing."""
    if isinstance(report, EvaluationReport):
        report = report.to_json()
    meta = report.get("meta", {})
    lines = [
        "# Leaf evaluation",
        "",
        f"- leaf: `{meta.get('leaf')}`",
        f"- teacher: `{meta.get('teacher')}`",
        *_backends_line(meta.get("backends")),
        "- asymmetric: leaf encodes the queries, teacher the documents",
        f"- dimension: {meta.get('dimension')}",
        "",
        "## Results",
        "",
        *results_table(report.get("results", {})),
        "",
        "Retrieval: nDCG@10 (graded gains) and recall@100 over judged queries, exact cosine search. STS: "
        "Spearman of cosine similarity (raw, not x100). Alignment: mean L2 and cosine between leaf and teacher "
        "embeddings of held-out texts; top10_overlap: share of the teacher's top-10 documents also in the "
        "leaf's (leaf row: leaf queries and documents; asymmetric row: leaf queries, teacher documents).",
    ]
    block = report.get("mrl_quant") or {}
    if block:
        lines += [
            "",
            "## Matryoshka dimensions and quantization (nDCG@10)",
            "",
            *mrl_table(block),
            "",
            "dim=N: embeddings truncated to their first N dimensions and renormalized. int8: "
            "sentence-transformers' quantize_embeddings with per-dimension ranges calibrated on the index's "
            "document embeddings, each code scored as the centre of its bucket (cosine; the Space scores int8 "
            "the same way). binary: sign bits (quantize_embeddings 'binary'), ranked "
            "by Hamming distance.",
        ]
    checkpoints = report.get("checkpoints") or []
    if checkpoints:
        task = checkpoints[0].get("task")
        lines += [
            "",
            f"## Checkpoints ({task}, nDCG@10)",
            "",
            "| checkpoint | validation L2 | leaf | asymmetric |",
            "|---|---:|---:|---:|",
        ]
        for c in checkpoints:
            lines.append(
                f"| {c['name']} | {_fmt(c.get('val_l2'))} | {_fmt((c.get('leaf') or {}).get('ndcg@10'))} | "
                f"{_fmt((c.get('asymmetric') or {}).get('ndcg@10'))} |"
            )
    datasets = meta.get("datasets") or {}
    if datasets:
        lines += ["", "## Data", ""]
        for name, info in datasets.items():
            stats = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (info.get("stats") or {}).items())
            lines.append(
                f"- {name} ({info.get('kind')}): `{info.get('source')}`" + (f"; {stats}" if stats else "")
            )
    timing = meta.get("timing") or {}
    if timing:
        lines += [
            "",
            "## Timing",
            "",
            f"- total wall time {timing.get('total_s', 0):.1f} s; encoding in this run "
            f"{timing.get('encode_s', 0):.1f} s; everything else {timing.get('other_s', 0):.1f} s",
            f"- bare encoding time of every text used (cached entries at their recorded cost): "
            f"{timing.get('bare_encode_s', 0):.1f} s",
        ]
        if timing.get("overhead_ratio"):
            lines.append(
                f"- with nothing cached this evaluation would take {timing['overhead_ratio']:.2f}x the bare "
                "encoding time"
            )
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def plot_mrl_quant(block: dict[str, dict[str, dict[str, float]]], path: Path) -> Path | None:
    """One row per task: nDCG@10 against dimensions (log2 axis), and per precision at full dimension."""
    tasks = list(dict.fromkeys(task for model in MODELS for task in (block.get(model) or {})))
    if not tasks:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 3.8 * len(tasks)), squeeze=False)
    for row, task in zip(axes, tasks, strict=True):
        ax_dim, ax_q = row
        for model in MODELS:
            values = (block.get(model) or {}).get(task)
            if not values:
                continue
            dims = sorted((int(k[4:]), v) for k, v in values.items() if k.startswith("dim="))
            if dims:
                ax_dim.plot(
                    [d for d, _ in dims], [v for _, v in dims], "o-", color=_COLORS[model], label=model
                )
        ax_dim.set_xscale("log", base=2)
        all_dims = sorted(
            {
                int(k[4:])
                for m in MODELS
                for k in ((block.get(m) or {}).get(task) or {})
                if k.startswith("dim=")
            }
        )
        ax_dim.set_xticks(all_dims, [str(d) for d in all_dims])
        ax_dim.minorticks_off()
        ax_dim.set_xlabel("embedding dimensions (truncated, renormalized)")
        ax_dim.set_ylabel("nDCG@10")
        ax_dim.set_title(f"{task}: Matryoshka truncation")
        ax_dim.grid(alpha=0.3)
        ax_dim.legend()
        precisions = ["float32", "int8", "binary"]
        width = 0.8 / len(MODELS)
        for i, model in enumerate(MODELS):
            values = (block.get(model) or {}).get(task)
            if not values:
                continue
            full = max((k for k in values if k.startswith("dim=")), key=lambda k: int(k[4:]), default=None)
            ys = [values.get(full) if full else None, values.get("int8"), values.get("binary")]
            xs = [j + (i - 1) * width for j in range(len(precisions))]
            ax_q.bar(
                [x for x, y in zip(xs, ys, strict=True) if y is not None],
                [y for y in ys if y is not None],
                width=width,
                color=_COLORS[model],
                label=model,
            )
        ax_q.set_xticks(range(len(precisions)), precisions)
        ax_q.set_ylabel("nDCG@10")
        ax_q.set_title(f"{task}: quantization (full dimension)")
        ax_q.grid(alpha=0.3, axis="y")
        ax_q.legend(loc="best", framealpha=0.9)
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)
    return path


def plot_checkpoints(
    checkpoints: list[dict[str, Any]], teacher_score: float | None, path: Path
) -> Path | None:
    """Validation L2 (x) against nDCG@10 (y) for each checkpoint, leaf and asymmetric, teacher as a line."""
    points = [c for c in checkpoints if c.get("val_l2") is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode in ("leaf", "asymmetric"):
        xs = [c["val_l2"] for c in points]
        ys = [(c.get(mode) or {}).get("ndcg@10") for c in points]
        ax.plot(xs, ys, "o-", color=_COLORS[mode], label=mode)
        if mode == "leaf":
            for c, x, y in zip(points, xs, ys, strict=True):
                ax.annotate(c["name"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if teacher_score is not None:
        ax.axhline(teacher_score, color=_COLORS["teacher"], linestyle="--", label="teacher")
    ax.set_xlabel("validation L2 distance to the teacher")
    ax.set_ylabel(f"nDCG@10 ({points[0].get('task')})")
    ax.set_title("Alignment vs downstream score across checkpoints")
    ax.invert_xaxis()  # better alignment to the right, as training progresses
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)
    return path


def _save_fig(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_atomic(path, buf.getvalue())


def write_report(
    report: EvaluationReport | dict[str, Any], output: str | os.PathLike, plots: bool = True
) -> list[Path]:
    """Write ``output`` (JSON), the Markdown beside it (same stem, ``.md``) and the PNGs; returns the paths."""
    if isinstance(report, EvaluationReport):
        report = report.to_json()
    output = Path(output)
    written: list[Path] = []
    pngs: list[Path] = []
    if plots:
        mrl = plot_mrl_quant(report.get("mrl_quant") or {}, output.with_name(f"{output.stem}-mrl_quant.png"))
        if mrl:
            pngs.append(mrl)
        checkpoints = report.get("checkpoints") or []
        if checkpoints:
            task = checkpoints[0].get("task")
            teacher = ((report.get("results", {}).get("teacher") or {}).get(task) or {}).get("ndcg@10")
            ck = plot_checkpoints(checkpoints, teacher, output.with_name(f"{output.stem}-checkpoints.png"))
            if ck:
                pngs.append(ck)
    write_atomic(output, (json.dumps(report, indent=2) + "\n").encode())
    written.append(output)
    md = output.with_suffix(".md")
    write_atomic(md, markdown(report, pngs).encode())
    written.append(md)
    return written + pngs

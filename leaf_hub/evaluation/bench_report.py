"""The benchmark report: typed results (:class:`BenchReport`), its JSON, Markdown and PNG.

:func:`leaf_hub.evaluation.benchmark.benchmark` returns a :class:`BenchReport`; the model card and the Space
read the JSON it writes (``bench.json``, ``bench_report.json`` in a leaf folder) back with
:meth:`BenchReport.read`. The JSON keeps the schema bench reports have had (older files load too)::

    {"meta": {..., "cpu", "cores", "threads", ...},
     "results": [{"model", "backend", "kind", "batch_size", "throughput", "median_latency_ms", ...}],
     "summary": {BACKEND: {"queries_speedup", "documents_speedup", "peak_throughput", ...}},
     "deployment": {KIND: {"leaf_int8_vs_teacher_fp32", "leaf_int8_cosine", ...}}}   (onnx and onnx-int8 runs)

``deployment`` holds the ratios a user replacing a teacher asks for: the int8 leaf against the fp32 teacher
(and against the int8 teacher, and fp32 against fp32), with the cosine of the int8 leaf's embeddings to its
fp32 self, for queries and documents.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from leaf_hub.errors import LeafHubError
from leaf_hub.evaluation.hardware import Hardware
from leaf_hub.files import atomic_write_path, read_json

KINDS = ("queries", "documents")
MODELS = ("teacher", "leaf")
LATENCY_BUDGET_MS = 100.0


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _from_fields(cls: type, data: Any, **override: Any) -> Any:
    """``cls(**data)`` for the keys that are fields of ``cls`` (others ignored), plus ``override``."""
    data = _dict(data)
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names and k not in override}, **override)


@dataclass
class BenchCell:
    """One model on one backend, kind of text and batch size: throughput and latency."""

    model: str
    backend: str
    kind: str
    batch_size: int
    throughput: float  # texts per second: pool size / median time per repeat
    min_latency_ms: float
    median_latency_ms: float
    repeats: int | None = None
    texts_per_repeat: int | None = None
    repeat_seconds: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_json(cls, data: Any) -> BenchCell:
        return _from_fields(cls, data)

    @classmethod
    def is_complete(cls, data: Any) -> bool:
        """Whether a JSON cell has every field a cell needs (a hand-edited or cut report may not)."""
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        return isinstance(data, dict) and required <= data.keys()


@dataclass
class BackendSummary:
    """Per backend: the leaf's speed-up at its best batch size, per batch size, and the latency budget."""

    queries_speedup: float | None = None
    documents_speedup: float | None = None
    # model -> kind -> texts/s at the best batch size
    peak_throughput: dict[str, dict[str, float | None]] = field(default_factory=dict)
    # model -> kind -> the largest batch whose median latency is under 100 ms (None: not even 1)
    max_batch_under_100ms: dict[str, dict[str, int | None]] = field(default_factory=dict)
    # kind -> str(batch size) -> leaf / teacher throughput
    speedup_by_batch_size: dict[str, dict[str, float]] = field(default_factory=dict)
    # kind -> str(batch size) -> [min, max] of the per-repeat ratios
    speedup_range_by_batch_size: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def speedup(self, kind: str) -> float | None:
        return self.queries_speedup if kind == "queries" else self.documents_speedup

    def to_json(self) -> dict[str, Any]:
        return {
            "documents_speedup": self.documents_speedup,
            "queries_speedup": self.queries_speedup,
            "peak_throughput": self.peak_throughput,
            "max_batch_under_100ms": self.max_batch_under_100ms,
            "speedup_by_batch_size": self.speedup_by_batch_size,
            "speedup_range_by_batch_size": self.speedup_range_by_batch_size,
        }

    @classmethod
    def from_json(cls, data: Any) -> BackendSummary:
        return _from_fields(cls, data)


@dataclass
class DeploymentRatio:
    """For one kind of text: what replacing the teacher with the leaf gives, across precisions.

    Speed-ups are peak throughputs (best batch size) on ONNX Runtime; cosines compare each text's embedding
    from the int8 graph with the fp32 graph's (which equals PyTorch's to ~1e-7).
    """

    leaf_int8_vs_teacher_fp32: float | None = None
    leaf_int8_vs_teacher_int8: float | None = None
    leaf_fp32_vs_teacher_fp32: float | None = None
    leaf_int8_cosine: float | None = None  # mean over the texts
    leaf_int8_cosine_min: float | None = None
    teacher_int8_cosine: float | None = None
    teacher_int8_cosine_min: float | None = None
    texts: int | None = None  # texts the cosines were measured on

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_json(cls, data: Any) -> DeploymentRatio:
        return _from_fields(cls, data)


@dataclass
class TextSource:
    source: str
    count: int


@dataclass
class BenchMeta:
    """What was timed, how, on what machine, and when."""

    leaf: str
    teacher: str
    backends: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    batch_sizes: list[int] = field(default_factory=list)
    repeats: int | None = None
    mode: str | None = (
        None  # quick (the default protocol) or thorough (the paper's grid); None in older reports
    )
    interleave: str = "repeat"
    # None: a report from before --batching, which did not say (its batches were in arrival order).
    batching: str | None = "sorted"
    tokenizer_parallelism: str | None = None
    pool_size: int | None = None
    max_seq_length: int | None = None
    model_max_seq_length: dict[str, int] = field(default_factory=dict)
    hardware: Hardware | None = None
    load_average_before: list[float] | None = None
    busy_cores_before: float | None = None
    load_average_after: list[float] | None = None
    texts: dict[str, TextSource] = field(default_factory=dict)
    protocol: str = ""
    date: str | None = None
    wall_time_s: float | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    _HARDWARE_KEYS: ClassVar[tuple[str, ...]] = ("cpu", "cores", "threads", "gpu", "hardware")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "hardware":
                out.update(value.to_meta() if value else {})
            elif f.name == "texts":
                out["texts"] = {k: vars(v).copy() for k, v in value.items()}
            elif f.name != "extra":
                out[f.name] = value
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: Any) -> BenchMeta:
        data = _dict(data)
        names = {f.name for f in fields(cls)}
        texts = {
            kind: TextSource(str(_dict(v).get("source", "")), int(_dict(v).get("count") or 0))
            for kind, v in _dict(data.get("texts")).items()
        }
        extra = {k: v for k, v in data.items() if k not in names and k not in cls._HARDWARE_KEYS}
        return _from_fields(
            cls,
            data,
            leaf=str(data.get("leaf", "")),
            teacher=str(data.get("teacher", "")),
            hardware=Hardware.from_meta(data),
            texts=texts,
            batching=data.get("batching"),
            extra=extra,
        )


@dataclass
class BenchReport:
    """Leaf vs teacher throughput and latency: every cell, the summary per backend, the deployment ratios.

    ``report.summary["onnx"].queries_speedup`` is the leaf's peak-throughput ratio on short texts;
    ``report.deployment["queries"].leaf_int8_vs_teacher_fp32`` what an int8 leaf gives against an fp32
    teacher.
    """

    meta: BenchMeta
    results: list[BenchCell] = field(default_factory=list)
    summary: dict[str, BackendSummary] = field(default_factory=dict)
    deployment: dict[str, DeploymentRatio] = field(default_factory=dict)
    # The files benchmark() wrote (not part of the JSON).
    files: list[Path] = field(default_factory=list, compare=False, repr=False)

    def cells(self, backend: str, kind: str, model: str | None = None) -> list[BenchCell]:
        return [
            c
            for c in self.results
            if c.backend == backend and c.kind == kind and (model is None or c.model == model)
        ]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "meta": self.meta.to_json(),
            "results": [c.to_json() for c in self.results],
            "summary": {backend: s.to_json() for backend, s in self.summary.items()},
        }
        if self.deployment:
            out["deployment"] = {kind: d.to_json() for kind, d in self.deployment.items()}
        return out

    @classmethod
    def from_json(cls, data: Any) -> BenchReport:
        """A report from its JSON, this version's or an older one (parts that are not what a report writes, such
        as a cell without its figures, are left out)."""
        data = _dict(data)
        results = data.get("results")
        return cls(
            meta=BenchMeta.from_json(data.get("meta")),
            results=[BenchCell.from_json(c) for c in results if BenchCell.is_complete(c)]
            if isinstance(results, list)
            else [],
            summary={
                b: BackendSummary.from_json(s)
                for b, s in _dict(data.get("summary")).items()
                if isinstance(s, dict)
            },
            deployment={
                k: DeploymentRatio.from_json(d)
                for k, d in _dict(data.get("deployment")).items()
                if isinstance(d, dict)
            },
        )

    @classmethod
    def read(cls, path: str | os.PathLike) -> BenchReport:
        data = read_json(path)
        if data is None:
            raise LeafHubError(f"{path} does not exist; give a report written by leaf-hub")
        return cls.from_json(data)

    def write(self, output: str | os.PathLike) -> list[Path]:
        """Write ``output`` (JSON), the Markdown and the PNG next to it; returns the three paths."""
        return list(write_report(self, output))


# ---------------------------------------------------------------------------------------------- Markdown


def _or_unknown(value: Any) -> str:
    """A meta field older reports do not have (or this platform could not measure)."""
    return "not measured" if value is None else str(value)


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _times(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}x"


def _cos(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def deployment_lines(deployment: dict[str, DeploymentRatio]) -> list[str]:
    """The deployment ratios as a Markdown table (empty when the run had no onnx + onnx-int8 pair)."""
    if not deployment:
        return []
    lines = [
        "",
        "## Deployment: the leaf in place of the teacher (ONNX Runtime, peak throughput)",
        "",
        "| kind | leaf int8 / teacher fp32 | leaf int8 / teacher int8 | leaf fp32 / teacher fp32 | "
        "cosine int8 leaf to fp32 leaf, mean (min) | int8 teacher to fp32 teacher |",
        "|---|---|---|---|---|---|",
    ]
    for kind, d in deployment.items():
        lines.append(
            f"| {kind} | {_times(d.leaf_int8_vs_teacher_fp32)} | {_times(d.leaf_int8_vs_teacher_int8)} | "
            f"{_times(d.leaf_fp32_vs_teacher_fp32)} | {_cos(d.leaf_int8_cosine)} ({_cos(d.leaf_int8_cosine_min)}) "
            f"| {_cos(d.teacher_int8_cosine)} ({_cos(d.teacher_int8_cosine_min)}) |"
        )
    counts = ", ".join(f"{d.texts} {kind}" for kind, d in deployment.items() if d.texts)
    lines += [
        "",
        f"Cosines over {counts or 'the pooled texts'}: each text's embedding from the int8 graph against the "
        "fp32 graph's (which equals PyTorch's).",
    ]
    return lines


def to_markdown(report: BenchReport | dict[str, Any]) -> str:
    """The benchmark as Markdown: setup, the summary and deployment ratios, then per backend a table per kind."""
    if not isinstance(report, BenchReport):
        report = BenchReport.from_json(report)
    meta, summary = report.meta, report.summary
    hardware = meta.hardware.describe() if meta.hardware else "not recorded"
    texts = {kind: meta.texts.get(kind) for kind in KINDS}
    lines = [
        "# Leaf vs teacher: throughput and latency",
        "",
        f"- leaf: `{meta.leaf}`; teacher: `{meta.teacher}`",
        f"- hardware: {hardware}; "
        f"cores busy with other work before: {_or_unknown(meta.busy_cores_before)}; "
        f"load average before/after: {meta.load_average_before} / {meta.load_average_after}",
        f"- both models at max_seq_length {meta.max_seq_length} (own limits: {meta.model_max_seq_length or None})",
        "- "
        + "; ".join(f"{kind}: {t.source} ({t.count})" if t else f"{kind}: -" for kind, t in texts.items()),
        f"- {meta.repeats} repeats per batch size"
        + (f" ({meta.mode} protocol)" if meta.mode else "")
        + f"; {meta.protocol}",
        "",
        "## Summary",
        "",
        "| backend | queries speed-up | documents speed-up | max batch < 100 ms (teacher / leaf), queries | "
        "documents |",
        "|---|---|---|---|---|",
    ]
    for backend, s in summary.items():
        mb = s.max_batch_under_100ms

        def under(kind: str, mb=mb) -> str:
            if kind not in mb.get("teacher", {}):
                return "-"
            return f"{mb['teacher'][kind] or '-'} / {mb['leaf'][kind] or '-'}"

        lines.append(
            f"| {backend} | {_times(s.queries_speedup)} | {_times(s.documents_speedup)} | "
            f"{under('queries')} | {under('documents')} |"
        )
    lines += deployment_lines(report.deployment)
    kinds = [k for k in KINDS if any(c.kind == k for c in report.results)]
    for backend in summary:
        for kind in kinds:
            rows = {(c.model, c.batch_size): c for c in report.cells(backend, kind)}
            sizes = sorted({b for _, b in rows})
            lines += [
                "",
                f"## {backend}, {kind}",
                "",
                "| batch | teacher texts/s | leaf texts/s | speed-up (range over repeats) | teacher median / min ms | "
                "leaf median / min ms |",
                "|---|---|---|---|---|---|",
            ]
            ranges = summary[backend].speedup_range_by_batch_size.get(kind, {})
            for b in sizes:
                t, lf = rows.get(("teacher", b)), rows.get(("leaf", b))
                if not t or not lf:
                    continue
                spread = f" ({ranges[str(b)][0]:.1f}-{ranges[str(b)][1]:.1f})" if str(b) in ranges else ""
                lines.append(
                    f"| {b} | {t.throughput:.1f} | {lf.throughput:.1f} | "
                    f"{lf.throughput / t.throughput:.1f}x{spread} | {t.median_latency_ms:.0f} / "
                    f"{t.min_latency_ms:.0f} | {lf.median_latency_ms:.0f} / {lf.min_latency_ms:.0f} |"
                )
    return "\n".join(lines) + "\n"


def plot(report: BenchReport, path: str | os.PathLike) -> None:
    """Throughput vs batch size, teacher vs leaf: one panel per (kind, backend), like the paper's Figure 12."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    backends = list(report.summary)
    kinds = [k for k in KINDS if any(c.kind == k for c in report.results)]
    fig, axes = plt.subplots(
        len(kinds),
        len(backends),
        figsize=(4.2 * len(backends), 3.25 * len(kinds) + 0.5),
        squeeze=False,
        sharex=True,
    )
    for col, backend in enumerate(backends):
        for row, kind in enumerate(kinds):
            ax = axes[row][col]
            for model, style in (("teacher", "o--"), ("leaf", "s-")):
                cells = sorted((c.batch_size, c.throughput) for c in report.cells(backend, kind, model))
                if cells:
                    ax.plot([c[0] for c in cells], [c[1] for c in cells], style, label=model)
            speedup = report.summary[backend].speedup(kind)
            ax.set_title(f"{backend}: {kind} ({_fmt(speedup)}x)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")  # a constant speed-up is a constant gap between the two lines
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            # Minor ticks labelled at 2x and 5x only, so that the labels do not overlap.
            ax.yaxis.set_minor_formatter(
                matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")
            )
            ax.set_xticks(report.meta.batch_sizes, [str(b) for b in report.meta.batch_sizes])
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel("texts / s")
            if row == len(kinds) - 1:
                ax.set_xlabel("batch size")
            ax.legend()
    cpu = report.meta.hardware.cpu if report.meta.hardware else ""
    fig.suptitle(f"leaf vs teacher, max_seq_length {report.meta.max_seq_length}, {cpu}")
    fig.tight_layout()
    atomic_write_path(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def write_report(report: BenchReport, output: str | os.PathLike) -> tuple[Path, Path, Path]:
    """Write ``output`` (JSON), the Markdown and the PNG next to it; returns the three paths."""
    out = Path(output).expanduser()
    md, png = out.with_suffix(".md"), out.with_suffix(".png")

    def write_text(text: str) -> Callable[[str], None]:
        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)

        return write

    atomic_write_path(out, write_text(json.dumps(report.to_json(), indent=2) + "\n"))
    atomic_write_path(md, write_text(to_markdown(report)))
    plot(report, png)
    return out, md, png

"""Writing an evaluation report: ``report.json``, ``report.md`` and PNG plots next to it.

The JSON is the contract other stages read (model card, publish, the Space)::

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
from pathlib import Path
from typing import Any

from leaf_hub.files import atomic_write_bytes

MODELS = ("teacher", "leaf", "asymmetric")
_COLORS = {"teacher": "#1f77b4", "leaf": "#2ca02c", "asymmetric": "#ff7f0e"}


write_atomic = atomic_write_bytes


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


def markdown(report: dict[str, Any], plots: list[Path] | None = None) -> str:
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
            "sentence-transformers' quantize_embeddings with per-dimension ranges calibrated on the corpus "
            "embeddings, cosine over the int8 codes. binary: sign bits (quantize_embeddings 'ubinary'), ranked "
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


def write_report(report: dict[str, Any], output: str | os.PathLike, plots: bool = True) -> list[Path]:
    """Write ``output`` (JSON), the Markdown beside it (same stem, ``.md``) and the PNGs; returns the paths."""
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

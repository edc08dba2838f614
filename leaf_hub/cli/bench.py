"""``leaf-hub bench``: flags -> :class:`~leaf_hub.evaluation.config.BenchConfig` -> :func:`~leaf_hub.benchmark`."""

from __future__ import annotations

import argparse

from leaf_hub.cli.options import add_config_arguments, config_from_args
from leaf_hub.evaluation.config import BenchConfig

CONFIGS = (BenchConfig,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(
        parser.add_argument_group("models"), BenchConfig, only=["leaf", "teacher", "backends"]
    )
    add_config_arguments(
        parser.add_argument_group("texts"),
        BenchConfig,
        only=["queries", "documents", "kinds", "max_seq_length"],
    )
    add_config_arguments(
        parser.add_argument_group(
            "protocol (quick by default: minutes on 2 cores; --thorough for the paper's grid)"
        ),
        BenchConfig,
        only=["thorough", "batch_sizes", "repeats", "pool_size", "threads", "interleave", "batching"],
    )
    add_config_arguments(parser.add_argument_group("output"), BenchConfig, only=["output", "onnx_cache"])


def run(args: argparse.Namespace) -> int:
    from leaf_hub.evaluation.benchmark import benchmark

    report = benchmark(config_from_args(BenchConfig, args))
    for backend, s in report.summary.items():
        print(
            f"{backend}: leaf/teacher throughput x{_fmt(s.queries_speedup)} queries, "
            f"x{_fmt(s.documents_speedup)} documents"
        )
    for kind, d in report.deployment.items():
        print(
            f"int8 leaf vs fp32 teacher, {kind}: x{_fmt(d.leaf_int8_vs_teacher_fp32)} "
            f"(int8 leaf to its fp32 self: cosine {d.leaf_int8_cosine:.4f}, min {d.leaf_int8_cosine_min:.4f})"
        )
    print("wrote " + ", ".join(str(p) for p in report.files))
    return 0


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"

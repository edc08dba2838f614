"""``leaf-hub evaluate``: flags -> :class:`~leaf_hub.evaluation.config.EvaluateConfig` -> :func:`~leaf_hub.evaluate`."""

from __future__ import annotations

import argparse

from leaf_hub.cli.options import add_config_arguments, config_from_args
from leaf_hub.evaluation.config import EvaluateConfig

CONFIGS = (EvaluateConfig,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(
        parser.add_argument_group("models"),
        EvaluateConfig,
        only=["leaf", "teacher", "run", "leaf_backend", "teacher_backend", "device", "batch_size"],
    )
    add_config_arguments(
        parser.add_argument_group("tasks"),
        EvaluateConfig,
        only=["retrieval", "sts", "overlap", "alignment_texts", "alignment_max", "mrl_quant", "dims"],
    )
    add_config_arguments(
        parser.add_argument_group("output and cache"),
        EvaluateConfig,
        only=["output", "plots", "save_to_leaf", "cache_dir", "cache"],
    )


def run(args: argparse.Namespace) -> int:
    from leaf_hub.evaluation.evaluate import evaluate
    from leaf_hub.evaluation.report import results_table

    report = evaluate(config_from_args(EvaluateConfig, args))
    print("\n".join(results_table(report.results())))
    t = report.meta.timing
    if t is not None:
        print(
            f"total {t.total_s:.1f} s (encoding {t.encode_s:.1f} s, cache hits {t.cache_hits}, misses "
            f"{t.cache_misses}; bare encoding time of all texts {t.bare_encode_s:.1f} s"
            + (f", uncached total / bare encoding = {t.overhead_ratio:.2f}x)" if t.overhead_ratio else ")")
        )
    for path in report.files:
        print(f"wrote {path}")
    return 0

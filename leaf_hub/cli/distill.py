"""``leaf-hub distill``: flags -> :class:`~leaf_hub.training.config.DistillConfig` -> :func:`~leaf_hub.distill`."""

from __future__ import annotations

import argparse

from leaf_hub.cli.options import add_config_arguments, config_from_args
from leaf_hub.training.config import DistillConfig, TrainConfig

CONFIGS = (DistillConfig, TrainConfig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(
        parser.add_argument_group("models"),
        DistillConfig,
        only=["teacher", "student", "api_model", "api_key", "query_prompt", "document_prompt", "device"],
    )
    add_config_arguments(
        parser.add_argument_group("data"), DistillConfig, only=["data", "max_texts", "val_batches"]
    )
    add_config_arguments(
        parser.add_argument_group("teacher cache"),
        DistillConfig,
        only=["cache", "cache_dtype", "teacher_batch_size", "cache_shard_size", "teacher_backend"],
    )
    add_config_arguments(
        parser.add_argument_group("run"),
        DistillConfig,
        only=["output", "resume", "warm_start", "warm_start_texts"],
    )
    add_config_arguments(
        parser.add_argument_group(
            "training (the paper's recipe, but for the backbone's learning rate, 2e-4 instead of 1e-4: "
            "--lr 1e-4 --min-lr 1e-5 --head-lr 1e-4 is the paper's single rate)"
        ),
        TrainConfig,
    )


def run(args: argparse.Namespace) -> int:
    from leaf_hub.training.distill import distill

    config = config_from_args(DistillConfig, args, training=config_from_args(TrainConfig, args))
    result = distill(config)
    if result is not None:
        v = result.validation
        print(f"leaf saved to {result.leaf_dir}")
        print(
            f"validation L2 {v.l2:.4f}  cosine to teacher {v.cosine:.4f}  "
            f"({result.steps} steps, {result.wall_time_s:.0f} s)"
        )
    return 0

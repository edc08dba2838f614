"""Held-out cosine to the teacher against wall-clock time, from scratch, teacher cache included.

Two recipes on the same texts in the same run, each given the same time budget:

- leaf-hub's defaults: warm start (float64 ridge projection), length-grouped batches, no dropout, AdamW
  at 2e-4 for the backbone and 1e-4 for the projection in the paper's learning-rate cycles, fitted into
  the time left (``--max-minutes``);
- the paper's plain recipe: random projection, random batches, the backbone's own dropout, the paper's
  single learning rate (1e-4) in the same cycles.

The clock of both starts with the teacher: loading it and filling the cache of teacher embeddings (counted
once, shared by both recipes), then the warm start's fit, then training with validation every few steps.

    python bench/cosine_vs_time.py --texts 12000 --minutes 30

Writes ``bench/results/cosine_vs_time.{json,png}``; the defaults' leaf is kept under ``bench/.cache/`` for
``leaf-hub evaluate``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PAPER_LR, ROOT, SHARED_TRAIN, Recipe, plot_curves, prepare, run_recipe, write_results  # noqa: E402

RECIPES = [
    Recipe("leaf-hub defaults", True, {}),
    Recipe(
        "paper's plain recipe (random projection, random batches)",
        False,
        # The paper's learning rate and the backbone's own dropout, as in the paper.
        {**PAPER_LR, "length_grouping": False, "dropout": None},
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=12000, help="training texts (plus --val held out)")
    parser.add_argument("--val", type=int, default=512, help="held-out texts for the cosine")
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="budget per recipe, teacher cache included"
    )
    parser.add_argument("--teacher-backend", default="onnx", choices=["torch", "onnx"])
    parser.add_argument("--eval-minutes", type=float, default=2.0, help="validate about this often")
    parser.add_argument(
        "--cache",
        help="teacher cache folder: reused when complete (its measured build time is read from "
        "build_seconds.json), else built and timed now and kept; default: a fresh temporary one",
    )
    parser.add_argument("--only", choices=["defaults", "plain"], help="run one recipe")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrainConfig field for the recipes run (repeatable), e.g. --set cycles=1 --set lr=2e-4",
    )
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "cosine_vs_time.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache) if args.cache else Path(tmp) / "teacher-cache"
        reused = (cache / "build_seconds.json").is_file()  # else built (and timed) now
        prepared = prepare(args.texts, args.val, cache, backend=args.teacher_backend)
        results = {
            "texts": args.texts,
            "validation_texts": args.val,
            "budget_minutes": args.minutes,
            "teacher_backend": args.teacher_backend,
            "teacher_cache_s": round(prepared.teacher_s, 1),
            "teacher_cache_reused": reused,
            "machine": f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}",
            "recipes": [],
        }
        recipes = RECIPES if not args.only else [RECIPES[0 if args.only == "defaults" else 1]]
        if args.set:
            overrides = parse_overrides(args.set)
            suffix = ", " + ", ".join(f"{k}={v}" for k, v in overrides.items())
            recipes = [
                Recipe(r.name + suffix, r.warm_start, {**(r.config or {}), **overrides}) for r in recipes
            ]
        for recipe in recipes:
            train_minutes = args.minutes - prepared.teacher_s / 60
            # Validation about every --eval-minutes: random padded batches are several times slower per step.
            seconds_per_step = 0.6 if recipe.warm_start else 3.0
            eval_every = max(10, int(args.eval_minutes * 60 / seconds_per_step))
            out = Path(tmp) / recipe.name.split()[0]
            row = run_recipe(
                prepared, recipe, out, max_minutes=train_minutes, eval_every=eval_every, save_every=10**9
            )
            for point in row["curve"]:
                point["wall_s"] = round(point["elapsed_s"] + prepared.teacher_s, 1)
            row["cosine_at_budget"] = row["curve"][-1]["val_cosine"]
            results["recipes"].append(row)
            if recipe.warm_start:  # keep the defaults' leaf and its held-out texts for leaf-hub evaluate
                kept = ROOT / "bench" / ".cache" / "cosine_vs_time_leaf"
                shutil.rmtree(kept, ignore_errors=True)
                shutil.copytree(out / "leaf", kept)
                row["leaf"] = str(kept.relative_to(ROOT))
                write_validation_texts(prepared, kept.parent / "cosine_vs_time_validation.jsonl")
            print(
                f"{recipe.name}: cosine {row['curve'][0]['val_cosine']:.4f} at {row['curve'][0]['wall_s']:.0f} s -> "
                f"{row['cosine_at_budget']:.4f} at {row['curve'][-1]['wall_s']:.0f} s ({row['final']['step']} steps)",
                file=sys.stderr,
                flush=True,
            )
            write_results(args.output, results)
    plot(results, Path(args.output).with_suffix(".png"))


def write_validation_texts(prepared, path: Path) -> None:
    """The held-out texts, in the file ``leaf-hub distill`` writes (``--alignment-texts`` of evaluate)."""
    from leaf_hub.data.texts import TextRecord
    from leaf_hub.training.distill import write_validation

    source = str(SHARED_TRAIN.relative_to(ROOT.parent))
    write_validation(
        path, [TextRecord(prepared.texts[i], prepared.kinds[i], source) for i in prepared.data.val_idx]
    )


def parse_overrides(items: list[str]) -> dict:
    """``["cycles=1", "lr=2e-4"]`` -> ``{"cycles": 1, "lr": 0.0002}``, typed by TrainConfig's annotations."""
    from dataclasses import fields

    from leaf_hub.training.config import TrainConfig

    # Annotations are strings here (``from __future__ import annotations``): "int | None" -> int.
    kinds = {"int": int, "float": float, "str": str, "bool": lambda v: v.lower() == "true"}
    known = {f.name: kinds[str(f.type).split(" | ")[0]] for f in fields(TrainConfig)}
    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in known or not value:
            raise SystemExit(f"--set {item!r}: give KEY=VALUE with KEY one of {', '.join(known)}")
        overrides[key] = known[key](value)
    return overrides


def plot(results: dict, path: Path) -> None:
    def decorate(ax) -> None:
        ax.axvline(results["teacher_cache_s"] / 60, color="grey", linestyle=":", label="teacher cache done")
        ax.axhline(0.75, color="grey", linestyle="--", linewidth=0.8, label="target 0.75")

    xlabel = "wall-clock minutes from scratch (teacher cache included)"
    title = f"{results['texts']} texts, {results['machine']}"
    plot_curves(results["recipes"], lambda p: p["wall_s"] / 60, xlabel, title, path, decorate)


if __name__ == "__main__":
    main()

"""Which schedule keeps the warm start's head start and keeps learning?

Trains the same warm-started leaf (float64 ridge projection, leaf-hub's default) under several learning-
rate schedules for the same number of steps on the same texts, next to the paper's plain recipe (random
projection, random batches), and records held-out cosine to the teacher along the way.

    python bench/warm_start_schedules.py --texts 8000 --steps 300

Writes ``bench/results/warm_start_schedules.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PAPER_LR, ROOT, Recipe, plot_curves, prepare, run_recipe, write_results  # noqa: E402

RECIPES = {
    "plain": Recipe("paper's plain recipe (random projection, random batches)", False, {"length_grouping": False}),
    "warm": Recipe("warm start, paper schedule (3 cycles)", True, {}),
    "warm-1cycle": Recipe("warm start, 1 cycle", True, {"cycles": 1}),
    "warm-1cycle-lr3e-4": Recipe("warm start, 1 cycle, lr 3e-4", True, {"cycles": 1, "lr": 3e-4}),
    "warm-headlr1e-5": Recipe("warm start, head lr 1e-5 (head nearly frozen)", True, {"head_lr": 1e-5}),
    "warm-warmup": Recipe("warm start, 10% warm-up, 1 cycle", True, {"cycles": 1, "warmup_steps": -10}),
    "warm-headlr1e-5-1cycle": Recipe("warm start, head lr 1e-5, 1 cycle", True, {"head_lr": 1e-5, "cycles": 1}),
    "warm-lr2e-4-headlr1e-5-1cycle": Recipe(
        "warm start, lr 2e-4, head lr 1e-5, 1 cycle", True, {"lr": 2e-4, "head_lr": 1e-5, "cycles": 1}
    ),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=8000, help="training texts (plus --val held out)")
    parser.add_argument("--val", type=int, default=512)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, of {list(RECIPES)}")
    parser.add_argument("--teacher-backend", default="onnx", choices=["torch", "onnx"])
    parser.add_argument("--cache", help="teacher cache folder (default bench/.cache/teacher-N)")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "warm_start_schedules.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING)

    n = args.texts + args.val
    cache = Path(args.cache or ROOT / "bench" / ".cache" / f"teacher-{n}")
    prepared = prepare(args.texts, args.val, cache, backend=args.teacher_backend)
    results = {
        "texts": args.texts,
        "validation_texts": args.val,
        "steps": args.steps,
        "machine": f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}",
        "recipes": [],
    }
    previous = Path(args.output)
    if previous.is_file():  # keep earlier rows of the same set-up, so recipes can be run a few at a time
        old = json.loads(previous.read_text())
        if (old["texts"], old["validation_texts"], old["steps"]) == (args.texts, args.val, args.steps):
            wanted = set(args.recipes.split(","))
            results["recipes"] = [row for row in old["recipes"] if row["key"] not in wanted]
    for key in args.recipes.split(","):
        recipe = RECIPES[key]
        config = {**PAPER_LR, **(recipe.config or {})}  # variations on the paper's schedule
        if config.get("warmup_steps", 0) < 0:  # negative = percent of the run
            config["warmup_steps"] = args.steps * -config["warmup_steps"] // 100
        with tempfile.TemporaryDirectory() as tmp:
            row = run_recipe(
                prepared,
                Recipe(recipe.name, recipe.warm_start, config),
                Path(tmp),
                max_steps=args.steps,
                eval_every=args.eval_every,
                save_every=10**9,
            )
        row["key"] = key
        results["recipes"].append(row)
        print(f"{key:24s} start {row['curve'][0]['val_cosine']:.4f}  final {row['final']['val_cosine']:.4f}  "
              f"best {row['best_val_cosine']:.4f}", file=sys.stderr, flush=True)  # fmt: skip
        out = Path(args.output)
        write_results(out, results)
    plot(results, Path(args.output).with_suffix(".png"))


def plot(results: dict, path: Path) -> None:
    title = f"Warm-start schedules, {results['texts']} texts"
    plot_curves(results["recipes"], lambda p: p["step"], "optimizer step (batch 32)", title, path)


if __name__ == "__main__":
    main()

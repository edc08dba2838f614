"""Dropout while distilling: the backbone's own (0.1 for MiniLM) against none, from the same warm start.

Both runs train the same warm-started leaf on the same texts and batches for the same number of steps and
log held-out cosine to the teacher against steps and seconds. Dropout's random masks cost about a third of
a CPU forward pass, and the target is a fixed vector rather than a label to regularize towards.

    python bench/dropout.py --texts 12000 --steps 300

Writes ``bench/results/dropout.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PAPER_LR, ROOT, Recipe, prepare, run_recipe, write_results  # noqa: E402

RECIPES = [
    # Measured at the paper's learning rate, leaf-hub's default at the time.
    Recipe("no dropout (leaf-hub default)", True, {**PAPER_LR, "dropout": 0.0}),
    Recipe("backbone's own dropout (0.1)", True, {**PAPER_LR, "dropout": None}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=12000)
    parser.add_argument("--val", type=int, default=512)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--cache", help="teacher cache folder to reuse or build (default: temporary)")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "dropout.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache) if args.cache else Path(tmp) / "teacher-cache"
        prepared = prepare(args.texts, args.val, cache, backend="onnx")
        rows = []
        for i, recipe in enumerate(RECIPES):
            row = run_recipe(
                prepared,
                recipe,
                Path(tmp) / f"run-{i}",
                max_steps=args.steps,
                eval_every=50,
                save_every=10**9,
            )
            rows.append(row)
            first, last = row["curve"][0], row["final"]
            print(
                f"{recipe.name}: cosine {first['val_cosine']:.4f} -> {last['val_cosine']:.4f} after "
                f"{last['step']} steps, {last['elapsed_s']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    write_results(args.output, {"texts": args.texts, "steps": args.steps, "recipes": rows})


if __name__ == "__main__":
    main()

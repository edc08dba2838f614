"""Levers against overfitting, in a short run that overfits like the 30-minute one.

The 30-minute run of ``bench/cosine_vs_time.py`` sees each of its 12,000 texts about 6 times and ends
with training L2 0.59 against held-out 0.71. This benchmark reproduces that regime in 8 minutes: the
first 4,000 of the same texts (same teacher cache, same 512 held-out texts), about 6 epochs, each variant
warm-started and trained on the clock like leaf-hub's defaults:

- ``paper-lr``: leaf-hub's defaults at the paper's single learning rate (1e-4 to 1e-5);
- ``frozen-embeddings``: the same, with the student's word embeddings (half of MiniLM's parameters) frozen;
- ``dropout``: the same, with the backbone's own dropout (0.1) back on, as a regularizer;
- ``defaults``: leaf-hub's defaults: body learning rate 2e-4 (head kept at 1e-4), decaying to a tenth.

    python bench/overfitting.py --cache bench/.cache/teacher-12512-s3

Writes ``bench/results/overfitting.json``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PAPER_LR, ROOT, Recipe, prepare, run_recipe, write_results  # noqa: E402

VARIANTS = {
    "paper-lr": Recipe("leaf-hub defaults, paper's lr 1e-4", True, PAPER_LR),
    "frozen-embeddings": Recipe("frozen word embeddings, paper's lr 1e-4", True, PAPER_LR),
    "dropout": Recipe("backbone dropout 0.1, paper's lr 1e-4", True, {**PAPER_LR, "dropout": None}),
    "defaults": Recipe("leaf-hub defaults (body lr 2e-4, head lr 1e-4)", True, {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache", required=True, help="teacher cache of the 12,000 + 512 texts (built if new)"
    )
    parser.add_argument("--train", type=int, default=4000, help="training texts (a prefix of the 12,000)")
    parser.add_argument("--minutes", type=float, default=8.0, help="budget per variant, warm start included")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS)
    )
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "overfitting.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")

    prepared = prepare(12000, 512, Path(args.cache), backend="onnx")
    prepared.data.train_idx = prepared.data.train_idx[: args.train]
    base = prepared.base
    results = {"texts": args.train, "validation_texts": 512, "budget_minutes": args.minutes, "recipes": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            prepared.base = base
            if name == "frozen-embeddings":
                prepared.base = copy.deepcopy(base)
                prepared.base[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
            row = run_recipe(
                prepared,
                VARIANTS[name],
                Path(tmp) / name,
                max_minutes=args.minutes,
                eval_every=100,
                save_every=10**9,
            )
            row["variant"] = name
            results["recipes"].append(row)
            print(
                f"{name}: held-out cosine {row['curve'][0]['val_cosine']:.4f} -> {row['final']['val_cosine']:.4f} "
                f"({row['final']['step']} steps)",
                file=sys.stderr,
                flush=True,
            )
            write_results(args.output, results)


if __name__ == "__main__":
    main()

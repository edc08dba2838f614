"""Which schedule keeps the warm start's head start, for normalized and unnormalized teachers?

The ridge warm start puts the leaf close to its teacher before any step; AdamW's first steps at the peak rate
undid part of it (issue 20: all-mpnet-base-v2 0.668 -> 0.630 held-out cosine in 10 steps; an mxbai-shaped
teacher 0.949 -> 0.826 in 9). This benchmark trains the same warm-started leaf under several warm-ups and
records held-out cosine every ``--eval-every`` steps over the first ``--steps`` steps, for two teachers:

- ``mpnet``: all-mpnet-base-v2 (mean pooling, normalized, 768-d);
- ``mxbai-shaped``: built here from mpnet's weights in the shape of mxbai-embed-large-v1: CLS pooling, a fixed
  random Dense 768 -> 1024 (no bias, no activation), not normalized, mixedbread's query prompt.

By default the steps measured are the first of a long run (``--schedule long``: the cycles spread over
``--long-steps`` steps, so the rate is at its peak, the worst case); ``--schedule short`` fits the cycles into
the measured steps, as ``--max-steps`` does.

    flock /tmp/leafhub-cpu.lock python bench/warm_start_schedules.py --steps 200

Writes ``bench/results/warm_start_first_steps.{json,png}``. The earlier question (300 steps of schedules,
``--recipes warm,warm-1cycle,...``, 8,000 texts) wrote ``warm_start_schedules.json``.
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
from _common import (  # noqa: E402
    PAPER_LR,
    ROOT,
    TEACHER,
    Recipe,
    prepare,
    run_recipe,
    stopping_after,
    write_results,
)

NO_WARMUP = {"warmup_steps": 0, "backbone_warmup_steps": 0}
RECIPES = {
    # The first steps (issue 20): warm-ups on leaf-hub's rates (backbone 2e-4, projection 1e-4).
    "no-warmup": Recipe("no warm-up (leaf-hub's defaults before)", True, NO_WARMUP),
    "warmup-50": Recipe("warm-up 50 steps, all rates", True, {**NO_WARMUP, "warmup_steps": 50}),
    "warmup-100": Recipe("warm-up 100 steps, all rates", True, {**NO_WARMUP, "warmup_steps": 100}),
    "backbone-warmup-100": Recipe(
        "backbone warm-up 100 steps (projection at its rate)", True, {**NO_WARMUP, "backbone_warmup_steps": 100}
    ),
    "backbone-warmup-200": Recipe(
        "backbone warm-up 200 steps (projection at its rate)", True, {**NO_WARMUP, "backbone_warmup_steps": 200}
    ),
    "defaults": Recipe("leaf-hub's defaults", True, {}),
    # The earlier question: schedules over 300 steps, at the paper's single rate.
    "plain": Recipe("paper's plain recipe (random projection, random batches)", False, {**PAPER_LR, "length_grouping": False}),
    "warm": Recipe("warm start, paper schedule (3 cycles)", True, PAPER_LR),
    "warm-1cycle": Recipe("warm start, 1 cycle", True, {**PAPER_LR, "cycles": 1}),
    "warm-1cycle-lr3e-4": Recipe("warm start, 1 cycle, lr 3e-4", True, {**PAPER_LR, "cycles": 1, "lr": 3e-4}),
    "warm-headlr1e-5": Recipe("warm start, head lr 1e-5 (head nearly frozen)", True, {**PAPER_LR, "head_lr": 1e-5}),
    "warm-headlr1e-5-1cycle": Recipe("warm start, head lr 1e-5, 1 cycle", True, {**PAPER_LR, "head_lr": 1e-5, "cycles": 1}),
}  # fmt: skip
FIRST_STEPS = "no-warmup,warmup-50,warmup-100,backbone-warmup-100,backbone-warmup-200"
MXBAI_QUERY_PROMPT = "Represent this sentence for searching relevant passages: "


def mxbai_shaped_teacher(folder: Path) -> Path:
    """A teacher shaped like mxbai-embed-large-v1, from all-mpnet-base-v2's weights (saved once)."""
    if (folder / "modules.json").is_file():
        return folder
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling

    mpnet = SentenceTransformer(TEACHER, device="cpu")
    torch.manual_seed(0)
    dense = Dense(768, 1024, bias=False, activation_function=torch.nn.Identity())
    model = SentenceTransformer(
        modules=[mpnet[0], Pooling(768, pooling_mode="cls"), dense], prompts={"query": MXBAI_QUERY_PROMPT}
    )
    model.save(str(folder))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4096, help="training texts (plus --val held out)")
    parser.add_argument("--val", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--teachers", default="mpnet,mxbai-shaped")
    parser.add_argument("--schedule", choices=["long", "short"], default="long")
    parser.add_argument(
        "--long-steps", type=int, default=6000, help="the long run's length (--schedule long)"
    )
    parser.add_argument("--recipes", default=FIRST_STEPS, help=f"comma-separated, of {list(RECIPES)}")
    parser.add_argument("--teacher-backend", default="onnx", choices=["torch", "onnx"])
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "warm_start_first_steps.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING)
    unknown = [r for r in args.recipes.split(",") if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {', '.join(RECIPES)}")

    n = args.texts + args.val
    results = {
        "texts": args.texts,
        "validation_texts": args.val,
        "steps": args.steps,
        "schedule": args.schedule,
        "long_steps": args.long_steps if args.schedule == "long" else None,
        "machine": f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}",
        "teachers": {},
    }
    previous = Path(args.output)
    if previous.is_file():  # keep earlier rows of the same set-up, so recipes can be run a few at a time
        old = json.loads(previous.read_text())
        same = ("texts", "validation_texts", "steps", "schedule", "long_steps")
        if all(old.get(k) == results[k] for k in same):
            results["teachers"] = old["teachers"]
    for teacher in args.teachers.split(","):
        if teacher == "mpnet":
            spec, backend, cache = TEACHER, args.teacher_backend, ROOT / "bench" / ".cache" / f"teacher-{n}"
        elif teacher == "mxbai-shaped":
            spec = str(mxbai_shaped_teacher(ROOT / "bench" / ".cache" / "mxbai-shaped-teacher"))
            backend, cache = "torch", ROOT / "bench" / ".cache" / f"teacher-mxbai-shaped-{n}"
        else:
            parser.error(f"unknown teacher {teacher!r}: mpnet or mxbai-shaped")
        prepared = prepare(args.texts, args.val, cache, teacher_spec=spec, backend=backend)
        rows = [r for r in results["teachers"].get(teacher, []) if r["key"] not in args.recipes.split(",")]
        for key in args.recipes.split(","):
            recipe = RECIPES[key]
            length = args.long_steps if args.schedule == "long" else args.steps
            with tempfile.TemporaryDirectory() as tmp, stopping_after(args.steps):
                row = run_recipe(
                    prepared, recipe, Path(tmp), reuse_warm_start=True, max_steps=length,
                    eval_every=args.eval_every, save_every=10**9,
                )  # fmt: skip
            row["key"] = key
            start = row["curve"][0]["val_cosine"]
            row["start_cosine"] = start
            row["min_cosine"] = min(p["val_cosine"] for p in row["curve"])
            row["largest_drop"] = start - row["min_cosine"]
            row["keeps_warm_start"] = row["largest_drop"] <= 0.005
            rows.append(row)
            print(
                f"{teacher:13s} {key:18s} start {start:.4f}  min {row['min_cosine']:.4f}  "
                f"final {row['final']['val_cosine']:.4f}  (drop {row['largest_drop']:.4f})",
                file=sys.stderr,
                flush=True,
            )
            results["teachers"][teacher] = rows
            write_results(args.output, results)
    plot(results, Path(args.output).with_suffix(".png"))


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    teachers = list(results["teachers"])
    if results.get("teachers") is None or not teachers:
        return
    fig, axes = plt.subplots(1, len(teachers), figsize=(6.5 * len(teachers), 4.5), squeeze=False)
    for ax, teacher in zip(axes[0], teachers, strict=True):
        rows = results["teachers"][teacher]
        for row in rows:
            ax.plot([p["step"] for p in row["curve"]], [p["val_cosine"] for p in row["curve"]], marker="o",
                    markersize=2.5, label=row["name"])  # fmt: skip
        start = rows[0]["start_cosine"]
        ax.axhline(start, color="grey", linewidth=0.8)
        ax.axhline(start - 0.005, color="grey", linestyle="--", linewidth=0.8, label="warm start - 0.005")
        ax.set_title(f"{teacher}: first {results['steps']} steps ({results['schedule']} schedule)")
        ax.set_xlabel("optimizer step (batch 32)")
        ax.set_ylabel("held-out cosine to the teacher")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{results['texts']} texts, {results['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()

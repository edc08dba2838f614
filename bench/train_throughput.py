"""Training throughput: leaf-hub's training against sentence-transformers' trainer as users configure it.

Every side trains a copy of the same warm-started leaf (all-MiniLM-L6-v2 -> all-mpnet-base-v2, ridge warm
start) on the same texts of ``../shared/data/train`` at batch 32 with the same single learning rate and
linear decay, for the same number of steps, timed in the same run (the order rotates per repeat):

- ``leaf-hub``: ``leaf_hub.training.train`` (pre-tokenized TrainData, length-grouped batches, dropout off,
  no clipping; its validations and saves are timed apart and left out of its training time);
- ``st``: ``SentenceTransformerTrainer`` + ``EmbedDistillLoss(distance_metric="l2")`` +
  ``optim="adamw_torch_fused"`` on a datasets.Dataset of (text, teacher vector), as a user gets it
  without code: random batches, the backbone's dropout (0.1), gradient clipping at 1.0;
- ``st-nodrop``: the same with the backbone's dropout set to 0;
- ``st-grouped``: the same with a length-grouped batch sampler (the 20-line DefaultBatchSampler subclass
  below), dropout as shipped;
- ``st-grouped-nodrop``: length-grouped and dropout 0;
- ``st-grouped-nodrop-noclip``: and no gradient clipping (``max_grad_norm=0``): the strongest recipe.

Reports texts/s over the whole run and in the steady state (from step ``--skip`` on, from per-step
timestamps), and held-out L2 / cosine to the teacher after the same number of texts.

    flock /tmp/leafhub-cpu.lock python bench/train_throughput.py --steps 200 --repeats 2

Writes ``bench/results/train_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, prepare, warm_start, write_results  # noqa: E402

SIDES = ["leaf-hub", "st", "st-nodrop", "st-grouped", "st-grouped-nodrop", "st-grouped-nodrop-noclip"]
SLOW = {"st", "st-nodrop"}  # random batches: several times slower, run --slow-repeats times
LR = 1e-4


def length_grouped_sampler(lengths):
    """The length-grouped batch sampler a sentence-transformers user writes (about twenty lines)."""
    from sentence_transformers.base.sampler import DefaultBatchSampler

    from leaf_hub.training.batching import length_grouped_batches

    class LengthGroupedBatchSampler(DefaultBatchSampler):
        """Batches of similar token length, in random order, new each epoch."""

        def __iter__(self):
            yield from length_grouped_batches(lengths, self.batch_size, self.seed, self.epoch)

        def __len__(self):
            return len(length_grouped_batches(lengths, self.batch_size, self.seed, self.epoch))

    return LengthGroupedBatchSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4096, help="training texts (plus 256 held out)")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps at batch 32 for each side")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--slow-repeats", type=int, default=1, help="repeats of the random-batch sides")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, of {SIDES}")
    parser.add_argument("--skip", type=int, default=20, help="first steps left out of the steady-state rate")
    parser.add_argument("--cache", help="teacher cache folder (default bench/.cache/teacher-N)")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "train_throughput.json"))
    parser.add_argument(
        "--append", action="store_true", help="add repeats to the runs already in --output (same set-up)"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING)
    sides = args.sides.split(",")
    if unknown := set(sides) - set(SIDES):
        parser.error(f"unknown side(s) {sorted(unknown)}")

    from leaf_hub.training.validation import validate

    n_val = 256
    cache = Path(args.cache or ROOT / "bench" / ".cache" / f"teacher-{args.texts + n_val}")
    prepared = prepare(args.texts, n_val, cache, backend="onnx")
    base, data = prepared.base, prepared.data
    warm_start(base, data)
    n_texts = args.steps * 32
    results: dict = {
        "texts": args.texts,
        "validation_texts": n_val,
        "steps": args.steps,
        "texts_seen": n_texts,
        "batch_size": 32,
        "learning_rate": LR,
        "machine": f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}",
        "versions": _versions(),
        "start": validate(base, data, 64, "cpu"),
        "runs": [],
    }

    first = 0
    if args.append and Path(args.output).is_file():
        old = json.loads(Path(args.output).read_text())
        same = ("texts", "validation_texts", "steps", "batch_size", "learning_rate")
        if any(old.get(k) != results[k] for k in same):
            parser.error(f"{args.output} holds another set-up; --append adds repeats of the same one")
        results["runs"] = old["runs"]
        first = 1 + max(r["repeat"] for r in old["runs"])

    def steady(stamps: list[float]) -> float:
        k = min(args.skip, len(stamps) - 2)
        return (len(stamps) - 1 - k) * 32 / (stamps[-1] - stamps[k])

    runners = {"leaf-hub": lambda: run_leaf_hub(base, data, args.steps)}
    for side in SIDES[1:]:
        runners[side] = lambda side=side: run_st(prepared, args.steps, side)
    for rep in range(first, first + args.repeats):
        order = sides[rep % len(sides) :] + sides[: rep % len(sides)]
        for side in order:
            if side in SLOW and rep - first >= args.slow_repeats:
                continue
            run = runners[side]()
            stats = validate(run.pop("leaf"), data, 64, "cpu")
            stamps = run.pop("stamps")
            row = {
                "side": side,
                "repeat": rep,
                **run,
                "texts_per_s": n_texts / run["train_s"],
                "steady_texts_per_s": steady(stamps),
                **stats,
            }
            results["runs"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            write_results(args.output, results)
    results["summary"] = summarize(
        results["runs"], [s for s in SIDES if any(r["side"] == s for r in results["runs"])]
    )
    write_results(args.output, results)
    Path(args.output).with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


def run_leaf_hub(base, data, steps: int) -> dict:
    """leaf-hub's train() as shipped, at the baseline's learning rate and schedule."""
    from leaf_hub.training import callbacks, trainer
    from leaf_hub.training.config import TrainConfig

    leaf = copy.deepcopy(base)
    stamps: list[float] = []
    aside = {"s": 0.0}  # validation and saving: work the other sides do not do
    real = {
        "step": trainer.LeafTrainer.training_step,
        "validate": callbacks.validate,
        "save_dir": callbacks.atomic_save_dir,
        "checkpoint": trainer.LeafTrainer._save_checkpoint,
    }

    def timed(fn):
        def inner(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                aside["s"] += time.perf_counter() - start

        return inner

    def stamped_step(self, *a, **k):
        out = real["step"](self, *a, **k)
        stamps.append(time.perf_counter())
        return out

    trainer.LeafTrainer.training_step = stamped_step
    callbacks.validate, callbacks.atomic_save_dir = timed(real["validate"]), timed(real["save_dir"])
    trainer.LeafTrainer._save_checkpoint = timed(real["checkpoint"])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # One rate for backbone and projection, decaying linearly to ~0 (transformers' "linear"), no
            # warm-up: the baseline's schedule. The rest is leaf-hub's defaults.
            config = TrainConfig(
                lr=LR, head_lr=None, min_lr=1e-12, cycles=1, warmup_steps=0, backbone_warmup_steps=0,
                max_steps=steps, eval_every=10**9, save_every=10**9,
            )  # fmt: skip
            start = time.perf_counter()
            trainer.train(leaf, data, Path(tmp), config)
            wall = time.perf_counter() - start
    finally:
        trainer.LeafTrainer.training_step = real["step"]
        callbacks.validate, callbacks.atomic_save_dir = real["validate"], real["save_dir"]
        trainer.LeafTrainer._save_checkpoint = real["checkpoint"]
    return {"wall_s": wall, "train_s": wall - aside["s"], "stamps": stamps, "leaf": leaf}


def run_st(prepared, steps: int, side: str) -> dict:
    """sentence-transformers' trainer with EmbedDistillLoss(l2) and fused AdamW, configured per ``side``."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss
    from transformers import TrainerCallback

    from leaf_hub.training.trainer import set_dropout

    data = prepared.data
    model = copy.deepcopy(prepared.base)
    if "nodrop" in side:
        set_dropout(model, 0.0)
    texts = [prepared.prompts.get(k, "") + t for t, k in zip(prepared.texts, prepared.kinds, strict=True)]
    dataset = Dataset.from_dict(
        {
            "text": [texts[i] for i in data.train_idx],
            "label": [data.targets[i].tolist() for i in data.train_idx],
        }
    )
    extra = {}
    if "grouped" in side:
        extra["batch_sampler"] = length_grouped_sampler(data.lengths[data.train_idx])
    if "noclip" in side:
        extra["max_grad_norm"] = 0.0
    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        targs = SentenceTransformerTrainingArguments(
            output_dir=tmp, per_device_train_batch_size=32, max_steps=steps, learning_rate=LR,
            weight_decay=0.01, lr_scheduler_type="linear", optim="adamw_torch_fused", save_strategy="no",
            report_to="none", logging_steps=10**9, seed=0, use_cpu=not torch.cuda.is_available(),
            disable_tqdm=True, **extra,
        )  # fmt: skip
        trainer = SentenceTransformerTrainer(
            model=model,
            args=targs,
            train_dataset=dataset,
            loss=EmbedDistillLoss(model, distance_metric="l2"),
            callbacks=[Stamp()],
        )
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
    return {"wall_s": wall, "train_s": wall, "stamps": stamps, "leaf": model}


def summarize(runs: list[dict], sides: list[str]) -> dict:
    summary = {}
    for side in sides:
        rows = [r for r in runs if r["side"] == side]
        if rows:
            summary[side] = {
                # The best repeat is the least disturbed one (other work on a shared machine only slows a
                # run down); the median is reported beside it.
                "texts_per_s": float(max(r["texts_per_s"] for r in rows)),
                "steady_texts_per_s": float(max(r["steady_texts_per_s"] for r in rows)),
                "texts_per_s_median": float(np.median([r["texts_per_s"] for r in rows])),
                "steady_texts_per_s_median": float(np.median([r["steady_texts_per_s"] for r in rows])),
                "val_l2": float(np.median([r["val_l2"] for r in rows])),
                "val_cosine": float(np.median([r["val_cosine"] for r in rows])),
                "repeats": len(rows),
            }
    if "leaf-hub" in summary:
        ours = summary["leaf-hub"]
        for row in summary.values():
            row["leaf_hub_speedup"] = ours["texts_per_s"] / row["texts_per_s"]
            row["leaf_hub_steady_speedup"] = ours["steady_texts_per_s"] / row["steady_texts_per_s"]
            row["leaf_hub_speedup_median"] = ours["texts_per_s_median"] / row["texts_per_s_median"]
    return summary


def markdown(results: dict) -> str:
    lines = [
        f"Training throughput, {results['texts']} texts of ../shared/data/train, batch 32, {results['steps']} "
        f"steps ({results['texts_seen']} texts), lr {results['learning_rate']} linear decay, "
        f"{results['machine']}; held-out L2 / cosine on {results['validation_texts']} texts "
        f"(start: {results['start']['val_l2']:.4f} / {results['start']['val_cosine']:.4f}).",
        "",
        "Rates: the best of the repeats (the least disturbed; median in brackets). Speed-up: leaf-hub's rate over "
        "the side's, best against best (median against median in brackets).",
        "",
        "| side | texts/s, whole run | texts/s, steady state | leaf-hub's speed-up (whole run) | held-out L2 | "
        "cosine | repeats |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for side, row in results["summary"].items():
        speedup = (
            f"{row['leaf_hub_speedup']:.2f}x ({row['leaf_hub_speedup_median']:.2f}x)"
            if "leaf_hub_speedup" in row
            else "n/a"
        )
        lines.append(
            f"| {side} | {row['texts_per_s']:.1f} ({row['texts_per_s_median']:.1f}) | "
            f"{row['steady_texts_per_s']:.1f} ({row['steady_texts_per_s_median']:.1f}) | {speedup} | "
            f"{row['val_l2']:.5f} | {row['val_cosine']:.4f} | {row['repeats']} |"
        )
    return "\n".join(lines) + "\n"


def _versions() -> dict:
    import sentence_transformers
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }


if __name__ == "__main__":
    main()

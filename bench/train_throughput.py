"""Training throughput: leaf-hub's loop against sentence-transformers' trainer, same texts, same student.

Baseline: ``SentenceTransformerTrainer`` + ``MSELoss`` on a dataset of (text, teacher embedding), the
standard sentence-transformers way to distil into a student. Both start from the same warm-started leaf,
see the same number of texts at batch 32 on the mixed-length texts of ``../shared/data/train``, and are
timed in the same run. Reports texts/s of each, the ratio, and the validation L2 each reached.

    python bench/train_throughput.py --texts 2048 --steps 40
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
from _common import PAPER_LR, ROOT, read_texts, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="sentence-transformers/all-mpnet-base-v2")
    parser.add_argument("--student", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--texts", type=int, default=2048, help="training texts (plus 256 held out)")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps at batch 32 for each side")
    parser.add_argument("--cache", default=str(ROOT / "bench" / ".cache" / "teacher"))
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "train_throughput.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING)

    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MSELoss

    from leaf_hub.leaf import build_leaf, projection
    from leaf_hub.models import load_model
    from leaf_hub.teachers import load_teacher
    from leaf_hub.teachers.cache import TeacherCache
    from leaf_hub.training.data import TrainData
    from leaf_hub.training.distill import pooled_embeddings, tokenize_for_leaf
    from leaf_hub.training.loop import TrainConfig, train, validate
    from leaf_hub.training.warm_start import fit_ridge_projection, set_projection

    n_val = 256
    texts, kinds = read_texts(args.texts + n_val)
    teacher = load_teacher(args.teacher)
    targets = TeacherCache(Path(args.cache) / f"n{len(texts)}").build(teacher, texts, kinds)
    prompts = dict(teacher.prompts)
    base = build_leaf(
        load_model(args.student, device="cpu"),
        teacher.dimension,
        teacher.normalized,
        prompts,
        teacher.max_seq_length,
    )
    ids = tokenize_for_leaf(base, texts, kinds, prompts)
    pad = base[0].tokenizer.pad_token_id
    train_idx, val_idx = np.arange(args.texts), np.arange(args.texts, args.texts + n_val)
    w, _ = fit_ridge_projection(pooled_embeddings(base, [ids[i] for i in train_idx], pad), targets[train_idx])
    set_projection(projection(base), w)
    data = TrainData(ids, targets, train_idx, val_idx, pad)
    n_texts = args.steps * 32
    results = {
        "texts_seen": n_texts,
        "machine": f"{os.cpu_count()} CPU cores",
        "torch_threads": torch.get_num_threads(),
    }

    # leaf-hub
    leaf = copy.deepcopy(base)
    with tempfile.TemporaryDirectory() as tmp:
        # The baseline's optimizer settings (one learning rate, 1e-4), so validation L2 compares like with like.
        config = TrainConfig(**PAPER_LR, max_steps=args.steps, eval_every=10**9, save_every=10**9)
        start = time.perf_counter()
        train(leaf, data, Path(tmp), config)
        elapsed = time.perf_counter() - start
    results["leaf_hub"] = {
        "seconds": elapsed,
        "texts_per_s": n_texts / elapsed,
        **validate(leaf, data, 64, "cpu"),
    }

    # sentence-transformers baseline: its trainer with MSELoss on (text, teacher embedding).
    st_model = copy.deepcopy(base)
    prefixed = [prompts.get(k, "") + t for t, k in zip(texts, kinds, strict=True)]
    dataset = Dataset.from_dict(
        {"text": [prefixed[i] for i in train_idx], "label": [targets[i].tolist() for i in train_idx]}
    )
    with tempfile.TemporaryDirectory() as tmp:
        targs = SentenceTransformerTrainingArguments(
            output_dir=tmp, per_device_train_batch_size=32, max_steps=args.steps, learning_rate=1e-4,
            weight_decay=0.01, lr_scheduler_type="linear", save_strategy="no", report_to="none",
            logging_steps=10**9, dataloader_drop_last=False, seed=0, use_cpu=not torch.cuda.is_available(),
        )  # fmt: skip
        trainer = SentenceTransformerTrainer(
            model=st_model, args=targs, train_dataset=dataset, loss=MSELoss(st_model)
        )
        start = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - start
    results["sentence_transformers"] = {
        "seconds": elapsed,
        "texts_per_s": n_texts / elapsed,
        **validate(st_model, data, 64, "cpu"),
    }
    results["speedup"] = results["leaf_hub"]["texts_per_s"] / results["sentence_transformers"]["texts_per_s"]
    write_results(args.output, results)
    print(json.dumps(results, indent=2))
    print(
        f"leaf-hub {results['leaf_hub']['texts_per_s']:.1f} texts/s vs sentence-transformers "
        f"{results['sentence_transformers']['texts_per_s']:.1f} texts/s: {results['speedup']:.2f}x; "
        f"val L2 {results['leaf_hub']['val_l2']:.4f} vs {results['sentence_transformers']['val_l2']:.4f}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

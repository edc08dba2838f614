"""``leaf-hub distill``: texts -> teacher cache -> warm start -> training -> the leaf.

One command runs the whole LEAF recipe. Everything it produces lands in the run folder (``--output``)::

    teacher-cache/       teacher embeddings (reused by reruns; --cache puts it elsewhere to share it)
    leaf/                the best leaf by validation L2, a plain sentence-transformers folder
    checkpoints/epoch-N  one leaf per finished epoch
    state/               optimizer, RNG and progress for --resume
    metrics.jsonl        validation L2 / cosine over time
    validation.jsonl     the held-out texts (for ``leaf-hub evaluate``)
    run.json             options and results

It ends by printing the validation L2 and cosine to the teacher that the leaf reached.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import numpy as np

from leaf_hub.errors import LeafHubError

logger = logging.getLogger(__name__)

DEFAULT_STUDENT = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_DATA = ["builtin", "bert-tokens"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("models")
    g.add_argument(
        "--teacher",
        required=True,
        help="Hub id, local folder, or http(s) URL of an OpenAI-style embeddings API",
    )
    g.add_argument(
        "--student", default=DEFAULT_STUDENT, help=f"backbone of the leaf (default {DEFAULT_STUDENT})"
    )
    g.add_argument("--api-model", help="model name for an HTTP teacher (env LEAF_HUB_TEACHER_MODEL)")
    g.add_argument(
        "--api-key", help="key for an HTTP teacher (env LEAF_HUB_TEACHER_API_KEY or OPENAI_API_KEY)"
    )
    g.add_argument(
        "--query-prompt", help="override the teacher's query prompt (used for teacher and leaf alike)"
    )
    g.add_argument("--document-prompt", help="override the teacher's document prompt")
    g.add_argument("--device", help="device for the models (default: Accelerate's choice)")
    g = parser.add_argument_group("data")
    g.add_argument(
        "--data",
        action="append",
        help="training texts, repeatable: a file (.jsonl/.txt/.parquet/.csv[::options]), hf:DATASET[::options], "
        "bert-tokens, words[:PATH], builtin, preset:leaf-paper (default: builtin + bert-tokens)",
    )
    g.add_argument("--max-texts", type=int, help="use at most this many texts (after de-duplication)")
    g.add_argument("--val-batches", type=int, default=128, help="held-out validation batches (paper: 128)")
    g = parser.add_argument_group("teacher cache")
    g.add_argument("--cache", help="teacher-embedding cache folder (default OUTPUT/teacher-cache)")
    g.add_argument("--cache-dtype", default="float16", choices=["float16", "float32"])
    g.add_argument("--teacher-batch-size", type=int, default=64)
    g.add_argument(
        "--cache-shard-size",
        type=int,
        default=2048,
        help="texts per cache shard: the unit of resuming and of the split across processes",
    )
    g.add_argument(
        "--teacher-backend",
        default="torch",
        choices=["torch", "onnx"],
        help="run a local teacher with PyTorch or ONNX Runtime (faster on CPU; checked against PyTorch first)",
    )
    g = parser.add_argument_group(
        "training (defaults: the paper's, but for the backbone's learning rate, 2e-4 instead of 1e-4;"
        " --lr 1e-4 --min-lr 1e-5 gives the paper's single rate)"
    )
    g.add_argument("--output", required=True, help="run folder")
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr", type=float, default=2e-4, help="peak learning rate of the backbone")
    g.add_argument(
        "--min-lr",
        type=float,
        default=2e-5,
        help="end of each cycle's decay, for --lr (--head-lr decays alike)",
    )
    g.add_argument(
        "--head-lr",
        type=float,
        default=1e-4,
        help="peak learning rate of the projection (the paper's 1e-4: a larger one undoes the warm start)",
    )
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--cycles", type=int, default=3)
    g.add_argument("--epochs-per-cycle", type=int, default=10)
    g.add_argument("--warmup-steps", type=int, default=0)
    g.add_argument(
        "--max-steps", type=int, help="stop after this many optimizer steps (schedule fits into them)"
    )
    g.add_argument("--max-minutes", type=float, help="stop after this many minutes of training")
    g.add_argument("--eval-every", type=int, default=100)
    g.add_argument("--save-every", type=int, default=100, help="save resumable state every N steps")
    g.add_argument("--gradient-accumulation-steps", type=int, default=1)
    g.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    g.add_argument("--keep-checkpoints", type=int, help="keep only the last N epoch checkpoints")
    g.add_argument(
        "--no-warm-start", action="store_true", help="start from a random projection (the paper's recipe)"
    )
    g.add_argument(
        "--warm-start-texts", type=int, default=20000, help="texts used to fit the warm-start projection"
    )
    g.add_argument("--no-length-grouping", action="store_true", help="random batches (the paper's recipe)")
    g.add_argument(
        "--dropout",
        type=_dropout,
        default=0.0,
        help="dropout of the backbone while training (default 0: faster, and it learns as fast per step); "
        "'model' keeps the backbone's own",
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")


def _dropout(value: str) -> float | None:
    if value == "model":
        return None
    try:
        p = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability or 'model', got {value!r}") from None
    if not 0.0 <= p < 1.0:
        raise argparse.ArgumentTypeError(f"dropout must be in [0, 1) or 'model', got {value!r}")
    return p


def _check_args(args: argparse.Namespace) -> None:
    positive = [
        "batch_size",
        "teacher_batch_size",
        "cache_shard_size",
        "eval_every",
        "save_every",
        "gradient_accumulation_steps",
        "cycles",
        "epochs_per_cycle",
    ]
    for name in positive:
        if getattr(args, name) <= 0:
            raise LeafHubError(
                f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}"
            )
    for name in ("max_steps", "max_texts", "keep_checkpoints"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise LeafHubError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise LeafHubError(f"--max-minutes must be positive, got {args.max_minutes}")
    if args.val_batches < 0 or args.warmup_steps < 0:
        raise LeafHubError("--val-batches and --warmup-steps must not be negative")
    if not 0 < args.min_lr <= args.lr:
        raise LeafHubError(f"need 0 < --min-lr <= --lr, got {args.min_lr} and {args.lr}")
    if args.head_lr <= 0:
        raise LeafHubError(f"--head-lr must be positive, got {args.head_lr}")


def split_validation(n: int, val_batches: int, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``val_batches`` batches (at most a tenth of the texts); returns (train_idx, val_idx)."""
    n_val = min(val_batches * batch_size, n // 10)
    if n - n_val < 1:
        raise LeafHubError(f"only {n} training texts: give more data (--data)")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def tokenize_for_leaf(leaf, texts: list[str], kinds: list[str], prompts: dict[str, str]) -> list[list[int]]:
    """Token ids of each text as the leaf sees it: the teacher's prompt for its kind, then the text."""
    tokenizer = leaf[0].tokenizer
    prefixed = [prompts.get(k, "") + t for t, k in zip(texts, kinds, strict=True)]
    out: list[list[int]] = []
    for start in range(0, len(prefixed), 10000):
        enc = tokenizer(prefixed[start : start + 10000], truncation=True, max_length=leaf.max_seq_length)
        out.extend(enc["input_ids"])
    return out


def pooled_embeddings(leaf, input_ids: list[list[int]], pad_id: int, batch_size: int = 64) -> np.ndarray:
    """The leaf's mean-pooled backbone output (before the projection) for each row."""
    import torch

    from leaf_hub.train import collate

    transformer, pooling = leaf[0], leaf[1]
    order = np.argsort([len(x) for x in input_ids], kind="stable")
    out = np.zeros((len(input_ids), pooling.get_embedding_dimension()), dtype=np.float32)
    leaf.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = {k: v.to(leaf.device) for k, v in collate([input_ids[i] for i in rows], pad_id).items()}
            out[rows] = pooling(transformer(batch))["sentence_embedding"].float().cpu().numpy()
    return out


def distill(args: argparse.Namespace) -> dict:
    from accelerate import PartialState

    from leaf_hub import __version__
    from leaf_hub.leaf import build_leaf, projection
    from leaf_hub.models import load_model
    from leaf_hub.teacher_cache import TeacherCache
    from leaf_hub.teachers import load_teacher
    from leaf_hub.texts import load_texts
    from leaf_hub.train import TrainConfig, TrainData, train
    from leaf_hub.warm_start import fit_ridge_projection, set_projection

    _check_args(args)
    started = time.time()
    state = PartialState(cpu=_cpu_only(args.device))
    device = args.device or str(state.device)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise LeafHubError(f"--output {out} is a file; give a folder")

    teacher = load_teacher(
        args.teacher,
        device=device,
        api_key=args.api_key,
        api_model=args.api_model,
        query_prompt=args.query_prompt,
        document_prompt=args.document_prompt,
        batch_size=args.teacher_batch_size,
        backend=args.teacher_backend,
    )
    logger.info(
        "teacher %s: %d-d, normalized=%s, prompts=%s",
        teacher.name,
        teacher.dimension,
        teacher.normalized,
        teacher.prompts,
    )
    student = load_model(args.student, device=device)

    specs = args.data or DEFAULT_DATA
    text_set = load_texts(
        specs, student_tokenizer=student[0].tokenizer, seed=args.seed, max_texts=args.max_texts
    )
    records = text_set.records
    if not records:
        raise LeafHubError(f"no training texts in {specs}")
    texts = [r.text for r in records]
    kinds = [r.kind for r in records]
    logger.info("%d texts (%d queries)", len(texts), sum(k == "query" for k in kinds))

    cache = TeacherCache(args.cache or out / "teacher-cache", shard_size=args.cache_shard_size)
    targets = cache.build(
        teacher,
        texts,
        kinds,
        dtype=args.cache_dtype,
        process_index=state.process_index,
        num_processes=state.num_processes,
        barrier=state.wait_for_everyone,
    )

    prompts = dict(teacher.prompts)
    leaf = build_leaf(student, teacher.dimension, teacher.normalized, prompts, teacher.max_seq_length)
    leaf.to(device)
    input_ids = tokenize_for_leaf(leaf, texts, kinds, prompts)
    pad_id = leaf[0].tokenizer.pad_token_id or 0
    train_idx, val_idx = split_validation(len(texts), args.val_batches, args.batch_size, args.seed)
    data = TrainData(
        input_ids=input_ids, targets=targets, train_idx=train_idx, val_idx=val_idx, pad_token_id=pad_id
    )
    out.mkdir(parents=True, exist_ok=True)

    warm = None
    resuming = args.resume and (out / "state").exists()
    if not args.no_warm_start and not resuming:
        rows = train_idx[
            np.random.default_rng(args.seed).permutation(len(train_idx))[: args.warm_start_texts]
        ]
        pooled = pooled_embeddings(leaf, [input_ids[i] for i in rows], pad_id)
        w, warm = fit_ridge_projection(pooled, targets[rows], seed=args.seed)
        set_projection(projection(leaf), w)

    config = TrainConfig(
        batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr, weight_decay=args.weight_decay,
        cycles=args.cycles, epochs_per_cycle=args.epochs_per_cycle, warmup_steps=args.warmup_steps,
        head_lr=args.head_lr, max_steps=args.max_steps, max_minutes=args.max_minutes, eval_every=args.eval_every,
        save_every=args.save_every, gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision, length_grouping=not args.no_length_grouping,
        dropout=args.dropout, keep_checkpoints=args.keep_checkpoints, seed=args.seed,
    )  # fmt: skip
    result = train(leaf, data, out, config, resume=args.resume)

    if state.is_main_process:
        write_validation(out / "validation.jsonl", [records[i] for i in val_idx])
        facts = {
            "teacher": teacher.name,
            "teacher_fingerprint": teacher.fingerprint,
            "student": args.student,
            "data": list(specs),
            "data_stats": text_set.stats,
            "num_texts": len(texts),
            "num_train": int(len(train_idx)),
            "num_validation": int(len(val_idx)),
            "steps": result["steps"],
            "epochs": result["epochs"],
            "batch_size": args.batch_size,
            "hardware": _hardware(result["device"], result["num_processes"]),
            "wall_time_s": round(time.time() - started, 1),
            "train_time_s": result["wall_time_s"],
            "validation": {"l2": result["final"]["val_l2"], "cosine": result["final"]["val_cosine"]},
            "best_val_l2": result["best_val_l2"],
            "warm_start": warm,
            "leaf_hub_version": __version__,
        }
        best = _best_record(out / "metrics.jsonl")
        if best:
            facts["validation"] = {"l2": best["val_l2"], "cosine": best["val_cosine"]}
        from leaf_hub.atomic import atomic_write_json

        atomic_write_json(out / "leaf" / "leaf_run.json", facts)
        atomic_write_json(
            out / "run.json",
            {
                **facts,
                "options": _jsonable({k: v for k, v in vars(args).items() if k != "api_key"}),
                "train": result,
            },
        )
        return facts
    return {}


def _cpu_only(device: str | None) -> bool:
    """Whether Accelerate must run on the CPU. Under a launcher on a machine without an accelerator it has to
    be told, or every process believes it is the only one (DDP over gloo needs ``cpu=True``)."""
    import os

    import torch
    from accelerate.utils import parse_flag_from_env

    if device == "cpu" or parse_flag_from_env("ACCELERATE_USE_CPU"):
        return True
    accelerator = getattr(torch, "accelerator", None)
    has_accelerator = accelerator.is_available() if accelerator else torch.cuda.is_available()
    return "LOCAL_RANK" in os.environ and not has_accelerator


def _best_record(path: Path) -> dict | None:
    rows = (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )
    rows = [r for r in rows if "val_l2" in r]
    return min(rows, key=lambda r: r["val_l2"]) if rows else None


def write_validation(path: Path, records) -> None:
    """The held-out texts as JSON lines (text, type, source): ``--alignment-texts`` of ``leaf-hub evaluate``."""
    from leaf_hub.atomic import atomic_write_bytes

    lines = "".join(json.dumps({"text": r.text, "type": r.kind, "source": r.source}) + "\n" for r in records)
    atomic_write_bytes(path, lines.encode())


def _hardware(device: str, processes: int) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return f"{processes} x {name}" if processes > 1 else name
    import os

    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _jsonable(options: dict) -> dict:
    return {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool, list, type(None)))}


def run(args: argparse.Namespace) -> int:
    facts = distill(args)
    if facts:
        v = facts["validation"]
        print(f"leaf saved to {Path(args.output) / 'leaf'}")
        print(
            f"validation L2 {v['l2']:.4f}  cosine to teacher {v['cosine']:.4f}  ({facts['steps']} steps, {facts['wall_time_s']:.0f} s)"
        )
    return 0

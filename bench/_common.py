"""Shared set-up for the benchmarks: a fixed sample of ``../shared`` training texts, their teacher cache,
and a leaf ready to train on them (the same preparation ``leaf-hub distill`` does)."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRAIN = ROOT.parent / "shared" / "data" / "train" / "texts.jsonl.gz"
TEACHER = "sentence-transformers/all-mpnet-base-v2"
STUDENT = "sentence-transformers/all-MiniLM-L6-v2"


def read_texts(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` (text, kind) pairs; the same seed gives the same order, so a smaller ``n`` is a prefix."""
    if not SHARED_TRAIN.is_file():
        raise SystemExit(f"{SHARED_TRAIN} not found: the benchmarks read ../shared/data (see its README)")
    with gzip.open(SHARED_TRAIN, "rt") as f:
        rows = [json.loads(line) for line in f]
    pick = np.random.default_rng(seed).permutation(len(rows))[:n]
    return [rows[i]["text"] for i in pick], [rows[i]["type"] for i in pick]


def write_results(path: str | Path, results: dict) -> None:
    """Write a benchmark's results as indented JSON, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


@dataclass
class Prepared:
    base: object  # the untrained leaf (random projection), a SentenceTransformer
    data: object  # leaf_hub.training.data.TrainData: the first n_train texts train, the last n_val validate
    prompts: dict
    texts: list[str]
    kinds: list[str]
    teacher_s: float  # seconds to load the teacher and fill its cache (0 when the cache was reused)


def prepare(
    n_train: int,
    n_val: int,
    cache: Path,
    teacher_spec: str = TEACHER,
    student_spec: str = STUDENT,
    backend: str = "torch",
) -> Prepared:
    from leaf_hub.leaf import build_leaf
    from leaf_hub.models import load_model
    from leaf_hub.teachers import load_teacher
    from leaf_hub.teachers.cache import TeacherCache
    from leaf_hub.training.data import TrainData
    from leaf_hub.training.distill import tokenize_for_leaf

    texts, kinds = read_texts(n_train + n_val)
    # The cache's build time is part of "from scratch": measured when built, recorded beside the cache,
    # and reported again when a later run reuses the cache.
    timing = cache / "build_seconds.json"
    start = time.perf_counter()
    teacher = load_teacher(teacher_spec, backend=backend, device="cpu")
    targets = TeacherCache(cache).build(teacher, texts, kinds)
    if timing.is_file():
        teacher_s = json.loads(timing.read_text())["seconds"]
    else:
        teacher_s = time.perf_counter() - start
        timing.write_text(json.dumps({"seconds": teacher_s, "backend": backend, "texts": len(texts)}))
    prompts = dict(teacher.prompts)
    base = build_leaf(
        load_model(student_spec, device="cpu"),
        teacher.dimension,
        teacher.normalized,
        prompts,
        teacher.max_seq_length,
    )
    ids = tokenize_for_leaf(base, texts, kinds, prompts)
    data = TrainData(
        ids, targets, np.arange(n_train), np.arange(n_train, n_train + n_val), base[0].tokenizer.pad_token_id
    )
    return Prepared(base, data, prompts, texts, kinds, teacher_s)


def warm_start(leaf, data, n: int = 20000, seed: int = 0) -> dict:
    """Fit the projection by ridge regression, as ``leaf-hub distill`` does by default."""
    from leaf_hub.training.warm_start import warm_start as fit

    return fit(leaf, data, rows=n, seed=seed)


# The paper's single learning rate for backbone and projection (leaf-hub's default until the per-group
# rates of TrainConfig): the recipes measured with it name it, so their results stay reproducible.
PAPER_LR = {"lr": 1e-4, "min_lr": 1e-5, "head_lr": None}


@dataclass
class Recipe:
    """A training recipe: warm start or not, plus TrainConfig overrides."""

    name: str
    warm_start: bool = True
    config: dict | None = None


def run_recipe(
    prepared: Prepared, recipe: Recipe, out: Path, reuse_warm_start: bool = False, **limits
) -> dict:
    """Train a copy of the base leaf with ``recipe``; returns its curve (from metrics.jsonl) and summary.

    ``reuse_warm_start`` fits the ridge projection once per ``prepared`` (recipes that compare curves by
    step, not by time, need not pay for the same fit again)."""
    import copy
    from dataclasses import asdict

    from leaf_hub.leaf import projection
    from leaf_hub.training.config import TrainConfig
    from leaf_hub.training.trainer import train
    from leaf_hub.training.warm_start import set_projection

    leaf = copy.deepcopy(prepared.base)
    start = time.perf_counter()
    info = None
    if recipe.warm_start and reuse_warm_start and getattr(prepared, "_warm", None) is not None:
        w, info = prepared._warm
        set_projection(projection(leaf), w)
    elif recipe.warm_start:
        info = warm_start(leaf, prepared.data)
        prepared._warm = (projection(leaf).weight.detach().numpy().T.copy(), info)
    warm_s = time.perf_counter() - start
    if limits.get("max_minutes"):  # the warm start's fit is part of the recipe's time budget
        limits = {**limits, "max_minutes": limits["max_minutes"] - warm_s / 60}
    config = TrainConfig(**{**(recipe.config or {}), **limits})
    result = train(leaf, prepared.data, out, config, warm_start=info)
    curve = [
        {k: r[k] for k in ("step", "texts_seen", "elapsed_s", "val_l2", "val_cosine")}
        for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
    ]
    curve = list({point["step"]: point for point in curve}.values())  # an epoch's end can repeat a step
    for point in curve:  # the clock starts before the warm start's fit
        point["elapsed_s"] = round(point["elapsed_s"] + warm_s, 2)
    best = max(curve, key=lambda r: r["val_cosine"])
    return {
        "name": recipe.name,
        "warm_start": recipe.warm_start,
        "config": {
            k: v for k, v in asdict(result.config).items() if k in (recipe.config or {}) or k in limits
        },
        "warm_start_fit": info,
        "warm_start_s": round(warm_s, 2),
        "curve": curve,
        "final": curve[-1],
        "best_val_cosine": best["val_cosine"],
        "leaf": str(out / "leaf"),
    }


@contextlib.contextmanager
def stopping_after(steps: int | None):
    """Stop leaf-hub's training after ``steps`` optimizer steps whatever its schedule's length: the first
    steps of a long run, with its rates (a run of ``steps`` steps would fit its cycles into them)."""
    from leaf_hub.training.callbacks import LeafCallback

    real = LeafCallback.on_step_end

    def on_step_end(self, args, state, control, **kwargs):
        if steps is not None and state.global_step >= steps:
            state.max_steps = state.global_step  # the callback then validates and the trainer stops
            control.should_training_stop = True
        return real(self, args, state, control, **kwargs)

    LeafCallback.on_step_end = on_step_end
    try:
        yield
    finally:
        LeafCallback.on_step_end = real


def plot_curves(rows: list[dict], x, xlabel: str, title: str, path: Path, decorate=None) -> None:
    """Held-out cosine to the teacher of each recipe's curve against ``x(point)``, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        ax.plot([x(p) for p in row["curve"]], [p["val_cosine"] for p in row["curve"]], marker="o",
                markersize=3, label=row["name"])  # fmt: skip
    if decorate:
        decorate(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("held-out cosine to the teacher")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


@contextlib.contextmanager
def locked(path: str | None):
    """Hold an exclusive flock on ``path`` (the shared CPU lock) for the block; no-op without a path."""
    if not path:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""Leaf vs teacher throughput and latency (``leaf-hub bench``): :func:`benchmark`, the paper's Table 8 protocol.

For each backend (PyTorch, ONNX Runtime fp32, ONNX Runtime int8), each kind of text (queries, documents)
and each batch size, both models embed the same batches ``repeats`` times. Two grids
(:class:`~leaf_hub.evaluation.config.BenchConfig`): the default, quick one (ONNX Runtime fp32 and int8,
batch sizes 1 and 16, 3 repeats: a few minutes on 2 cores) and ``thorough`` (every backend, batch sizes
1, 2, 4, 8, 16, 24, 5 repeats: 2,880 timed calls, hours on 2 cores with a 110M-parameter teacher). The
protocol, chosen so that the leaf/teacher ratio can be trusted on a busy machine:

- **Interleaved**: the teacher and the leaf take turns, and who goes first alternates, so a burst of
  load from elsewhere hits both. By default they take turns per repeat (``--interleave repeat``): each
  encodes the whole pool, then the other does, as a server running one model would; on ONNX Runtime each
  turn has the process to itself: its session is made afresh (the other one is gone), with ONNX Runtime's
  default thread spinning, and its first batch is encoded once untimed (making the session, about 1 s
  for a 110M-parameter teacher, is not timed either). ``--interleave batch`` switches
  models after every call, with both sessions loaded and spinning off (one session's idle workers would
  spin on the cores the other needs); that is finer-grained against load, but it runs the teacher's
  ~340 MB of weights through the CPU's caches between two leaf calls, evicting the leaf's (its layers'
  42 MB partly fit a 32 MB L3), which no deployment of the leaf sees: measured here, the leaf was 10%
  slower on single short queries that way, the teacher unchanged; and with spinning off the leaf's many
  small operators each wait for a sleeping worker on 2 threads (the leaf alone ran 8-26% faster
  with spinning on, the teacher 1-6%).
- **Same sequence length**: both models truncate at the same ``max_seq_length`` (default: the smaller of
  the two models' own limits), recorded in the report; otherwise a leaf reading 256 tokens against a
  teacher reading 384 would flatter the leaf.
- **End to end**: each timing covers tokenization, the model and pooling (``encode_query`` /
  ``encode_document``, prompts included), as a serving system would see it.
- **Same texts at every batch size**: each kind times one fixed pool of texts (a seeded sample, ``--pool``
  texts, default the largest batch size), cut into batches of each size; so throughputs at different batch
  sizes, and the peaks compared below, come from the same texts rather than from luckier windows.
- **Batches as ``encode`` forms them** (``--batching sorted``, the default): the pool is sorted by length,
  longest first, before it is cut, as ``SentenceTransformer.encode`` (and ``OnnxEncoder``) sort a list of
  texts, so each batch is padded little; this is the throughput of bulk encoding (a corpus, a batch of
  queries). ``--batching arrival`` cuts the pool in its random order, as texts reach a server that batches
  whatever has arrived: every batch is padded to its longest text (for short search queries, 2.6x their
  tokens at batch 24 against 1.8x sorted, in a pool of 48), so throughput falls faster with the batch
  size, and the latencies are the ones an online server's callers see.
- Per cell (model, batch size): the pool's encoding time in each repeat; throughput = pool size / median of
  those times; per-call median and minimum latency over the full-size batches; per model and kind, the
  largest batch whose median latency stays under 100 ms.
- Summary per backend: speed-up = the leaf's peak throughput (best batch size) over the teacher's, for
  queries and for documents; the ratio at every batch size, with its range over the repeats (each repeat
  ratio pairs the two models' times of that repeat), which shows how far to trust a figure.
- Threads: PyTorch and ONNX Runtime use ``--threads`` (default: all cores) intra-op threads. On a busy
  shared machine use ``--threads 1``: when the cores are oversubscribed, every multi-threaded operator
  waits for descheduled threads (measured with load 7 on 2 cores: 2x slower with ONNX Runtime, up to 17x
  with PyTorch), which swamps the models' own cost and skews the ratio against the model with more,
  smaller operators (the leaf). The cores other processes kept busy just before, and the load average
  before and after, are recorded in the report.

The ONNX rows run :class:`~leaf_hub.export.onnx_encoder.OnnxEncoder` on the whole-model graphs; a model folder
without them is exported once into the leaf-hub cache (see :func:`leaf_hub.export.onnx.ensure_onnx`).
Default texts: the queries and paragraph-length documents of leaf-hub's built-in corpus (Python's own
documentation, shipped with the package); ``queries`` / ``documents`` take any file, and ``benchmark`` takes
lists of texts (``bench/inference.py`` times search queries and CISI that way).

When both ONNX Runtime backends run, the report adds the deployment ratios (:mod:`.bench_report`): the int8
leaf against the fp32 teacher (and the int8 teacher), with the cosine of the int8 leaf's embeddings to its
fp32 self, for queries and documents (untimed, on the pooled texts).

Returns a :class:`~leaf_hub.evaluation.bench_report.BenchReport` and writes ``OUTPUT`` (JSON: meta, results,
summary, deployment), ``OUTPUT.md`` and ``OUTPUT.png`` (throughput vs batch size, teacher vs leaf, one panel
per backend and kind, like the paper's Figure 12).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import gzip
import json
import logging
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leaf_hub.errors import LeafHubError
from leaf_hub.evaluation.bench_report import (
    KINDS,
    LATENCY_BUDGET_MS,
    MODELS,
    BackendSummary,
    BenchCell,
    BenchMeta,
    BenchReport,
    DeploymentRatio,
    TextSource,
    to_markdown,
    write_report,
)
from leaf_hub.evaluation.config import BATCHING, INTERLEAVE, THOROUGH, BenchConfig
from leaf_hub.evaluation.hardware import Hardware, available_cores, busy_cores, load_average

logger = logging.getLogger(__name__)

__all__ = ["BenchConfig", "BenchReport", "benchmark", "busy_cores", "to_markdown", "write_report"]

DEFAULT_BATCH_SIZES = THOROUGH["batch_sizes"]
# Texts of each kind whose int8 and fp32 embeddings are compared for the deployment ratios.
COSINE_TEXTS = 64

# -- texts --------------------------------------------------------------------------------------------


def read_texts(path: str | os.PathLike) -> list[str]:
    """Texts from a file: JSON lines (``text``, plus ``title`` when present; ``.gz`` too) or one per line."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise LeafHubError(
            f"text file {str(path)!r} does not exist; give a .jsonl file or a text file, one per line"
        )
    opener = gzip.open if p.suffix == ".gz" else open
    texts: list[str] = []
    is_jsonl = ".jsonl" in p.suffixes or ".json" in p.suffixes
    with opener(p, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            if is_jsonl:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LeafHubError(
                        f"{p}:{number} is not valid JSON ({exc}); fix the line or use a plain text file"
                    ) from exc
                if not isinstance(row, dict) or "text" not in row:
                    raise LeafHubError(f"{p}:{number} has no 'text' field; every JSON line needs one")
                title = str(row.get("title") or "").strip()
                text = str(row["text"]).strip()
                line = f"{title} {text}".strip() if title else text
            if line:
                texts.append(line)
    if not texts:
        raise LeafHubError(f"{p} contains no texts")
    return texts


def _builtin_texts() -> tuple[list[str], list[str], str]:
    """Queries and paragraph-length documents from leaf-hub's built-in corpus (Python's own docs)."""
    try:
        from leaf_hub.data.texts import builtin_corpus

        corpus = builtin_corpus()
        queries = [t for t, kind in corpus if kind == "query"]
        # Documents of at least 30 words: single sentences would make "documents" look like queries.
        documents = [t for t, kind in corpus if kind == "document" and len(t.split()) >= 30]
        if queries and documents:
            return queries, documents, "leaf_hub.data.texts.builtin_corpus (Python documentation)"
    except ImportError:  # pragma: no cover - texts.py ships with the package
        pass
    from leaf_hub.export.onnx import SAMPLE_DOCUMENTS, SAMPLE_QUERIES

    return list(SAMPLE_QUERIES), list(SAMPLE_DOCUMENTS), "leaf_hub.export.onnx samples"


def default_texts(
    queries_file: str | os.PathLike | None = None, documents_file: str | os.PathLike | None = None
) -> tuple[list[str], list[str], dict[str, str]]:
    """Queries and documents to time (the files given, else the built-in corpus's), and where they came from.

    Only what the package carries: nothing outside it is looked for.
    """
    sources: dict[str, str] = {}
    builtin = _builtin_texts() if not (queries_file and documents_file) else None
    if queries_file:
        queries, sources["queries"] = read_texts(queries_file), str(queries_file)
    else:
        queries, sources["queries"] = builtin[0], builtin[2]
    if documents_file:
        documents, sources["documents"] = read_texts(documents_file), str(documents_file)
    else:
        documents, sources["documents"] = builtin[1], builtin[2]
    return queries, documents, sources


# -- runners ------------------------------------------------------------------------------------------


class _Runner:
    """One model on one backend: ``encode(kind, texts)`` and its ``max_seq_length``."""

    def __init__(self, encode_query: Callable, encode_document: Callable, owner: Any) -> None:
        self._encode = {"queries": encode_query, "documents": encode_document}
        self.owner = owner

    def encode(self, kind: str, texts: list[str]) -> None:
        self._encode[kind](texts)

    def embed(self, kind: str, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """The embeddings (untimed use: the deployment cosines)."""
        encode = self.owner.encode_query if kind == "queries" else self.owner.encode_document
        return np.asarray(encode(texts, batch_size=batch_size), dtype=np.float32)

    @property
    def max_seq_length(self) -> int:
        return int(self.owner.max_seq_length)

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.owner.max_seq_length = int(value)


def _torch_runner(model) -> _Runner:
    def query(texts):
        model.encode_query(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)

    def document(texts):
        model.encode_document(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)

    return _Runner(query, document, model)


def _onnx_runner(encoder) -> _Runner:
    return _Runner(
        lambda texts: encoder.encode_query(texts, batch_size=len(texts)),
        lambda texts: encoder.encode_document(texts, batch_size=len(texts)),
        encoder,
    )


class _Models:
    """Loads each model once per backend, sharing the PyTorch models with the ONNX export."""

    def __init__(self, names: dict[str, str], threads: int, onnx_cache: str | None) -> None:
        self.names = names
        self.threads = threads
        self.onnx_cache = onnx_cache
        self._torch: dict[str, Any] = {}
        self._own_length: dict[str, int] = {}

    def torch_model(self, role: str):
        if role not in self._torch:
            from leaf_hub.models import load_model

            model = load_model(self.names[role], device="cpu")
            model.eval()
            self._torch[role] = model
            self._own_length[role] = model.max_seq_length
        return self._torch[role]

    def _for_export(self, role: str):
        """The loaded PyTorch model (if any) with its own max_seq_length back, as the export must see it."""
        model = self._torch.get(role)
        if model is not None:
            model.max_seq_length = self._own_length[role]
        return model

    def runner(self, role: str, backend: str, allow_spinning: bool = False) -> _Runner:
        if backend == "torch":
            import torch

            torch.set_num_threads(self.threads)
            return _torch_runner(self.torch_model(role))
        from leaf_hub.export.onnx import ensure_onnx, has_whole_graph
        from leaf_hub.export.onnx_encoder import OnnxEncoder

        quantized = backend == "onnx-int8"
        name = self.names[role]
        local = Path(name).expanduser()
        if local.is_dir() and has_whole_graph(local, quantized):
            folder = local
        else:
            folder = ensure_onnx(
                name, quantized=True, cache_dir=self.onnx_cache, model=self._for_export(role)
            )
        # Spinning off where two sessions take turns: one session's workers spinning after its last call
        # would take the cores from the other (2.2-2.5x slower on short queries with 2 threads, measured
        # here when they alternated call by call). On where a session is timed alone.
        encoder = OnnxEncoder(
            folder, quantized=quantized, intra_op_threads=self.threads, allow_spinning=allow_spinning
        )
        return _onnx_runner(encoder)

    def release_torch(self) -> None:
        self._torch.clear()


# -- the protocol -------------------------------------------------------------------------------------


def _pool(texts: Sequence[str], size: int, seed: int = 0) -> list[str]:
    """A fixed sample of ``size`` texts (cycling when there are fewer), timed at every batch size."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    return [texts[order[i % len(order)]] for i in range(size)]


def _batches(pool: Sequence[str], batch_size: int, batching: str = "sorted") -> list[list[str]]:
    """The pool cut into batches of ``batch_size`` (the last one shorter when it does not divide).

    ``sorted``: longest text first, by characters, as ``encode`` orders a list before batching it (stable,
    so equal lengths keep the pool's order); ``arrival``: the pool's own order.
    """
    _check_batching(batching)
    texts = sorted(pool, key=len, reverse=True) if batching == "sorted" else list(pool)
    return [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]


def _check_interleave(interleave: str) -> None:
    if interleave not in INTERLEAVE:
        raise LeafHubError(f"unknown --interleave {interleave!r}; choose from {', '.join(INTERLEAVE)}")


def _check_batching(batching: str) -> None:
    if batching not in BATCHING:
        raise LeafHubError(f"unknown --batching {batching!r}; choose from {', '.join(BATCHING)}")


def call_order(n_batches: int, repeats: int, interleave: str = "repeat") -> list[tuple[int, str, int]]:
    """The timed calls as (repeat, model, batch index), in the order the protocol runs them.

    ``repeat``: per repeat, one model encodes every batch, then the other; ``batch``: the models alternate
    after every batch. Either way the model that goes first alternates, so neither always runs second.
    """
    _check_interleave(interleave)
    calls: list[tuple[int, str, int]] = []
    for r in range(repeats):
        if interleave == "batch":
            for i in range(n_batches):
                calls += [(r, role, i) for role in (MODELS if (r + i) % 2 == 0 else MODELS[::-1])]
        else:
            for role in MODELS if r % 2 == 0 else MODELS[::-1]:
                calls += [(r, role, i) for i in range(n_batches)]
    return calls


def _cell(
    model: str,
    backend: str,
    kind: str,
    batch_size: int,
    repeat_seconds: list[float],
    latencies: list[float],
    pool_size: int,
) -> BenchCell:
    return BenchCell(
        model=model,
        backend=backend,
        kind=kind,
        batch_size=batch_size,
        throughput=pool_size / statistics.median(repeat_seconds),
        min_latency_ms=min(latencies) * 1000,
        median_latency_ms=statistics.median(latencies) * 1000,
        repeats=len(repeat_seconds),
        texts_per_repeat=pool_size,
        repeat_seconds=[round(t, 9) for t in repeat_seconds],
        latencies_ms=[round(t * 1000, 3) for t in latencies],
    )


def summarize(
    results: Sequence[BenchCell | dict[str, Any]], budget_ms: float = LATENCY_BUDGET_MS
) -> dict[str, BackendSummary]:
    """Per backend: speed-ups (peak throughput ratio and per batch size) and the largest batch under budget."""
    cells = [c if isinstance(c, BenchCell) else BenchCell.from_json(c) for c in results]
    summary: dict[str, BackendSummary] = {}
    for backend in dict.fromkeys(c.backend for c in cells):
        rows = [c for c in cells if c.backend == backend]
        kinds = [k for k in KINDS if any(c.kind == k for c in rows)]

        def by_size(model: str, kind: str, rows=rows) -> dict[int, BenchCell]:
            return {c.batch_size: c for c in rows if c.model == model and c.kind == kind}

        entry = BackendSummary()
        for model in MODELS:
            entry.peak_throughput[model] = {}
            entry.max_batch_under_100ms[model] = {}
            for kind in kinds:
                c = by_size(model, kind)
                entry.peak_throughput[model][kind] = max((r.throughput for r in c.values()), default=None)
                under = [b for b, r in c.items() if r.median_latency_ms < budget_ms]
                entry.max_batch_under_100ms[model][kind] = max(under, default=None)
        for kind in kinds:
            teacher, leaf = by_size("teacher", kind), by_size("leaf", kind)
            entry.speedup_by_batch_size[kind] = {
                str(b): leaf[b].throughput / teacher[b].throughput for b in sorted(teacher) if b in leaf
            }
            ranges = {}
            for b in sorted(teacher):
                pair = (teacher[b].repeat_seconds, leaf[b].repeat_seconds if b in leaf else None)
                if pair[0] and pair[1]:  # repeat r of the teacher against repeat r of the leaf
                    ratios = [t / lf for t, lf in zip(*pair, strict=True)]
                    ranges[str(b)] = [min(ratios), max(ratios)]
            entry.speedup_range_by_batch_size[kind] = ranges
            t_peak = entry.peak_throughput["teacher"][kind]
            l_peak = entry.peak_throughput["leaf"][kind]
            setattr(entry, f"{kind}_speedup", l_peak / t_peak if t_peak and l_peak else None)
        summary[backend] = entry
    return summary


def deployment_ratios(
    summary: dict[str, BackendSummary],
    cosines: dict[tuple[str, str], tuple[float, float]],
    texts: dict[str, int] | None = None,
) -> dict[str, DeploymentRatio]:
    """Per kind: the int8 leaf against the fp32 (and int8) teacher, fp32 against fp32, and the int8 graphs'
    cosines to their fp32 selves; empty unless both ``onnx`` and ``onnx-int8`` were timed."""
    if "onnx" not in summary or "onnx-int8" not in summary:
        return {}
    fp32, int8 = summary["onnx"].peak_throughput, summary["onnx-int8"].peak_throughput

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    out = {}
    for kind in KINDS:
        if kind not in fp32.get("teacher", {}) or kind not in int8.get("leaf", {}):
            continue
        leaf_cos = cosines.get(("leaf", kind), (None, None))
        teacher_cos = cosines.get(("teacher", kind), (None, None))
        out[kind] = DeploymentRatio(
            leaf_int8_vs_teacher_fp32=ratio(int8["leaf"][kind], fp32["teacher"][kind]),
            leaf_int8_vs_teacher_int8=ratio(int8["leaf"][kind], int8["teacher"][kind]),
            leaf_fp32_vs_teacher_fp32=ratio(fp32["leaf"][kind], fp32["teacher"][kind]),
            leaf_int8_cosine=leaf_cos[0],
            leaf_int8_cosine_min=leaf_cos[1],
            teacher_int8_cosine=teacher_cos[0],
            teacher_int8_cosine_min=teacher_cos[1],
            texts=(texts or {}).get(kind) if cosines else None,
        )
    return out


def _int8_cosines(
    models: _Models, kinds: Sequence[str], texts: dict[str, list[str]], seq_len: int
) -> dict[tuple[str, str], tuple[float, float]]:
    """(mean, min) cosine of each text's int8-graph embedding to its fp32-graph one, per model and kind."""
    out = {}
    for role in MODELS:
        runners = {backend: models.runner(role, backend) for backend in ("onnx", "onnx-int8")}
        for runner in runners.values():
            runner.max_seq_length = seq_len
        for kind in kinds:
            a, b = (runners[backend].embed(kind, texts[kind]) for backend in ("onnx", "onnx-int8"))
            cos = np.sum(a * b, axis=1) / np.maximum(
                np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12
            )
            out[(role, kind)] = (round(float(cos.mean()), 6), round(float(cos.min()), 6))
        del runners
        gc.collect()
    return out


def _shown_path(model: str | os.PathLike) -> str:
    """A model folder under the working directory as a relative path (reports travel between machines)."""
    path = Path(model).expanduser()
    if path.is_absolute() and path.is_dir():
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            pass
    return str(model)


@contextlib.contextmanager
def _torch_threads_kept():
    """PyTorch's intra-op threads as the caller had them after the block (the runners set ``--threads``)."""
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _tokenizer_parallelism(enabled: bool):
    """Set TOKENIZERS_PARALLELISM for the block (unless the user set it), then restore it."""
    if "TOKENIZERS_PARALLELISM" in os.environ:
        yield
        return
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if enabled else "false"
    try:
        yield
    finally:
        os.environ.pop("TOKENIZERS_PARALLELISM", None)


def benchmark(
    config: BenchConfig | None = None,
    /,
    *,
    queries: Sequence[str] | None = None,
    documents: Sequence[str] | None = None,
    **options: Any,
) -> BenchReport:
    """Time teacher and leaf, interleaved, on every backend, kind and batch size; write and return the report.

    Pass a :class:`BenchConfig` or its fields as keyword arguments (``benchmark(leaf=..., teacher=...)``).
    ``queries`` / ``documents``: texts to time instead of the config's files (or the built-in corpus).
    Writes ``config.output`` (JSON, Markdown, PNG; ``output=None`` writes nothing); the paths are in the
    report's ``files``.
    """
    from tqdm.auto import tqdm

    if config is None:
        config = BenchConfig(**options)
    elif options:
        raise TypeError("give a BenchConfig or keyword options, not both")
    config.validate()  # before any model is loaded
    backends, kinds, batch_sizes = list(config.backends), list(config.kinds), list(config.batch_sizes)
    repeats, interleave, batching = int(config.repeats), config.interleave, config.batching
    pool_size = config.pool
    sources = dict(config.sources or {})
    if queries is None or documents is None:
        q, d, found = default_texts(
            config.queries if queries is None else None, config.documents if documents is None else None
        )
        if queries is None:
            queries = q
            sources.setdefault("queries", found["queries"])
        if documents is None:
            documents = d
            sources.setdefault("documents", found["documents"])
    if not queries or not documents:
        raise LeafHubError("no texts to time: give at least one query and one document")
    texts = {"queries": list(queries), "documents": list(documents)}
    threads = config.threads or available_cores()
    onnx_cache = str(config.onnx_cache) if config.onnx_cache else None
    models = _Models({"teacher": str(config.teacher), "leaf": str(config.leaf)}, threads, onnx_cache)

    started = time.perf_counter()
    load_before = load_average()
    # What other processes use right now (this one is idle here): unlike the load average, which still
    # counts this benchmark's own previous run for a minute.
    busy_before = busy_cores()
    if busy_before is not None and busy_before + threads > available_cores() + 0.25:
        # Measured here (load 7 on 2 cores): 2 threads ran 2x (ONNX Runtime) to 17x (PyTorch) slower than 1,
        # because every operator waits for a thread the scheduler has given to someone else; and one busy
        # core next to a 1-thread run shares the caches and memory bandwidth (the leaf lost ~10%).
        logger.warning(
            "the machine is busy (%.1f of %d cores used by other processes): the timings with %d thread(s) "
            "per model will be slower and the ratio skewed; %s",
            busy_before,
            available_cores(),
            threads,
            "consider --threads 1" if threads > 1 else "run it on a quiet machine",
        )
    results: list[BenchCell] = []
    seq_len = config.max_seq_length
    model_limits: dict[str, int] = {}
    pools = {kind: _pool(texts[kind], pool_size) for kind in kinds}
    total = (
        len(backends)
        * len(kinds)
        * repeats
        * len(MODELS)
        * sum(math.ceil(pool_size / b) for b in batch_sizes)
    )
    progress = tqdm(total=total, desc="bench", unit="call")
    # Tokenizers parallelize a batch over every core: with fewer threads than cores that would let the
    # tokenizer use cores the models may not (1-1.5% of the leaf's time at batch 2 here).
    tokenizer_parallelism = threads >= available_cores()
    with _tokenizer_parallelism(tokenizer_parallelism), _torch_threads_kept():
        for backend in backends:
            runners = {role: models.runner(role, backend) for role in MODELS}
            for role, runner in runners.items():
                model_limits.setdefault(role, runner.max_seq_length)
            if seq_len is None:
                seq_len = min(model_limits.values())
                logger.info(
                    "timing both models at max_seq_length %d (their limits: %s)", seq_len, model_limits
                )
            for runner in runners.values():
                runner.max_seq_length = seq_len
            del runner  # a lingering reference would keep a session alive through the turns below
            # Per-repeat turns on ONNX Runtime: one session alive at a time, made afresh for each turn with the
            # default thread spinning, as a server runs its one model (two sessions with spinning off cost the
            # leaf's many small operators a worker wake-up each on 2 threads).
            isolated = interleave == "repeat" and backend != "torch"
            if isolated:
                runners.clear()
            for kind in kinds:
                # Warm-up: first-call allocations are not timed (isolated turns do their own).
                if not isolated:
                    for runner in runners.values():
                        runner.encode(kind, texts[kind][:4])
                for batch_size in batch_sizes:
                    batches = _batches(pools[kind], batch_size, batching)
                    seconds: dict[str, list[float]] = {role: [0.0] * repeats for role in MODELS}
                    latencies: dict[str, list[float]] = {role: [] for role in MODELS}
                    turn = None
                    for r, role, i in call_order(len(batches), repeats, interleave):
                        if isolated and turn != (r, role):
                            turn = (r, role)
                            runners.clear()  # the other model's session is gone before this one is made
                            gc.collect()
                            runners[role] = models.runner(role, backend, allow_spinning=True)
                            runners[role].max_seq_length = seq_len
                            runners[role].encode(kind, batches[0])  # untimed: the session's first allocations
                        batch = batches[i]
                        t0 = time.perf_counter()
                        runners[role].encode(kind, batch)
                        elapsed = time.perf_counter() - t0
                        seconds[role][r] += elapsed
                        if len(batch) == batch_size:
                            latencies[role].append(elapsed)
                        progress.update()
                    for role in MODELS:
                        results.append(
                            _cell(role, backend, kind, batch_size, seconds[role], latencies[role], pool_size)
                        )
                    progress.set_postfix_str(
                        f"{backend} {kind} b={batch_size} "
                        f"x{results[-1].throughput / results[-2].throughput:.1f}"
                    )
            del runners
        progress.close()
        models.release_torch()
        summary = summarize(results)
        cosines: dict[tuple[str, str], tuple[float, float]] = {}
        cosine_texts = {kind: _pool(texts[kind], min(COSINE_TEXTS, len(texts[kind]))) for kind in kinds}
        if "onnx" in summary and "onnx-int8" in summary:
            logger.info("deployment ratios: int8 vs fp32 embeddings of %s texts per kind", COSINE_TEXTS)
            cosines = _int8_cosines(models, kinds, cosine_texts, seq_len)

    import onnxruntime

    import leaf_hub

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover
        torch_version = None
    onnx_sessions = (
        "one session alive at a time, made afresh for each turn, default thread spinning, first batch untimed"
        if interleave == "repeat"
        else "both sessions loaded, without thread spinning"
    )
    cut = (
        "sorted by length, longest first, before it is cut into batches (as encode does)"
        if batching == "sorted"
        else "cut into batches in its random order (as texts arrive at a server)"
    )
    meta = BenchMeta(
        leaf=_shown_path(config.leaf),
        teacher=_shown_path(config.teacher),
        backends=list(backends),
        kinds=kinds,
        batch_sizes=list(batch_sizes),
        repeats=repeats,
        mode="thorough" if config.thorough else "quick",
        interleave=interleave,
        batching=batching,
        tokenizer_parallelism=os.environ.get("TOKENIZERS_PARALLELISM", str(tokenizer_parallelism).lower()),
        pool_size=pool_size,
        max_seq_length=seq_len,
        model_max_seq_length=model_limits,
        hardware=Hardware.detect(threads=threads),
        load_average_before=load_before,
        busy_cores_before=busy_before,
        load_average_after=load_average(),
        texts={kind: TextSource(sources.get(kind, "given"), len(texts[kind])) for kind in KINDS},
        protocol=(
            f"each kind times one fixed pool of {pool_size} texts at every batch size, {cut}; teacher and "
            f"leaf interleaved per {interleave} (order alternating; ONNX Runtime: {onnx_sessions}); same "
            "max_seq_length; tokenization + model + pooling "
            "timed (encode_query / encode_document; the tokenizer parallel only when the models use every "
            "core); throughput = pool size / median time per repeat; "
            "speed-up = leaf peak throughput / teacher peak throughput over batch sizes (range: per-repeat "
            f"ratios); max batch under {LATENCY_BUDGET_MS:.0f} ms uses the median per-call latency"
        ),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        wall_time_s=round(time.perf_counter() - started, 1),
        versions={
            "leaf_hub": leaf_hub.__version__,
            "torch": torch_version,
            "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(),
        },
    )
    report = BenchReport(
        meta=meta,
        results=results,
        summary=summary,
        deployment=deployment_ratios(summary, cosines, {k: len(v) for k, v in cosine_texts.items()}),
    )
    if config.output is not None:
        report.files = list(write_report(report, config.output))
    return report

"""``leaf-hub bench``: leaf vs teacher throughput and latency, the paper's Table 8 protocol.

For each backend (PyTorch, ONNX Runtime fp32, ONNX Runtime int8), each kind of text (real queries, real
documents) and each batch size (default 1, 2, 4, 8, 16, 24), both models embed the same batches
``--repeats`` times. The protocol, chosen so that the leaf/teacher ratio can be trusted on a busy machine:

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
Default texts: the CISI queries and documents (title + text) from the development data beside the
checkout when present, else the built-in corpus of ``leaf_hub.data.texts``; ``--queries`` / ``--documents``
take any file.

Writes ``OUTPUT`` (JSON: meta, results, summary), ``OUTPUT.md`` and ``OUTPUT.png`` (throughput vs batch
size, teacher vs leaf, one panel per backend and kind, like the paper's Figure 12).
"""

from __future__ import annotations

import argparse
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

from leaf_hub.errors import LeafHubError
from leaf_hub.files import atomic_write_path
from leaf_hub.models import BACKENDS

logger = logging.getLogger(__name__)

KINDS = ("queries", "documents")
MODELS = ("teacher", "leaf")
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 24)
INTERLEAVE = ("repeat", "batch")
BATCHING = ("sorted", "arrival")
LATENCY_BUDGET_MS = 100.0
CISI = Path(__file__).resolve().parents[3] / "shared" / "data" / "eval" / "cisi"


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
    queries_file: str | None = None, documents_file: str | None = None
) -> tuple[list[str], list[str], dict[str, str]]:
    """Queries and documents to time, with a description of where they came from."""
    sources: dict[str, str] = {}
    fallback = None
    if queries_file:
        queries, sources["queries"] = read_texts(queries_file), str(queries_file)
    elif (CISI / "queries.jsonl").is_file():
        queries, sources["queries"] = read_texts(CISI / "queries.jsonl"), f"CISI queries ({CISI})"
    else:
        fallback = _builtin_texts()
        queries, sources["queries"] = fallback[0], fallback[2]
    if documents_file:
        documents, sources["documents"] = read_texts(documents_file), str(documents_file)
    elif (CISI / "corpus.jsonl").is_file():
        documents, sources["documents"] = (
            read_texts(CISI / "corpus.jsonl"),
            f"CISI corpus, title + text ({CISI})",
        )
    else:
        fallback = fallback or _builtin_texts()
        documents, sources["documents"] = fallback[1], fallback[2]
    return queries, documents, sources


# -- runners ------------------------------------------------------------------------------------------


class _Runner:
    """One model on one backend: ``encode(kind, texts)`` and its ``max_seq_length``."""

    def __init__(self, encode_query: Callable, encode_document: Callable, owner: Any) -> None:
        self._encode = {"queries": encode_query, "documents": encode_document}
        self.owner = owner

    def encode(self, kind: str, texts: list[str]) -> None:
        self._encode[kind](texts)

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
) -> dict[str, Any]:
    median = statistics.median(latencies)
    return {
        "model": model,
        "backend": backend,
        "kind": kind,
        "batch_size": batch_size,
        "throughput": pool_size / statistics.median(repeat_seconds),
        "min_latency_ms": min(latencies) * 1000,
        "median_latency_ms": median * 1000,
        "repeats": len(repeat_seconds),
        "texts_per_repeat": pool_size,
        "repeat_seconds": [round(t, 9) for t in repeat_seconds],
        "latencies_ms": [round(t * 1000, 3) for t in latencies],
    }


def summarize(results: list[dict[str, Any]], budget_ms: float = LATENCY_BUDGET_MS) -> dict[str, Any]:
    """Per backend: speed-ups (peak throughput ratio and per batch size) and the largest batch under budget."""
    summary: dict[str, Any] = {}
    for backend in dict.fromkeys(r["backend"] for r in results):
        rows = [r for r in results if r["backend"] == backend]
        kinds = [k for k in KINDS if any(r["kind"] == k for r in rows)]

        def cells(model: str, kind: str, rows=rows) -> dict[int, dict[str, Any]]:
            return {r["batch_size"]: r for r in rows if r["model"] == model and r["kind"] == kind}

        entry: dict[str, Any] = {
            "peak_throughput": {},
            "max_batch_under_100ms": {},
            "speedup_by_batch_size": {},
            "speedup_range_by_batch_size": {},
        }
        for model in MODELS:
            entry["peak_throughput"][model] = {}
            entry["max_batch_under_100ms"][model] = {}
            for kind in kinds:
                c = cells(model, kind)
                entry["peak_throughput"][model][kind] = max(
                    (r["throughput"] for r in c.values()), default=None
                )
                under = [b for b, r in c.items() if r["median_latency_ms"] < budget_ms]
                entry["max_batch_under_100ms"][model][kind] = max(under, default=None)
        for kind in kinds:
            teacher, leaf = cells("teacher", kind), cells("leaf", kind)
            entry["speedup_by_batch_size"][kind] = {
                str(b): leaf[b]["throughput"] / teacher[b]["throughput"] for b in sorted(teacher) if b in leaf
            }
            ranges = {}
            for b in sorted(teacher):
                pair = (teacher[b].get("repeat_seconds"), leaf.get(b, {}).get("repeat_seconds"))
                if pair[0] and pair[1]:  # repeat r of the teacher against repeat r of the leaf
                    ratios = [t / lf for t, lf in zip(*pair, strict=True)]
                    ranges[str(b)] = [min(ratios), max(ratios)]
            entry["speedup_range_by_batch_size"][kind] = ranges
            t_peak = entry["peak_throughput"]["teacher"][kind]
            l_peak = entry["peak_throughput"]["leaf"][kind]
            entry[f"{kind}_speedup"] = l_peak / t_peak if t_peak and l_peak else None
        summary[backend] = {
            "documents_speedup": entry.pop("documents_speedup", None),
            "queries_speedup": entry.pop("queries_speedup", None),
            **entry,
        }
    return summary


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), not every core of the host."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def busy_cores(interval: float = 0.5) -> float | None:
    """How many cores' worth of CPU time other processes used over ``interval`` seconds (Linux /proc/stat).

    Call it while this process is idle. None where /proc/stat is not readable.
    """

    def sample() -> tuple[float, float]:
        with open("/proc/stat", encoding="ascii") as f:
            values = [float(v) for v in f.readline().split()[1:9]]  # user .. steal; guest is inside user
        return sum(values), values[3] + values[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return round((1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1), 2)


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


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def run_benchmark(
    leaf: str,
    teacher: str,
    backends: Sequence[str] = BACKENDS,
    queries: Sequence[str] | None = None,
    documents: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    repeats: int = 5,
    max_seq_length: int | None = None,
    threads: int | None = None,
    onnx_cache: str | None = None,
    sources: dict[str, str] | None = None,
    pool_size: int | None = None,
    kinds: Sequence[str] = KINDS,
    interleave: str = "repeat",
    batching: str = "sorted",
) -> dict[str, Any]:
    """Time teacher and leaf, interleaved, on every backend, kind and batch size; returns the report dict."""
    from tqdm.auto import tqdm

    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise LeafHubError(f"unknown backend(s) {unknown or backends}; choose from {', '.join(BACKENDS)}")
    if repeats < 1:
        raise LeafHubError(f"--repeats must be >= 1, got {repeats}")
    _check_interleave(interleave)  # before any model is loaded
    _check_batching(batching)
    if not kinds or [k for k in kinds if k not in KINDS]:
        raise LeafHubError(f"unknown kind(s) of text {list(kinds)}; choose from {', '.join(KINDS)}")
    kinds = [k for k in KINDS if k in kinds]  # the canonical order
    if not batch_sizes or min(batch_sizes) < 1:
        raise LeafHubError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    pool_size = pool_size or max(batch_sizes)
    if pool_size < max(batch_sizes):
        raise LeafHubError(
            f"--pool {pool_size} is smaller than the largest batch size {max(batch_sizes)}; "
            "give a pool at least that large"
        )
    if queries is None or documents is None:
        q, d, found = default_texts()
        queries, documents = queries or q, documents or d
        sources = sources or found
    texts = {"queries": list(queries), "documents": list(documents)}
    threads = threads or available_cores()
    models = _Models({"teacher": str(teacher), "leaf": str(leaf)}, threads, onnx_cache)

    started = time.perf_counter()
    load_before = _load()
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
    results: list[dict[str, Any]] = []
    seq_len = max_seq_length
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
    with _tokenizer_parallelism(tokenizer_parallelism):
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
                        f"x{results[-1]['throughput'] / results[-2]['throughput']:.1f}"
                    )
            del runners
    progress.close()
    models.release_torch()

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
    meta = {
        "leaf": _shown_path(leaf),
        "teacher": _shown_path(teacher),
        "backends": list(backends),
        "kinds": kinds,
        "batch_sizes": list(batch_sizes),
        "repeats": repeats,
        "interleave": interleave,
        "batching": batching,
        "tokenizer_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", str(tokenizer_parallelism).lower()),
        "pool_size": pool_size,
        "max_seq_length": seq_len,
        "model_max_seq_length": model_limits,
        "threads": threads,
        "cpu": _cpu_name(),
        "cores": available_cores(),
        "load_average_before": load_before,
        "busy_cores_before": busy_before,
        "load_average_after": _load(),
        "texts": {
            "queries": {"source": (sources or {}).get("queries", "given"), "count": len(texts["queries"])},
            "documents": {
                "source": (sources or {}).get("documents", "given"),
                "count": len(texts["documents"]),
            },
        },
        "protocol": (
            f"each kind times one fixed pool of {pool_size} texts at every batch size, {cut}; teacher and "
            f"leaf interleaved per {interleave} (order alternating; ONNX Runtime: {onnx_sessions}); same "
            "max_seq_length; tokenization + model + pooling "
            "timed (encode_query / encode_document; the tokenizer parallel only when the models use every "
            "core); throughput = pool size / median time per repeat; "
            "speed-up = leaf peak throughput / teacher peak throughput over batch sizes (range: per-repeat "
            f"ratios); max batch under {LATENCY_BUDGET_MS:.0f} ms uses the median per-call latency"
        ),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "versions": {
            "leaf_hub": leaf_hub.__version__,
            "torch": torch_version,
            "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(),
        },
    }
    return {"meta": meta, "results": results, "summary": summarize(results)}


# -- reports ------------------------------------------------------------------------------------------


def _or_unknown(value: Any) -> str:
    """A meta field older reports do not have (or this platform could not measure)."""
    return "not measured" if value is None else str(value)


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _times(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}x"


def to_markdown(report: dict[str, Any]) -> str:
    """The benchmark as Markdown: setup, then per backend a table per kind and the speed-ups."""
    meta, summary = report["meta"], report["summary"]
    lines = [
        "# Leaf vs teacher: throughput and latency",
        "",
        f"- leaf: `{meta['leaf']}`; teacher: `{meta['teacher']}`",
        f"- hardware: {meta['cpu']}, {meta['cores']} cores, {meta['threads']} threads; "
        f"cores busy with other work before: {_or_unknown(meta.get('busy_cores_before'))}; "
        f"load average before/after: {meta.get('load_average_before')} / {meta.get('load_average_after')}",
        f"- both models at max_seq_length {meta['max_seq_length']} (own limits: {meta.get('model_max_seq_length')})",
        f"- queries: {meta['texts']['queries']['source']} ({meta['texts']['queries']['count']}); "
        f"documents: {meta['texts']['documents']['source']} ({meta['texts']['documents']['count']})",
        f"- {meta['repeats']} repeats per batch size; {meta['protocol']}",
        "",
        "## Summary",
        "",
        "| backend | queries speed-up | documents speed-up | max batch < 100 ms (teacher / leaf), queries | "
        "documents |",
        "|---|---|---|---|---|",
    ]
    for backend, s in summary.items():
        mb = s["max_batch_under_100ms"]

        def under(kind: str, mb=mb) -> str:
            if kind not in mb["teacher"]:
                return "-"
            return f"{mb['teacher'][kind] or '-'} / {mb['leaf'][kind] or '-'}"

        lines.append(
            f"| {backend} | {_times(s['queries_speedup'])} | {_times(s['documents_speedup'])} | "
            f"{under('queries')} | {under('documents')} |"
        )
    kinds = [k for k in KINDS if any(r["kind"] == k for r in report["results"])]
    for backend in summary:
        for kind in kinds:
            rows = {
                (r["model"], r["batch_size"]): r
                for r in report["results"]
                if r["backend"] == backend and r["kind"] == kind
            }
            sizes = sorted({b for _, b in rows})
            lines += [
                "",
                f"## {backend}, {kind}",
                "",
                "| batch | teacher texts/s | leaf texts/s | speed-up (range over repeats) | teacher median / min ms | "
                "leaf median / min ms |",
                "|---|---|---|---|---|---|",
            ]
            ranges = summary[backend].get("speedup_range_by_batch_size", {}).get(kind, {})
            for b in sizes:
                t, lf = rows.get(("teacher", b)), rows.get(("leaf", b))
                if not t or not lf:
                    continue
                spread = f" ({ranges[str(b)][0]:.1f}-{ranges[str(b)][1]:.1f})" if str(b) in ranges else ""
                lines.append(
                    f"| {b} | {t['throughput']:.1f} | {lf['throughput']:.1f} | "
                    f"{lf['throughput'] / t['throughput']:.1f}x{spread} | {t['median_latency_ms']:.0f} / "
                    f"{t['min_latency_ms']:.0f} | {lf['median_latency_ms']:.0f} / {lf['min_latency_ms']:.0f} |"
                )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Throughput vs batch size, teacher vs leaf: one panel per (kind, backend), like the paper's Figure 12."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    backends = list(report["summary"])
    kinds = [k for k in KINDS if any(r["kind"] == k for r in report["results"])]
    fig, axes = plt.subplots(
        len(kinds),
        len(backends),
        figsize=(4.2 * len(backends), 3.25 * len(kinds) + 0.5),
        squeeze=False,
        sharex=True,
    )
    for col, backend in enumerate(backends):
        for row, kind in enumerate(kinds):
            ax = axes[row][col]
            for model, style in (("teacher", "o--"), ("leaf", "s-")):
                cells = sorted(
                    (r["batch_size"], r["throughput"])
                    for r in report["results"]
                    if r["backend"] == backend and r["kind"] == kind and r["model"] == model
                )
                if cells:
                    ax.plot([c[0] for c in cells], [c[1] for c in cells], style, label=model)
            speedup = report["summary"][backend].get(f"{kind}_speedup")
            ax.set_title(f"{backend}: {kind} ({_fmt(speedup)}x)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")  # a constant speed-up is a constant gap between the two lines
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            # Minor ticks labelled at 2x and 5x only, so that the labels do not overlap.
            ax.yaxis.set_minor_formatter(
                matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")
            )
            ax.set_xticks(report["meta"]["batch_sizes"], [str(b) for b in report["meta"]["batch_sizes"]])
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel("texts / s")
            if row == len(kinds) - 1:
                ax.set_xlabel("batch size")
            ax.legend()
    fig.suptitle(
        f"leaf vs teacher, max_seq_length {report['meta']['max_seq_length']}, {report['meta']['cpu']}"
    )
    fig.tight_layout()
    _atomic(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


_atomic = atomic_write_path


def write_report(report: dict[str, Any], output: str | os.PathLike) -> tuple[Path, Path, Path]:
    """Write ``output`` (JSON), the Markdown and the PNG next to it; returns the three paths."""
    out = Path(output).expanduser()
    md, png = out.with_suffix(".md"), out.with_suffix(".png")

    def write_text(text: str) -> Callable[[str], None]:
        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)

        return write

    _atomic(out, write_text(json.dumps(report, indent=2) + "\n"))
    _atomic(md, write_text(to_markdown(report)))
    plot(report, png)
    return out, md, png


# -- CLI ----------------------------------------------------------------------------------------------


def _int_list(value: str) -> list[int]:
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {value!r}")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--leaf", required=True, help="the leaf model: folder or Hub id")
    parser.add_argument("--teacher", required=True, help="its teacher: Hub id or folder")
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help=f"comma-separated, from {', '.join(BACKENDS)} (default: all)",
    )
    parser.add_argument("--queries", help="queries file (.jsonl with 'text', or one per line); default CISI")
    parser.add_argument("--documents", help="documents file (.jsonl with 'text'[, 'title'], or one per line)")
    parser.add_argument(
        "--batch-sizes", type=_int_list, default=list(DEFAULT_BATCH_SIZES), help="default 1,2,4,8,16,24"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed calls per model and batch size (default 5)"
    )
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help="comma-separated, from queries,documents (default: both)",
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=None,
        help="texts timed at every batch size, per kind (default: the largest batch size; 48 = lcm of the "
        "default sizes gives full batches everywhere; a larger pool gives the length sort more room, as a "
        "bulk job's thousands of texts do)",
    )
    parser.add_argument(
        "--max-seq-length", type=int, default=None, help="for both models (default: the smaller model limit)"
    )
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    parser.add_argument(
        "--interleave",
        choices=INTERLEAVE,
        default="repeat",
        help="teacher and leaf take turns per repeat (default: each encodes the whole pool, as a server "
        "would) or per batch (finer against load, but the teacher evicts the leaf from the CPU caches)",
    )
    parser.add_argument(
        "--batching",
        choices=BATCHING,
        default="sorted",
        help="cut the pool into batches after sorting it by length, as encode does for bulk encoding "
        "(default), or in arrival order, as an online server batches whatever came in (more padding)",
    )
    parser.add_argument(
        "--onnx-cache", default=None, help="where to export models without onnx/ (default: leaf-hub cache)"
    )
    parser.add_argument(
        "--output", default="bench.json", help="JSON report; .md and .png are written next to it"
    )


def run(args: argparse.Namespace) -> int:
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    queries, documents, sources = default_texts(args.queries, args.documents)
    report = run_benchmark(
        args.leaf,
        args.teacher,
        backends=backends,
        queries=queries,
        documents=documents,
        batch_sizes=args.batch_sizes,
        repeats=args.repeats,
        max_seq_length=args.max_seq_length,
        threads=args.threads,
        onnx_cache=args.onnx_cache,
        sources=sources,
        pool_size=args.pool,
        kinds=[k.strip() for k in args.kinds.split(",") if k.strip()],
        interleave=args.interleave,
        batching=args.batching,
    )
    paths = write_report(report, args.output)
    for backend, s in report["summary"].items():
        print(
            f"{backend}: leaf/teacher throughput x{_fmt(s['queries_speedup'])} queries, "
            f"x{_fmt(s['documents_speedup'])} documents"
        )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0

"""An on-disk cache of embeddings, keyed by model fingerprint, encoding task, prompt and the texts' hash.

Encoding is the only expensive part of evaluation: a 768-d teacher embeds about two long documents per
second on a small CPU, so a 1,500-document corpus costs minutes. Everything else (search, metrics, MRL,
quantization) takes seconds. So every encoding goes through :func:`encode` here, which

- keys the result by *what determines the vectors*: the model's weights fingerprint, its module stack and
  maximum sequence length, the task ("query", "document" or plain "text", which picks the prompt and, for
  Router models, the route), the prompt string and a hash of the texts in order;
- stores float32 ``.npy`` files under ``$LEAF_HUB_CACHE/embeddings`` (default ``~/.cache/leaf-hub/embeddings``),
  written atomically (temporary name in the same folder, then ``os.replace``), with a small JSON sidecar
  that records the model name and the seconds the encoding took (the "bare encode time" of a report);
- saves partial results every few hundred texts, so an interrupted encoding resumes where it stopped.

The same texts encoded by the same model are therefore computed once per machine, across modes
(teacher / leaf / asymmetric), variants (MRL, quantization) and runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from leaf_hub.files import atomic_write

logger = logging.getLogger(__name__)

Task = Literal["query", "document", "text"]
_FORMAT = 1
# Fingerprints cost a pass over the weights: remember them per loaded model object.
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def default_cache_dir() -> Path:
    """``$LEAF_HUB_CACHE/embeddings`` when set, else ``~/.cache/leaf-hub/embeddings``."""
    root = os.environ.get("LEAF_HUB_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "leaf-hub"
    return base / "embeddings"


def texts_hash(texts: Sequence[str]) -> str:
    """An order-sensitive hash of a list of texts."""
    digest = hashlib.sha256()
    digest.update(str(len(texts)).encode())
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        # Length-prefixed so that ["ab", "c"] and ["a", "bc"] differ.
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def model_fingerprint(model) -> str:
    """What determines a model's embeddings: weights, module stack, sequence length, normalization."""
    cached = _FINGERPRINTS.get(model)
    if cached is not None:
        return cached
    from leaf_hub.models import is_onnx_graph, weights_fingerprint

    if is_onnx_graph(model):  # graph file, tokenizer and max_seq_length: no torch modules to list
        return weights_fingerprint(model)

    parts = {
        "weights": weights_fingerprint(model),
        "modules": [type(m).__name__ for m in model],
        "max_seq_length": getattr(model, "max_seq_length", None),
    }
    fp = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    _FINGERPRINTS[model] = fp
    return fp


def task_prompt(model, task: Task) -> str:
    """The prompt sentence-transformers prepends for ``task`` (what encode_query/encode_document use)."""
    from leaf_hub.models import document_prompt, query_prompt

    if task == "query":
        return query_prompt(model)
    if task == "document":
        prompts = getattr(model, "prompts", None) or {}
        return document_prompt(model) or prompts.get("corpus", "")
    default = getattr(model, "default_prompt_name", None)
    return (getattr(model, "prompts", None) or {}).get(default, "") if default else ""


_atomic_write_bytes = atomic_write


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` atomically."""
    _atomic_write_bytes(path, lambda f: np.save(f, array, allow_pickle=False))


class EmbeddingStore:
    """Embeddings on disk (``folder``) or only in memory (``folder=None``, e.g. ``--no-cache``)."""

    def __init__(self, folder: str | os.PathLike | None = None, *, memory_only: bool = False) -> None:
        self.folder = None if memory_only else Path(folder) if folder else default_cache_dir()
        self._memory: dict[tuple[str, str], np.ndarray] = {}
        # Seconds spent encoding in this process and the recorded encode time of every result served.
        self.encode_seconds = 0.0
        self.bare_seconds = 0.0
        self.hits = 0
        self.misses = 0

    def key(self, model, task: Task, texts: Sequence[str]) -> tuple[str, str]:
        """(model fingerprint, entry key) for these texts."""
        fp = model_fingerprint(model)
        spec = {
            "format": _FORMAT,
            "task": task,
            "prompt": task_prompt(model, task),
            "texts": texts_hash(texts),
        }
        return fp, hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]

    def _paths(self, fp: str, key: str) -> tuple[Path, Path, Path]:
        assert self.folder is not None
        base = self.folder / fp
        return base / f"{key}.npy", base / f"{key}.json", base / f"{key}.partial"

    def lookup(self, model, task: Task, texts: Sequence[str]) -> np.ndarray | None:
        """The stored embeddings, or None when they are not there yet."""
        fp, key = self.key(model, task, texts)
        if (fp, key) in self._memory:
            return self._memory[(fp, key)]
        if self.folder is None:
            return None
        npy, meta, _ = self._paths(fp, key)
        if not npy.is_file():
            return None
        try:
            array = np.load(npy, allow_pickle=False)
        except (OSError, ValueError) as exc:  # a damaged file is recomputed, not trusted
            logger.warning("ignoring unreadable cache entry %s (%s)", npy, exc)
            return None
        if array.ndim != 2 or array.shape[0] != len(texts):
            logger.warning("ignoring cache entry %s with shape %s for %d texts", npy, array.shape, len(texts))
            return None
        with contextlib.suppress(OSError, ValueError):
            self.bare_seconds += float(json.loads(meta.read_text()).get("seconds", 0.0))
        self._memory[(fp, key)] = array
        return array

    def encode(
        self,
        model,
        texts: Sequence[str],
        task: Task,
        *,
        batch_size: int = 32,
        checkpoint_every: int = 256,
        desc: str | None = None,
        model_name: str | None = None,
    ) -> np.ndarray:
        """Embeddings (float32, one row per text, as the model outputs them) from the cache or the model."""
        texts = list(texts)
        in_memory = self.key(model, task, texts) in self._memory
        cached = self.lookup(model, task, texts)
        if cached is not None:
            if not in_memory:  # reuse within a run is free and not worth a line
                self.hits += 1
                logger.info("%s: %d embeddings from the cache", desc or task, len(texts))
            return cached
        self.misses += 1
        fp, key = self.key(model, task, texts)
        start = time.perf_counter()
        array, seconds_before = self._compute(model, texts, task, fp, key, batch_size, checkpoint_every, desc)
        seconds = time.perf_counter() - start
        self.encode_seconds += seconds
        self.bare_seconds += seconds + seconds_before
        self._memory[(fp, key)] = array
        if self.folder is not None:
            npy, meta, partial = self._paths(fp, key)
            save_npy(npy, array)
            info = {
                "model": model_name or _model_name(model),
                "fingerprint": fp,
                "task": task,
                "prompt": task_prompt(model, task),
                "num_texts": len(texts),
                "dim": int(array.shape[1]) if array.ndim == 2 else 0,
                "seconds": round(seconds + seconds_before, 3),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            _atomic_write_bytes(meta, lambda f: f.write(json.dumps(info, indent=1).encode()))
            _remove_partial(partial)
        return array

    def _compute(self, model, texts, task, fp, key, batch_size, checkpoint_every, desc):
        from tqdm.auto import tqdm

        n = len(texts)
        if n == 0:
            dim = model.get_embedding_dimension() or 0
            return np.zeros((0, dim), dtype=np.float32), 0.0
        # Longest first, like sentence-transformers, so batches hold texts of similar length (less padding);
        # we sort ourselves because we encode in slices to save partial progress.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        chunks: list[np.ndarray] = []
        done = 0
        seconds_before = 0.0
        partial = self._paths(fp, key)[2] if self.folder is not None else None
        if partial is not None and partial.is_dir():
            chunks, done, seconds_before = _load_partial(partial)
            if done:
                logger.info("%s: resuming after %d of %d texts", desc or task, done, n)
        encode_fn = {"query": model.encode_query, "document": model.encode_document, "text": model.encode}[
            task
        ]
        pending: list[np.ndarray] = []
        pending_start = done
        t0 = time.perf_counter()
        with tqdm(total=n, initial=done, desc=desc or f"encode {task}s", unit="text") as bar:
            for start in range(done, n, batch_size):
                batch = [texts[i] for i in order[start : start + batch_size]]
                emb = encode_fn(batch, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
                pending.append(np.asarray(emb, dtype=np.float32))
                bar.update(len(batch))
                end = start + len(batch)
                if partial is not None and (end - pending_start >= checkpoint_every) and end < n:
                    block = np.concatenate(pending)
                    seconds = time.perf_counter() - t0
                    save_npy(partial / f"{pending_start:09d}-{end:09d}-{seconds:.3f}.npy", block)
                    chunks.append(block)
                    pending, pending_start, t0 = [], end, time.perf_counter()
        chunks.extend(pending)
        sorted_emb = np.concatenate(chunks)
        out = np.empty_like(sorted_emb)
        out[order] = sorted_emb
        # seconds_before: what earlier, interrupted runs spent; the caller times this run itself.
        return out, seconds_before

    def clear_memory(self) -> None:
        self._memory.clear()


def _model_name(model) -> str:
    from leaf_hub.models import model_id

    return model_id(model)


def _slice_seconds(path: Path) -> float:
    try:
        return float(path.stem.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0.0


def _load_partial(partial: Path) -> tuple[list[np.ndarray], int, float]:
    """Contiguous slices saved by an interrupted run: (arrays, texts covered, seconds they took)."""
    arrays, done, seconds = [], 0, 0.0
    for path in sorted(partial.glob("*.npy")):
        try:
            start, end, _ = path.stem.split("-")
            if int(start) != done:
                break
            block = np.load(path, allow_pickle=False)
            if block.shape[0] != int(end) - int(start):
                break
        except (OSError, ValueError):
            break
        arrays.append(block)
        done = int(end)
        seconds += _slice_seconds(path)
    return arrays, done, seconds


def _remove_partial(partial: Path) -> None:
    if partial.is_dir():
        for p in partial.iterdir():
            p.unlink(missing_ok=True)
        partial.rmdir()

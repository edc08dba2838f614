"""The teacher-embedding cache: teacher vectors computed once, on disk, resumable.

The teacher is by far the slowest part of distillation on small hardware (and may be a paid API), so its
embeddings are computed once and reused by every epoch and every later run on the same texts.

Layout of a cache folder::

    manifest.json        teacher name + fingerprint, prompts, dimension, normalized, dtype, rows, texts hash
    shard-00000.npz      {"index": row ids, "embedding": (n, d) vectors}, one per length-sorted batch group
    ...

Texts are embedded in order of token length (little padding, so the teacher runs at full speed), in shards
of a few thousand rows. Each shard is written to a temporary name and renamed when complete, so killing the
process at any moment loses at most the shard in progress and a rerun resumes. Under ``accelerate launch``
the shards are split round-robin across processes. A cache built by another teacher, of another dimension
or for other texts is refused with an error instead of being silently mixed in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from leaf_hub.errors import LeafHubError
from leaf_hub.files import atomic_write_bytes, atomic_write_json

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
# float16 keeps 3 significant digits: enough for unit vectors (cosine to float32 >= 0.9999), half the disk.
MIN_FP16_COSINE = 0.999


@dataclass
class CacheManifest:
    teacher: str
    teacher_fingerprint: str
    prompts: dict[str, str]
    dimension: int
    normalized: bool
    dtype: str
    rows: int
    texts_sha256: str
    shard_size: int
    format_version: int = FORMAT_VERSION


def texts_digest(texts: Sequence[str], kinds: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text, kind in zip(texts, kinds, strict=True):
        digest.update(kind.encode())
        digest.update(b"\0")
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


class TeacherCache:
    """Teacher embeddings of one ordered list of (text, kind) on disk."""

    def __init__(self, folder: str | os.PathLike, shard_size: int = 2048):
        self.folder = Path(folder)
        self.shard_size = shard_size

    def _shard_path(self, k: int) -> Path:
        return self.folder / f"shard-{k:05d}.npz"

    def read_manifest(self) -> CacheManifest | None:
        path = self.folder / MANIFEST
        if not path.is_file():
            return None
        try:
            return CacheManifest(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise LeafHubError(
                f"teacher cache {self.folder}: {MANIFEST} is unreadable ({exc}); delete the folder to rebuild it"
            ) from exc

    def _check_compatible(self, have: CacheManifest, want: CacheManifest) -> None:
        problems = []
        if have.teacher_fingerprint != want.teacher_fingerprint:
            problems.append(
                f"it was built by teacher {have.teacher!r} ({have.teacher_fingerprint}), "
                f"not {want.teacher!r} ({want.teacher_fingerprint})"
            )
        if have.dimension != want.dimension:
            problems.append(f"its dimension is {have.dimension}, the teacher's is {want.dimension}")
        if have.prompts != want.prompts:
            problems.append(f"its prompts {have.prompts} differ from the teacher's {want.prompts}")
        if have.texts_sha256 != want.texts_sha256 or have.rows != want.rows:
            problems.append(f"it holds {have.rows} other texts (the data or its options changed)")
        if problems:
            raise LeafHubError(
                f"teacher cache {self.folder} does not match this run: {'; '.join(problems)}. "
                "Give another --cache folder, or delete this one to rebuild it"
            )

    def build(
        self,
        teacher,
        texts: Sequence[str],
        kinds: Sequence[str],
        dtype: str = "float16",
        process_index: int = 0,
        num_processes: int = 1,
        barrier=None,
    ) -> np.ndarray:
        """Embed what is missing and return all embeddings (rows in the order of ``texts``) as float32.

        ``barrier`` is called after this process's shards are written (``accelerator.wait_for_everyone``
        under ``accelerate launch``) so every process then reads the complete cache.
        """
        if dtype not in {"float16", "float32"}:
            raise LeafHubError(f"cache dtype {dtype!r} is not supported; use float16 or float32")
        want = CacheManifest(
            teacher=teacher.name,
            teacher_fingerprint=teacher.fingerprint,
            prompts=dict(teacher.prompts),
            dimension=int(teacher.dimension),
            normalized=bool(teacher.normalized),
            dtype=dtype,
            rows=len(texts),
            texts_sha256=texts_digest(texts, kinds),
            shard_size=self.shard_size,
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        have = self.read_manifest()
        if have is not None:
            self._check_compatible(have, want)
            want.dtype, self.shard_size, want.shard_size = have.dtype, have.shard_size, have.shard_size
        elif process_index == 0:
            atomic_write_json(self.folder / MANIFEST, asdict(want), sort_keys=True)
        n_shards = -(-len(texts) // self.shard_size)
        mine = [k for k in range(n_shards) if k % num_processes == process_index]
        todo = [k for k in mine if not self._shard_path(k).is_file()]
        if len(todo) < len(mine):
            logger.info(
                "teacher cache %s: %d of %d shards already done",
                self.folder,
                len(mine) - len(todo),
                len(mine),
            )
        # Tokenizing every text to sort by length is only worth it when there is something left to embed.
        order = self._length_order(teacher, texts) if todo else np.arange(0)
        shards = [order[i : i + self.shard_size] for i in range(0, len(order), self.shard_size)]
        bar = tqdm(
            total=sum(len(shards[k]) for k in todo), desc="teacher embeddings", unit="text", disable=not todo
        )
        for k in todo:
            idx = shards[k]
            parts = []
            for start in range(0, len(idx), 256):  # sub-batches so the progress bar moves
                sub = idx[start : start + 256]
                parts.append(self._embed(teacher, [texts[i] for i in sub], [kinds[i] for i in sub]))
                bar.update(len(sub))
            emb = np.concatenate(parts)
            stored = self._to_storage(emb, want.dtype)
            buf = _npz_bytes(index=np.asarray(idx, dtype=np.int64), embedding=stored)
            atomic_write_bytes(self._shard_path(k), buf)
        bar.close()
        if barrier is not None:
            barrier()
        return self.load(len(texts), want.dimension)

    def _length_order(self, teacher, texts: Sequence[str]) -> np.ndarray:
        # Stable sort: the same texts always give the same shards, which is what makes resuming possible.
        lengths = np.asarray(teacher.token_lengths(list(texts)))
        return np.argsort(lengths, kind="stable")

    def _embed(self, teacher, texts: list[str], kinds: list[str]) -> np.ndarray:
        out = np.empty((len(texts), int(teacher.dimension)), dtype=np.float32)
        for kind in ("query", "document"):
            sel = [i for i, k in enumerate(kinds) if k == kind]
            if sel:
                vecs = np.asarray(teacher.encode([texts[i] for i in sel], kind), dtype=np.float32)
                if vecs.shape != (len(sel), out.shape[1]):
                    raise LeafHubError(
                        f"teacher {teacher.name!r} returned embeddings of shape {vecs.shape}, "
                        f"expected ({len(sel)}, {out.shape[1]})"
                    )
                out[sel] = vecs
        if not np.isfinite(out).all():
            raise LeafHubError(f"teacher {teacher.name!r} returned NaN or infinite values")
        return out

    def _to_storage(self, emb: np.ndarray, dtype: str) -> np.ndarray:
        if dtype == "float32":
            return emb
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected below
            half = emb.astype(np.float16)
            back = half.astype(np.float32)
            num = (back * emb).sum(1)
            den = np.linalg.norm(back, axis=1) * np.linalg.norm(emb, axis=1) + 1e-12
            worst = float((num / den).min()) if len(emb) else 1.0
        if not np.isfinite(half).all() or worst < MIN_FP16_COSINE:
            raise LeafHubError(
                f"float16 storage loses too much of this teacher's embeddings (worst cosine {worst:.5f} < "
                f"{MIN_FP16_COSINE}); rerun with --cache-dtype float32"
            )
        return half

    def load(self, rows: int | None = None, dimension: int | None = None) -> np.ndarray:
        """All cached embeddings as float32, rows in text order; refuses an incomplete cache."""
        manifest = self.read_manifest()
        if manifest is None:
            raise LeafHubError(f"{self.folder} is not a teacher cache (no {MANIFEST})")
        rows = manifest.rows if rows is None else rows
        out = np.zeros((rows, dimension or manifest.dimension), dtype=np.float32)
        seen = np.zeros(rows, dtype=bool)
        for path in sorted(self.folder.glob("shard-*.npz")):
            with np.load(path) as data:
                out[data["index"]] = data["embedding"].astype(np.float32)
                seen[data["index"]] = True
        if not seen.all():
            raise LeafHubError(
                f"teacher cache {self.folder} is incomplete ({int(seen.sum())} of {rows} rows); "
                "rerun the same command to finish it"
            )
        return out


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()

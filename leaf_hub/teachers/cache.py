"""The teacher-embedding cache: teacher vectors computed once, on disk, resumable, read by memory map.

The teacher is by far the slowest part of distillation on small hardware (and may be a paid API), so its
embeddings are computed once and reused by every epoch and every later run on the same texts.

Layout of a cache folder::

    manifest.json        teacher name + fingerprint, prompts, dimension, normalized, dtype, rows, texts hash
    shard-00000.npz      one per length-sorted group of rows (uncompressed, so its arrays can be mapped):
                           index      the rows it holds (int64)
                           embedding  their vectors, (n, d), float16 (or float32)
                           digest     (n, 16) identities of those rows' (kind, text): the shard's proof
                           meta       teacher fingerprint, dimension, dtype and prompts that made it
    checked.json         the shards whose CRCs (and row digests, per texts) were checked, by size, mtime and
                         inode: not read again while unchanged
    texts/, tokens/      the text store and token stores of the runs that use this cache

Texts are embedded in order of token length (little padding, so the teacher runs at full speed), a
teacher batch at a time (the progress bar moves per batch), in shards of a few thousand rows. Each shard
is written to a temporary name and renamed when complete, so killing the process at any moment loses at
most the shard in progress and a rerun resumes. Under ``accelerate launch`` the shards are split
round-robin across processes, and every process then maps the same files.

Reading is by memory map: :class:`CachedTargets` hands out float32 rows a batch at a time from the
float16 shards, so memory does not grow with the number of texts (a cache larger than 1 GiB is read row
by row with ``pread`` instead, through the same page cache, so the process's RSS stays flat too). Nothing
is trusted that cannot prove itself: a cache built by another teacher, of another dimension or for other
texts is refused; every shard
is checked against its zip CRC (a truncated or damaged shard is named, with the fix; a shard unchanged
since it was last checked is not read again) and its rows' digests against the texts of this run (shards
left from other texts are refused even when the manifest is gone).
"""

from __future__ import annotations

import io
import json
import logging
import os
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from leaf_hub.errors import LeafHubError
from leaf_hub.files import (
    CHECKED_RECORD,
    RESIDENT_MAP_BYTES,
    CheckedFiles,
    atomic_write_bytes,
    atomic_write_json,
    drop_pages,
    map_array,
    read_spans,
)

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CHECKED = CHECKED_RECORD  # shards whose CRCs (and digests, per texts) were checked: see CheckedFiles, _open
FORMAT_VERSION = 2  # 2: shards carry the digests of their rows and the facts of the teacher that made them
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

    def shard_meta(self) -> dict[str, Any]:
        """What each shard records about the teacher that made it."""
        return {
            "format_version": FORMAT_VERSION,
            "teacher_fingerprint": self.teacher_fingerprint,
            "dimension": self.dimension,
            "dtype": self.dtype,
            "prompts": self.prompts,
        }


def texts_digest(texts: Sequence[str], kinds: Sequence[str]) -> str:
    """SHA-256 of a list of (text, kind): the cache's key for the texts it holds."""
    from leaf_hub.data.store import texts_sha256

    return texts_sha256(iter([(texts, kinds)]))


class _ListRows:
    """Texts given as two lists, seen through the interface of a :class:`~leaf_hub.data.store.TextStore`."""

    def __init__(self, texts: Sequence[str], kinds: Sequence[str]):
        if len(texts) != len(kinds):
            raise LeafHubError(f"{len(texts)} texts but {len(kinds)} kinds; give one kind per text")
        self._texts, self._kinds = list(texts), list(kinds)
        self.texts_sha256 = texts_digest(self._texts, self._kinds)
        self._digests: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._texts)

    def texts(self, rows) -> list[str]:
        return [self._texts[i] for i in np.asarray(rows).tolist()]

    def kind_names(self, rows) -> list[str]:
        return [self._kinds[i] for i in np.asarray(rows).tolist()]

    def digests(self, rows=None) -> np.ndarray:
        if self._digests is None:
            from leaf_hub.data.store import text_digests

            self._digests = text_digests(self._texts, self._kinds)
        return self._digests if rows is None else self._digests[np.asarray(rows, dtype=np.int64)]

    def batches(self, size: int = 8192, start: int = 0):
        for s in range(start, len(self), size):
            yield s, self._texts[s : s + size], self._kinds[s : s + size]

    def release(self) -> None:
        pass


def _rows_of(texts, kinds):
    if kinds is None:
        if not hasattr(texts, "texts_sha256"):
            raise LeafHubError("give the kinds of the texts (query or document), or a TextStore")
        return texts
    return _ListRows(texts, kinds)


class TeacherCache:
    """Teacher embeddings of one ordered list of (text, kind) on disk."""

    def __init__(self, folder: str | os.PathLike, shard_size: int = 2048):
        self.folder = Path(folder)
        self.shard_size = shard_size

    def _shard_path(self, k: int) -> Path:
        return self.folder / f"shard-{k:05d}.npz"

    def _shard_paths(self) -> list[Path]:
        return sorted(self.folder.glob("shard-*.npz"))

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

    # -- building ----------------------------------------------------------------------------------

    def prepare(
        self,
        teacher,
        texts,
        kinds: Sequence[str] | None = None,
        dtype: str = "float16",
        process_index: int = 0,
        num_processes: int = 1,
        barrier=None,
    ) -> CachedTargets:
        """Embed what is missing and return every row's vector, memory-mapped (:class:`CachedTargets`).

        ``texts`` is a :class:`~leaf_hub.data.store.TextStore`, or a list of texts with ``kinds`` beside it.
        ``barrier`` is called after this process's shards are written (``accelerator.wait_for_everyone``
        under ``accelerate launch``) so every process then reads the complete cache.
        """
        if dtype not in {"float16", "float32"}:
            raise LeafHubError(f"cache dtype {dtype!r} is not supported; use float16 or float32")
        rows = _rows_of(texts, kinds)
        want = CacheManifest(
            teacher=teacher.name,
            teacher_fingerprint=teacher.fingerprint,
            prompts=dict(teacher.prompts),
            dimension=int(teacher.dimension),
            normalized=bool(teacher.normalized),
            dtype=dtype,
            rows=len(rows),
            texts_sha256=rows.texts_sha256,
            shard_size=self.shard_size,
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        have = self.read_manifest()
        if have is not None:
            self._check_compatible(have, want)
            want.dtype, self.shard_size, want.shard_size = have.dtype, have.shard_size, have.shard_size
            want.format_version = have.format_version
        else:
            if self._shard_paths():
                # Shards without a manifest vouch for nothing: each must prove it holds these texts.
                self._open(want, rows, check_crc=False, require_complete=False)
                logger.info(
                    "teacher cache %s: no %s; its shards hold this run's texts", self.folder, MANIFEST
                )
            if process_index == 0:
                atomic_write_json(self.folder / MANIFEST, asdict(want), sort_keys=True)
        n_shards = -(-len(rows) // self.shard_size)
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
        order = self._length_order(teacher, rows) if todo else np.arange(0)
        bar = tqdm(
            total=sum(min(self.shard_size, len(rows) - k * self.shard_size) for k in todo),
            desc="teacher embeddings",
            unit="text",
            unit_scale=True,
            disable=True if not todo else None,
        )
        for k in todo:
            idx = order[k * self.shard_size : (k + 1) * self.shard_size]
            emb = self._embed(teacher, rows.texts(idx), rows.kind_names(idx), bar)
            stored = self._to_storage(emb, want.dtype)
            meta = np.array(json.dumps(want.shard_meta(), sort_keys=True))
            buf = _npz_bytes(
                index=np.asarray(idx, dtype=np.int64), embedding=stored, digest=rows.digests(idx), meta=meta
            )
            atomic_write_bytes(self._shard_path(k), buf)
            rows.release()
        bar.close()
        if barrier is not None:
            barrier()
        return self._open(want, rows)

    def build(
        self, teacher, texts, kinds: Sequence[str] | None = None, dtype: str = "float16", **kwargs
    ) -> np.ndarray:
        """:meth:`prepare`, then every vector as one float32 array in memory (for small caches)."""
        return np.asarray(self.prepare(teacher, texts, kinds, dtype=dtype, **kwargs))

    def _length_order(self, teacher, rows) -> np.ndarray:
        # Stable sort: the same texts always give the same shards, which is what makes resuming possible.
        lengths = np.zeros(len(rows), dtype=np.int64)
        for start, batch, _ in rows.batches():
            lengths[start : start + len(batch)] = teacher.token_lengths(list(batch))
        return np.argsort(lengths, kind="stable")

    def _embed(self, teacher, texts: list[str], kinds: list[str], bar) -> np.ndarray:
        """One shard's vectors, a teacher batch of one kind at a time; checks each answer's shape at once."""
        dim = int(teacher.dimension)
        out = np.empty((len(texts), dim), dtype=np.float32)
        step = max(1, int(getattr(teacher, "batch_size", 64) or 64)) * max(
            1, int(getattr(teacher, "concurrency", 1) or 1)
        )
        for kind in ("query", "document"):
            sel = [i for i, k in enumerate(kinds) if k == kind]
            for start in range(0, len(sel), step):
                part = sel[start : start + step]
                vecs = np.asarray(teacher.encode([texts[i] for i in part], kind), dtype=np.float32)
                if vecs.shape != (len(part), dim):
                    raise LeafHubError(
                        f"teacher {teacher.name!r} returned embeddings of shape {vecs.shape} for {len(part)} "
                        f"texts, expected ({len(part)}, {dim}): the teacher changed (another model or "
                        f"dimension) while the cache was being built; the finished shards in {self.folder} "
                        "are kept: check the teacher serves the same model and rerun"
                    )
                if not np.isfinite(vecs).all():
                    raise LeafHubError(f"teacher {teacher.name!r} returned NaN or infinite values")
                out[part] = vecs
                bar.update(len(part))
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

    # -- reading -----------------------------------------------------------------------------------

    def open(self, texts=None, kinds: Sequence[str] | None = None) -> CachedTargets:
        """The complete cache, memory-mapped; with ``texts`` every shard also proves it holds them."""
        manifest = self.read_manifest()
        if manifest is None:
            raise LeafHubError(f"{self.folder} is not a teacher cache (no {MANIFEST})")
        rows = _rows_of(texts, kinds) if texts is not None else None
        return self._open(manifest, rows)

    def load(self, rows: int | None = None, dimension: int | None = None) -> np.ndarray:
        """All cached embeddings as float32, rows in text order; refuses an incomplete cache."""
        targets = self.open()
        if rows is not None and rows != len(targets):
            raise LeafHubError(f"teacher cache {self.folder} holds {len(targets)} rows, not {rows}")
        return np.asarray(targets)

    def _open(
        self, manifest: CacheManifest, rows=None, check_crc: bool = True, require_complete: bool = True
    ):
        n, dim = manifest.rows, manifest.dimension
        shard_of = np.full(n, -1, dtype=np.int32)
        offset_in = np.zeros(n, dtype=np.int32)
        shards: list[_Shard] = []
        want_meta = manifest.shard_meta()
        checks = CheckedFiles(self.folder / CHECKED)
        # A shard is stamped once its CRCs passed and, with ``rows``, its row digests matched the texts of this
        # sha256: an unchanged shard's CRCs are not read again, nor its digests for the same texts (they are
        # 32 bytes a row between shard and text store: ~1 minute at 64M texts).
        texts_tag = getattr(rows, "texts_sha256", None) or None
        for path in self._shard_paths():
            crc_known = not checks.needs_check(path, CheckedFiles.ANY_TAG)
            digests_known = texts_tag is not None and not checks.needs_check(path, texts_tag)
            shard = _Shard(path, check_crc=check_crc and not crc_known)
            if shard.meta is not None:
                differs = [
                    k
                    for k in ("teacher_fingerprint", "dimension", "dtype", "prompts")
                    if shard.meta.get(k) != want_meta[k]
                ]
                if differs:
                    raise LeafHubError(
                        f"teacher cache shard {path} was made with another {', '.join(differs)} than this "
                        f"cache's; it does not belong here: delete it (or the folder) and rerun"
                    )
            elif manifest.format_version >= 2:  # an old shard is vouched for by its old manifest only
                raise LeafHubError(
                    f"teacher cache shard {path} cannot prove which texts it holds (written by an older "
                    "leaf-hub, without its manifest); delete the folder to rebuild the cache"
                )
            index = shard.index
            if len(index) and (index.min() < 0 or index.max() >= n) or shard.shape != (len(index), dim):
                raise LeafHubError(
                    f"teacher cache shard {path} does not fit this cache ({len(index)} rows of shape "
                    f"{shard.shape}, for {n} texts of dimension {dim}); delete it and rerun to recompute it"
                )
            if rows is not None and shard.digest is not None and not digests_known:
                expected = rows.digests(index)
                if not np.array_equal(np.asarray(shard.digest), expected):
                    bad = int(np.flatnonzero(~np.all(np.asarray(shard.digest) == expected, axis=1))[0])
                    raise LeafHubError(
                        f"teacher cache shard {path} holds other texts than this run's (row {int(index[bad])} "
                        "differs): the folder was built for other data; give another --cache folder or "
                        "delete this one to rebuild it"
                    )
            if check_crc and not (crc_known and (rows is None or digests_known)):  # what was read is recorded
                checks.checked(path, texts_tag)
            k = len(shards)
            shard_of[index] = k
            offset_in[index] = np.arange(len(index), dtype=np.int32)
            shard.index = shard.digest = None  # in shard_of / offset_in now; memory stays flat
            shards.append(shard)
        checks.save()
        missing = int((shard_of < 0).sum())
        if missing and require_complete:
            raise LeafHubError(
                f"teacher cache {self.folder} is incomplete ({n - missing} of {n} rows); "
                "rerun the same command to finish it"
            )
        return CachedTargets(shards, shard_of, offset_in, dim)


class _Shard:
    """One shard file: its arrays located inside the (uncompressed) zip, mapped on first use."""

    def __init__(self, path: Path, check_crc: bool = True):
        self.path = path
        fix = f"delete {path.name} and rerun the same command to recompute it"
        try:
            with zipfile.ZipFile(path) as zf:
                infos = {i.filename: i for i in zf.infolist()}
            with open(path, "rb") as f:
                self.members = {name[:-4]: _locate(f, info) for name, info in infos.items()}
                if check_crc:
                    for name, info in infos.items():
                        if _member_crc(f, info) != info.CRC:
                            raise zipfile.BadZipFile(f"{name} does not match its CRC")
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, struct.error, KeyError) as exc:
            raise LeafHubError(f"teacher cache shard {path} is damaged ({exc}); {fix}") from None
        if "index" not in self.members or "embedding" not in self.members:
            raise LeafHubError(f"teacher cache shard {path} is damaged (no index or embedding); {fix}")
        self.index = np.asarray(self._array("index"), dtype=np.int64)
        self.digest = self._array("digest") if "digest" in self.members else None  # dropped once checked
        self.meta = json.loads(str(self._array("meta")[()])) if "meta" in self.members else None
        _, _, shape, _ = self.members["embedding"]
        self.shape = shape
        self._embedding: np.ndarray | None = None

    def _array(self, name: str) -> np.ndarray:
        """A small member read into memory (a map per array would run into the kernel's limit on maps)."""
        offset, dtype, shape, _ = self.members[name]
        count = int(np.prod(shape))
        with open(self.path, "rb") as f:
            f.seek(offset)
            return np.frombuffer(f.read(dtype.itemsize * count), dtype=dtype).reshape(shape)

    @property
    def embedding(self) -> np.ndarray:
        """The vectors, memory-mapped on first use (one map per shard)."""
        if self._embedding is None:
            offset, dtype, shape, _ = self.members["embedding"]
            self._embedding = map_array(self.path, dtype, shape, offset)
        return self._embedding

    def release(self) -> None:
        if self._embedding is not None:
            drop_pages(self._embedding)


def _locate(f, info: zipfile.ZipInfo) -> tuple[int, np.dtype, tuple[int, ...], bool]:
    """(data offset, dtype, shape, fortran) of a stored .npy member of an uncompressed zip."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{info.filename} is compressed; a cache shard is written uncompressed")
    f.seek(info.header_offset)
    header = f.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"{info.filename}: bad local header")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    if f.read(name_len) != info.filename.encode():
        raise zipfile.BadZipFile(f"{info.filename}: its local header names another file")
    f.seek(info.header_offset + 30 + name_len + extra_len)
    major, _ = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)
    if fortran and len(shape) > 1:
        raise ValueError(f"{info.filename} is in Fortran order; a cache shard is written in C order")
    end = info.header_offset + 30 + name_len + extra_len + info.file_size
    data = f.tell()
    if data + dtype.itemsize * int(np.prod(shape)) != end:
        raise zipfile.BadZipFile(f"{info.filename}: its size does not match its header")
    return data, dtype, tuple(shape), fortran


def _member_crc(f, info: zipfile.ZipInfo) -> int:
    f.seek(info.header_offset + 26)
    name_len, extra_len = struct.unpack("<HH", f.read(4))
    f.seek(info.header_offset + 30 + name_len + extra_len)
    left, crc = info.file_size, 0
    while left:
        chunk = f.read(min(left, 16 << 20))
        if not chunk:
            raise EOFError(f"{info.filename} is truncated")
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
    return crc


class CachedTargets:
    """Every row's teacher vector, read from the memory-mapped shards as float32 a batch at a time.

    ``targets[rows]`` -> (len(rows), d) float32; ``targets[i]`` -> (d,); ``np.asarray(targets)`` loads all
    (small caches only). A cache larger than ``RESIDENT_MAP_BYTES`` is read with one ``pread`` per row
    (:func:`~leaf_hub.files.read_spans`), so random batches over it keep the process's RSS flat.
    """

    def __init__(self, shards: list[_Shard], shard_of: np.ndarray, offset_in: np.ndarray, dimension: int):
        self.shards, self.shard_of, self.offset_in = shards, shard_of, offset_in
        self.shape = (len(shard_of), dimension)
        self.dtype = np.dtype(np.float32)
        stored = shards[0].members["embedding"][1].itemsize if shards else 4
        # A large cache is read row by row with pread: nothing of it is mapped (see leaf_hub/files.py).
        self.reads_positionally = len(shard_of) * dimension * stored > RESIDENT_MAP_BYTES

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            return self[np.asarray([rows])][0]
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        which = self.shard_of[rows]
        where = self.offset_in[rows]
        for k in np.unique(which).tolist():
            sel = which == k
            shard = self.shards[k]
            if self.reads_positionally:
                offset, dtype, shape, _ = shard.members["embedding"]
                row = dtype.itemsize * shape[1]
                raw = read_spans(
                    shard.path, offset + where[sel].astype(np.int64) * row, np.full(sel.sum(), row)
                )
                out[sel] = raw.view(dtype).reshape(-1, shape[1])
            else:
                out[sel] = shard.embedding[where[sel]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        order = np.argsort(self.shard_of, kind="stable")
        bounds = np.searchsorted(self.shard_of[order], np.arange(len(self.shards) + 1))
        for k, shard in enumerate(self.shards):
            rows = order[bounds[k] : bounds[k + 1]]
            out[rows] = shard.embedding[self.offset_in[rows]]
            shard.release()
        return out if dtype is None else out.astype(dtype)

    def release(self) -> None:
        """Drop the mapped pages read so far (re-read from disk on the next access)."""
        for shard in self.shards:
            shard.release()


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()

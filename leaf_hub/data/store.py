"""The text store: every training text read once, de-duplicated, on disk, memory-mapped.

Distilling at the paper's scale (6.4M texts, 10x that for a large run) cannot hold the texts as Python
strings: ingest streams every ``--data`` source in batches into an on-disk store whose memory use does
not grow with the number of texts, and every later stage (teacher cache, tokenization, validation
texts) reads rows back from it.

Why Arrow: it is what ``datasets`` (and so the Hugging Face ecosystem) stores texts in -- variable-length
strings laid out flat (offsets + UTF-8 bytes), read back zero-copy through a memory map. A store's
``part-NNNNN.arrow`` files open with ``datasets.Dataset.from_file`` or ``pyarrow.ipc.open_stream``.

Layout of a store folder (``texts/<key>/`` inside the teacher-cache folder; the key hashes the specs,
the files' sizes and times, the seed and ``max_texts``, so a later run on the same data reuses it)::

    manifest.json      written last: rows, per-source counts, texts_sha256, parts
    part-00000.arrow   Arrow IPC stream: text (string), kind (int8: 0 query, 1 document), source (int16)
    digests.bin        16 bytes per row: BLAKE2b of (kind, text) -- the row's identity
    selection.npy      the rows kept by ``max_texts`` (a sorted sample), when it applied

De-duplication happens on the fly with the 16-byte digests in an open-addressing hash table (a memory-mapped
file, 32 bytes per text at most: 0.2 GB for 6.4M texts where a Python set would take ~3 GB), looked up
and filled a batch at a time with numpy. Ingest commits after every part (``progress.json``, atomically):
a killed ingest resumes after the last committed part and gives the store an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mmap
import os
import random
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from leaf_hub.data.specs import KINDS, Kind, Source, needs_student_tokenizer, parse_specs
from leaf_hub.errors import LeafHubError
from leaf_hub.files import atomic_write_json, atomic_write_path, drop_pages

logger = logging.getLogger(__name__)

STORE_FORMAT = 1
MANIFEST = "manifest.json"
PROGRESS = "progress.json"
DIGEST_BYTES = 16
STAT_KEYS = ("read", "kept", "dropped_empty", "dropped_duplicate", "dropped_max_texts")
# A part is committed when it holds this many rows or bytes of text (bounded memory while ingesting).
PART_ROWS = 65_536
PART_BYTES = 64 << 20


def row_index_dtype(n: int) -> np.dtype:
    """The integer type of row numbers below ``n``: int32 up to 2**31 rows (half the memory at 64M rows)."""
    return np.dtype(np.int32 if n < 2**31 else np.int64)


def shuffled_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """``rng.permutation(n)`` (the same rows in the same order, the same draws from ``rng``) in
    :func:`row_index_dtype`, never holding the int64 array (0.5 GB at 64M rows)."""
    return rng.permutation(np.arange(n, dtype=row_index_dtype(n)))


def text_digests(texts: Sequence[str], kinds: Sequence[str]) -> np.ndarray:
    """(n, 16) uint8: the identity of each (kind, text) row. The teacher cache's shards keep them as proof."""
    out = bytearray(DIGEST_BYTES * len(texts))
    blake = hashlib.blake2b
    for i, (text, kind) in enumerate(zip(texts, kinds, strict=True)):
        out[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES] = blake(
            (kind + "\0" + text).encode("utf-8", "surrogatepass"), digest_size=DIGEST_BYTES
        ).digest()
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(len(texts), DIGEST_BYTES)


def texts_sha256(pairs: Iterator[tuple[Sequence[str], Sequence[str]]]) -> str:
    """SHA-256 of every ``kind\\0text\\0`` in order: one hash for a whole list of texts (a cache's key)."""
    digest = hashlib.sha256()
    for texts, kinds in pairs:
        digest.update("".join(f"{k}\0{t}\0" for t, k in zip(texts, kinds, strict=True)).encode())
    return digest.hexdigest()


class DigestTable:
    """An open-addressing hash set of 16-byte digests in a memory-mapped file, queried a batch at a time.

    Linear probing on the digest's low 64 bits; the table doubles (and is rebuilt in row order) past 70%
    load. Keys passed in are distinct (callers de-duplicate a batch first).
    """

    MAX_LOAD = 0.7

    def __init__(self, path: Path, capacity: int = 1 << 16):
        self.path = path
        self.count = 0
        self._open(capacity)

    def _open(self, capacity: int) -> None:
        self.capacity = capacity
        self.mask = np.uint64(capacity - 1)
        self.path.unlink(missing_ok=True)
        with open(self.path, "wb") as f:
            f.truncate(capacity * DIGEST_BYTES)  # sparse: zero pages cost nothing until touched
        self.table = np.memmap(self.path, dtype=np.uint64, mode="r+", shape=(capacity, 2))

    def close(self) -> None:
        del self.table
        self.path.unlink(missing_ok=True)

    def _probe_start(self, keys: np.ndarray) -> np.ndarray:
        return keys[:, 1] & self.mask

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Which of ``keys`` ((m, 2) uint64) are in the table."""
        found = np.zeros(len(keys), dtype=bool)
        pending = np.arange(len(keys))
        slot = self._probe_start(keys)
        while pending.size:
            s = slot[pending]
            entry = self.table[s]
            match = (entry[:, 0] == keys[pending, 0]) & (entry[:, 1] == keys[pending, 1])
            found[pending[match]] = True
            go_on = ~match & ((entry[:, 0] != 0) | (entry[:, 1] != 0))
            pending = pending[go_on]
            slot[pending] = (slot[pending] + np.uint64(1)) & self.mask
        return found

    def insert(self, keys: np.ndarray) -> None:
        """Add ``keys`` (distinct, none in the table yet), in order."""
        if self.count + len(keys) > self.MAX_LOAD * self.capacity:
            self._grow(self.count + len(keys))
        pending = np.arange(len(keys))
        slot = self._probe_start(keys)
        while pending.size:
            s = slot[pending]
            entry = self.table[s]
            empty = (entry[:, 0] == 0) & (entry[:, 1] == 0)
            claim_slots, first = np.unique(s[empty], return_index=True)
            winners = pending[empty][first]  # the first key aiming at an empty slot takes it
            self.table[claim_slots] = keys[winners]
            taken = np.zeros(len(keys), dtype=bool)
            taken[winners] = True
            pending = pending[~taken[pending]]
            slot[pending] = (slot[pending] + np.uint64(1)) & self.mask
        self.count += len(keys)

    def _grow(self, needed: int) -> None:
        capacity = self.capacity
        while needed > self.MAX_LOAD * capacity:
            capacity *= 2
        old = np.array(self.table[np.any(self.table != 0, axis=1)])
        del self.table
        self._open(capacity)
        self.count = 0
        if len(old):
            self.insert(old)

    @staticmethod
    def keys(digests: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(digests).view(np.uint64).reshape(len(digests), 2)


@dataclass(frozen=True)
class TextRecord:
    """One training text, whether the teacher should embed it as a query or a document, and its source."""

    text: str
    kind: Kind
    source: str


class TextStore:
    """The texts of one set of ``--data`` specs on disk: rows in reading order, read back by memory map.

    ``len(store)`` rows (after ``max_texts``); rows are addressed 0..len-1 by every later stage.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        try:
            self.manifest = json.loads((self.folder / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LeafHubError(
                f"{self.folder} is not a complete text store ({exc}); delete it and rerun to read the data again"
            ) from None
        m = self.manifest
        if m.get("format") != STORE_FORMAT:
            raise LeafHubError(
                f"text store {self.folder} has format {m.get('format')}, not {STORE_FORMAT}; delete it"
            )
        self.stats: dict[str, dict[str, int]] = m["stats"]
        self.sources: list[str] = m["sources"]
        self.texts_sha256: str = m["texts_sha256"]
        stored = int(m["stored_rows"])
        digest_path = self.folder / "digests.bin"
        if not digest_path.is_file() or digest_path.stat().st_size != stored * DIGEST_BYTES:
            raise LeafHubError(
                f"text store {self.folder} is damaged (digests.bin has the wrong size); delete it and rerun"
            )
        self._digests = (
            np.memmap(digest_path, dtype=np.uint8, mode="r", shape=(stored, DIGEST_BYTES))
            if stored
            else np.zeros((0, DIGEST_BYTES), dtype=np.uint8)
        )
        self.selection = np.load(self.folder / "selection.npy") if m.get("selection") else None
        self._maps: list[mmap.mmap] = []
        self._parts: list | None = None
        self._starts = np.zeros(1, dtype=np.int64)
        self._kinds: np.ndarray | None = None

    # -- reading -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    def _store_rows(self, rows: Sequence[int] | np.ndarray | None) -> np.ndarray:
        if rows is None:
            rows = np.arange(len(self))
        rows = np.asarray(rows, dtype=np.int64)
        return rows if self.selection is None else self.selection[rows]

    @property
    def parts(self) -> list:
        """One zero-copy pyarrow Table per part, over its memory map."""
        if self._parts is None:
            import pyarrow as pa

            self._parts = []
            for k, _ in enumerate(self.manifest["parts"]):
                with open(self.folder / f"part-{k:05d}.arrow", "rb") as f:
                    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                self._maps.append(mm)
                self._parts.append(pa.ipc.open_stream(pa.py_buffer(mm)).read_all())
            self._starts = np.concatenate([[0], np.cumsum(self.manifest["parts"])]).astype(np.int64)
        return self._parts

    def release(self) -> None:
        """Drop the mapped pages this process holds (they are re-read from disk when needed again)."""
        for mm in self._maps:
            drop_pages(mm)

    def _take(self, column: str, rows: np.ndarray) -> list:
        """``column`` of stored ``rows``, part by part (Arrow's take on a chunked column copies it whole)."""
        parts = self.parts
        which = np.searchsorted(self._starts, rows, side="right") - 1
        out = np.empty(len(rows), dtype=object)
        for k in np.unique(which).tolist():
            sel = np.flatnonzero(which == k)
            local = rows[sel] - self._starts[k]
            if len(sel) > 1 and np.all(np.diff(local) == 1):
                values = parts[k].column(column).slice(int(local[0]), len(sel))
            else:
                values = parts[k].column(column).take(local)
            out[sel] = values.to_pylist()
        return out.tolist()

    def texts(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        rows = self._store_rows(rows)
        return self._take("text", rows) if len(rows) else []

    def kinds(self) -> np.ndarray:
        """Every row's kind as uint8 (0 query, 1 document), in row order."""
        if self._kinds is None:
            all_kinds = self._column_array("kind", np.uint8)
            self._kinds = all_kinds if self.selection is None else all_kinds[self.selection]
        return self._kinds

    def _column_array(self, column: str, dtype) -> np.ndarray:
        """A numeric column of every stored row as one numpy array."""
        if not self.parts:
            return np.zeros(0, dtype=dtype)
        return np.concatenate([p.column(column).to_numpy().astype(dtype) for p in self.parts])

    def kind_names(self, rows: Sequence[int] | np.ndarray) -> list[Kind]:
        kinds = self.kinds()[np.asarray(rows, dtype=np.int64)]
        return [KINDS[k] for k in kinds.tolist()]

    def digests(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """(m, 16) uint8 identities of ``rows`` (all rows by default)."""
        return np.asarray(self._digests[self._store_rows(rows)])

    def records(self, rows: Sequence[int] | np.ndarray | None = None) -> list[TextRecord]:
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return []
        stored = self._store_rows(rows)
        texts, kinds, sources = (self._take(c, stored) for c in ("text", "kind", "source"))
        return [
            TextRecord(t, KINDS[k], self.sources[s]) for t, k, s in zip(texts, kinds, sources, strict=True)
        ]

    def batches(self, size: int = 8192, start: int = 0) -> Iterator[tuple[int, list[str], list[Kind]]]:
        """(first row, texts, kinds) of consecutive rows from ``start``, read sequentially (bounded memory)."""
        kinds = self.kinds()
        for first in range(start, len(self), size):
            rows = np.arange(first, min(first + size, len(self)))
            yield first, self.texts(rows), [KINDS[k] for k in kinds[rows].tolist()]
            self.release()

    def counts(self) -> dict[str, int]:
        return dict(self.manifest["counts"])

    def totals(self) -> dict[str, int]:
        return {k: sum(s.get(k, 0) for s in self.stats.values()) for k in STAT_KEYS}

    def fingerprint(self) -> str:
        return self.texts_sha256[:16]

    def summary(self) -> str:
        return summary(len(self), self.counts(), self.stats, self.totals())

    def close(self) -> None:
        self._parts = None
        for mm in self._maps:
            with contextlib.suppress(BufferError):  # Arrow data from it is still held; it closes with that
                mm.close()
        self._maps = []


def summary(rows: int, counts: dict[str, int], stats: dict, totals: dict[str, int]) -> str:
    return (
        f"{rows:,} texts ({counts['query']:,} queries, {counts['document']:,} documents) from "
        f"{len(stats)} source(s); dropped {totals['dropped_empty']:,} empty, "
        f"{totals['dropped_duplicate']:,} duplicate, {totals['dropped_max_texts']:,} over max_texts"
    )


# --------------------------------------------------------------------------------------------------
# Ingest.
# --------------------------------------------------------------------------------------------------


def iter_source(source: Source, student_tokenizer: Any, seed: int) -> Iterator[tuple[list[Any], list[Kind]]]:
    """(texts, kinds) batches of one source, ``limit`` applied."""
    from leaf_hub.data import generated, readers
    from leaf_hub.data.hub import read_hf
    from leaf_hub.data.readers import read_file, read_lines

    if source.type == "file":
        left = source.limit
        for texts, kinds in read_file(source):
            if left is not None and len(texts) >= left:
                yield texts[:left], kinds[:left]
                return
            if left is not None:
                left -= len(texts)
            yield texts, kinds
    elif source.type == "hf":
        yield from read_hf(source, seed)
    else:
        if source.type == "words" and source.target:  # words:PATH, sampled like a generated set
            lines = read_lines(Path(source.target), source.compressed)
            items = [(line, source.kind) for line in lines]
            if source.limit is not None and source.limit < len(items):
                keep = sorted(random.Random(seed).sample(range(len(items)), source.limit))
                items = [items[i] for i in keep]
        else:
            items = generated.generated_items(source.type, source.options, student_tokenizer, seed)
        for start in range(0, len(items), readers.BATCH_ROWS):
            chunk = items[start : start + readers.BATCH_ROWS]
            yield [t for t, _ in chunk], [k for _, k in chunk]


def _tokenizer_identity(tokenizer: Any) -> str:
    if tokenizer is None:
        return ""
    inner = getattr(tokenizer, "tokenizer", None)
    if not hasattr(tokenizer, "get_vocab") and inner is not None:
        tokenizer = inner
    vocab = sorted(tokenizer.get_vocab().items()) if hasattr(tokenizer, "get_vocab") else []
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]


def store_key(sources: list[Source], *, seed: int, max_texts: int | None, student_tokenizer: Any) -> str:
    """What a store depends on: the sources (files by path, size and time), the seed and ``max_texts``."""
    described = []
    for s in sources:
        entry: dict[str, Any] = {"spec": s.spec, "label": s.label, "type": s.type}
        if s.target and s.type in ("file", "words"):
            if not Path(s.target).is_file():
                raise LeafHubError(f"data file {s.target!r} does not exist; check the path")
            stat = Path(s.target).stat()
            entry["file"] = [str(Path(s.target).resolve()), stat.st_size, stat.st_mtime_ns]
        if s.type in ("builtin", "words") and not s.target:
            entry["python"] = sys.version
        if s.type == "bert-tokens":
            entry["tokenizer"] = s.options.get("tokenizer") or _tokenizer_identity(student_tokenizer)
        described.append(entry)
    payload = {"format": STORE_FORMAT, "sources": described, "seed": seed, "max_texts": max_texts}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def ingest(
    specs: list[str] | str,
    root: str | os.PathLike,
    *,
    student_tokenizer: Any = None,
    seed: int = 0,
    max_texts: int | None = None,
) -> TextStore:
    """Read every spec into a text store under ``root`` (reusing a complete one for the same data).

    Empty texts (after stripping whitespace) and repeats of the same ``(kind, text)`` (the first occurrence
    wins) are dropped and counted per source; ``max_texts`` keeps a random sample (by ``seed``) of that
    many texts in their order. Raises :class:`LeafHubError` for any bad input, before reading anything
    when a source needs the Hub and the Hub is unreachable.
    """
    from leaf_hub.data.hub import require_hub

    if max_texts is not None and max_texts <= 0:
        raise LeafHubError(f"max_texts={max_texts} must be a positive number of texts")
    sources = parse_specs(specs)
    require_hub(sources)
    if student_tokenizer is None and needs_student_tokenizer(sources):
        raise LeafHubError(
            "the bert-tokens data set needs the student's tokenizer, and none was given; pass the student "
            "(or use bert-tokens::tokenizer=NAME_OR_FOLDER)"
        )
    root = Path(root)
    key = store_key(sources, seed=seed, max_texts=max_texts, student_tokenizer=student_tokenizer)
    folder = root / key
    if (folder / MANIFEST).is_file():
        store = TextStore(folder)
        logger.info("training data: %s (read before, from %s)", store.summary(), folder)
        return store
    folder.mkdir(parents=True, exist_ok=True)
    _Ingest(folder, sources, student_tokenizer, seed, max_texts).run()
    for other in root.iterdir():  # one store per cache folder: an older one belongs to data no longer used
        if other.is_dir() and other.name != key and len(other.name) == 16:
            shutil.rmtree(other, ignore_errors=True)
    store = TextStore(folder)
    logger.info("training data: %s", store.summary())
    return store


class _Ingest:
    def __init__(self, folder: Path, sources: list[Source], tokenizer: Any, seed: int, max_texts: int | None):
        self.folder, self.sources, self.tokenizer = folder, sources, tokenizer
        self.seed, self.max_texts = seed, max_texts
        self.progress: dict[str, Any] = {
            "format": STORE_FORMAT,
            "source": 0,  # the source being read
            "read": 0,  # rows of it read and committed
            "rows": 0,  # rows stored
            "parts": [],  # rows per part
            "stats": {},
        }
        self.pending: list[tuple[list[str], list[int], list[int], np.ndarray]] = []
        self.pending_rows = self.pending_bytes = 0

    # -- commit / resume ---------------------------------------------------------------------------

    def _resume(self) -> None:
        path = self.folder / PROGRESS
        saved = None
        if path.is_file():
            try:
                saved = json.loads(path.read_text())
            except json.JSONDecodeError:
                saved = None
        if (
            saved
            and saved.get("format") == STORE_FORMAT
            and saved.get("labels") == [s.label for s in self.sources]
        ):
            self.progress = saved
        for part in self.folder.glob("part-*.arrow"):
            if int(part.stem.split("-")[1]) >= len(self.progress["parts"]):
                part.unlink()
        digests = self.folder / "digests.bin"
        with open(digests, "ab") as f:
            f.truncate(self.progress["rows"] * DIGEST_BYTES)
        self.seen = DigestTable(self.folder / "seen.table")
        if self.progress["rows"]:
            logger.info(
                "text store %s: resuming after %d committed rows (source %d of %d)",
                self.folder,
                self.progress["rows"],
                self.progress["source"] + 1,
                len(self.sources),
            )
            stored = np.memmap(digests, dtype=np.uint8, mode="r", shape=(self.progress["rows"], DIGEST_BYTES))
            step = 1 << 20
            for start in range(0, len(stored), step):
                self.seen.insert(DigestTable.keys(np.asarray(stored[start : start + step])))
            del stored

    def _commit(self, source_index: int, read: int) -> None:
        """Write the pending rows as one part, then record how far reading got (the commit point)."""
        if self.pending:
            import pyarrow as pa

            texts = [t for p in self.pending for t in p[0]]
            kinds = np.concatenate([np.asarray(p[1], dtype=np.int8) for p in self.pending])
            srcs = np.concatenate([np.asarray(p[2], dtype=np.int16) for p in self.pending])
            digests = np.concatenate([p[3] for p in self.pending])
            table = pa.table({"text": pa.array(texts, type=pa.string()), "kind": kinds, "source": srcs})
            k = len(self.progress["parts"])

            def write(tmp: str) -> None:
                with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                    writer.write_table(table)

            atomic_write_path(self.folder / f"part-{k:05d}.arrow", write)
            with open(self.folder / "digests.bin", "r+b") as f:
                f.seek(self.progress["rows"] * DIGEST_BYTES)
                f.write(digests.tobytes())
                f.flush()
                os.fsync(f.fileno())
            self.progress["parts"].append(len(texts))
            self.progress["rows"] += len(texts)
            self.pending, self.pending_rows, self.pending_bytes = [], 0, 0
        self.progress["source"], self.progress["read"] = source_index, read
        self.progress["labels"] = [s.label for s in self.sources]
        atomic_write_json(self.folder / PROGRESS, self.progress)

    # -- reading -----------------------------------------------------------------------------------

    def run(self) -> None:
        from tqdm.auto import tqdm

        self._resume()
        stats = self.progress["stats"]
        for index, source in enumerate(self.sources):
            if index < self.progress["source"]:
                continue
            counts = stats.setdefault(source.label, dict.fromkeys(STAT_KEYS, 0))
            skip = self.progress["read"] if index == self.progress["source"] else 0
            total = source.limit if source.type in ("file", "hf") else None
            with tqdm(
                total=total, initial=skip, desc=f"reading {source.title or source.label}"[:60], unit="rows",
                unit_scale=True, disable=None, leave=False,
            ) as bar:  # fmt: skip
                for texts, kinds in iter_source(source, self.tokenizer, self.seed):
                    if skip:  # committed before a kill: read again, not stored again
                        drop = min(skip, len(texts))
                        texts, kinds, skip = texts[drop:], kinds[drop:], skip - drop
                        if not texts:
                            continue
                    self._add(index, texts, kinds, counts)
                    bar.update(len(texts))
                    if self.pending_rows >= PART_ROWS or self.pending_bytes >= PART_BYTES:
                        self._commit(index, counts["read"])
            if counts["read"] - counts["dropped_empty"] == 0:
                what = "empty" if counts["read"] == 0 else f"only empty texts ({counts['read']:,} rows)"
                raise LeafHubError(
                    f"data source {source.spec!r} has no texts: it is {what}; check the file or column"
                )
            self._commit(index + 1, 0)
            logger.info(
                "data %s%s: read %d, kept %d, dropped %d empty, %d duplicate",
                source.label,
                f" ({source.title})" if source.title else "",
                counts["read"],
                counts["kept"],
                counts["dropped_empty"],
                counts["dropped_duplicate"],
            )
        self._finish()

    def _add(self, index: int, raw: list[Any], kinds: list[Kind], counts: dict[str, int]) -> None:
        counts["read"] += len(raw)
        texts, kind_ids = [], []
        for text, kind in zip(raw, kinds, strict=True):
            text = text.strip() if isinstance(text, str) else ""
            if text:
                texts.append(text)
                kind_ids.append(0 if kind == "query" else 1)
        counts["dropped_empty"] += len(raw) - len(texts)
        if not texts:
            return
        digests = text_digests(texts, [KINDS[k] for k in kind_ids])
        keys = DigestTable.keys(digests)
        _, first = np.unique(keys.view(np.dtype((np.void, DIGEST_BYTES))).ravel(), return_index=True)
        first.sort()  # the first occurrence of each text in this batch, in reading order
        new = first[~self.seen.find(keys[first])]
        self.seen.insert(keys[new])
        counts["kept"] += len(new)
        counts["dropped_duplicate"] += len(texts) - len(new)
        if len(new):
            kept = [texts[i] for i in new.tolist()]
            self.pending.append((kept, [kind_ids[i] for i in new.tolist()], [index] * len(new), digests[new]))
            self.pending_rows += len(new)
            self.pending_bytes += sum(len(t) for t in kept)

    def _finish(self) -> None:
        self.seen.close()
        progress = self.progress
        stats, stored = progress["stats"], progress["rows"]
        labels = [s.label for s in self.sources]
        manifest: dict[str, Any] = {
            "format": STORE_FORMAT,
            "stored_rows": stored,
            "rows": stored,
            "parts": progress["parts"],
            "sources": labels,
            "titles": {s.label: s.title for s in self.sources if s.title},
            "specs": [s.spec for s in self.sources],
            "seed": self.seed,
            "max_texts": self.max_texts,
            "stats": stats,
            "selection": False,
        }
        store = _PartialStore(self.folder, manifest)  # reads the parts before the manifest exists
        if self.max_texts is not None and stored > self.max_texts:
            keep = np.asarray(
                sorted(random.Random(self.seed).sample(range(stored), self.max_texts)), dtype=np.int64
            )
            dropped = np.ones(stored, dtype=bool)
            dropped[keep] = False
            sources = store._column_array("source", np.int64)
            per_source = np.bincount(sources[dropped], minlength=len(labels))
            for label, n in zip(labels, per_source.tolist(), strict=True):
                stats[label]["kept"] -= n
                stats[label]["dropped_max_texts"] += n
            np.save(self.folder / "selection.npy", keep)
            manifest["selection"] = True
            manifest["rows"] = len(keep)
            store = _PartialStore(self.folder, manifest)
        kinds = store.kinds()
        manifest["counts"] = {"query": int((kinds == 0).sum()), "document": int((kinds == 1).sum())}
        manifest["texts_sha256"] = texts_sha256((texts, kinds_) for _, texts, kinds_ in store.batches())
        store.close()
        atomic_write_json(self.folder / MANIFEST, manifest)
        (self.folder / PROGRESS).unlink(missing_ok=True)


class _PartialStore(TextStore):
    """A store whose manifest is not written yet (the finishing passes of ingest read through it)."""

    def __init__(self, folder: Path, manifest: dict[str, Any]):
        self.folder = folder
        self.manifest = {**manifest, "texts_sha256": "", "counts": {"query": 0, "document": 0}}
        self.stats, self.sources, self.texts_sha256 = manifest["stats"], manifest["sources"], ""
        self._digests = None  # not read by the finishing passes
        self.selection = np.load(folder / "selection.npy") if manifest.get("selection") else None
        self._maps, self._parts, self._kinds = [], None, None
        self._starts = np.zeros(1, dtype=np.int64)

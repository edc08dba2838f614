"""The token store: every text's token ids as the leaf sees them, computed once, flat on disk.

Training reads each text's ids many times (every epoch); tokenizing them again each time, or keeping
them as Python lists (41 bytes per token: 60 GB for the paper's mix), does not scale. The leaf's tokenizer
runs once over the text store, in chunks (the Rust tokenizer spreads a chunk over the cores), with the
teacher's prompt for each text's kind put in front, truncated to the leaf's length; the ids land in one
flat file, like the pre-tokenized corpora of nanoGPT and Megatron (``.bin`` + index)::

    manifest.json   written last: what the ids depend on (texts, tokenizer, prompts, length), counts, CRCs
    ids.bin         every row's ids back to back, in the smallest integer type the vocabulary allows
    offsets.bin     int64, rows + 1 entries: row i is ids[offsets[i]:offsets[i + 1]]
    flags.bin       uint8 per row: 1 = truncated to the leaf's length, 2 = unreadable (see below)
    checked.json    the files whose CRCs were checked, so later opens check only what changed since

The folder is ``tokens/<key>/`` in the teacher-cache folder; the key hashes the texts, the tokenizer, the
prompts and the length, so a rerun (``resume``) or a later run on the same texts and student reuses it.
Building commits after every chunk (a killed build resumes where it stopped); a store whose files do not
match their manifest (truncated, flipped bytes) or whose manifest belongs to other texts or another
tokenizer is refused, like a foreign teacher cache.

Two facts about the texts come out of tokenizing, both counted in the manifest: how many texts were
longer than the leaf reads (and cut to its length), and which texts are *unreadable* to the leaf -- texts
of only emoji or zero-width characters give nothing but ``[UNK]`` (or no token at all), so they all look
the same to the leaf and would teach it nothing but noise; training leaves them out.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from leaf_hub.data.specs import KINDS
from leaf_hub.data.store import row_index_dtype
from leaf_hub.errors import LeafHubError
from leaf_hub.files import (
    CHECKED_RECORD,
    RESIDENT_MAP_BYTES,
    CheckedFiles,
    atomic_write_json,
    drop_pages,
    map_array,
    read_spans,
)

logger = logging.getLogger(__name__)

TOKENS_FORMAT = 1
MANIFEST = "manifest.json"
PROGRESS = "progress.json"
CHECKED = CHECKED_RECORD  # files whose CRCs were checked, by size, mtime and inode (see CheckedFiles)
TRUNCATED, UNREADABLE = 1, 2
FLAG_SCAN_ROWS = 1 << 24  # flags read this many at a time: no int64 array of every row, even for a moment
CHUNK_ROWS = 8192  # texts per tokenizer call: the Rust tokenizer spreads them over the cores
_FILES = ("ids.bin", "offsets.bin", "flags.bin")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything that decides a tokenizer's ids (vocabulary, normalizer, pre/post-processor)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise LeafHubError(
            f"the leaf's tokenizer ({type(tokenizer).__name__}) is not a fast (Rust) tokenizer"
        )
    return hashlib.sha256(backend.to_str().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TokenFacts:
    """What a token store was built from; two stores with the same facts hold the same ids."""

    texts_sha256: str
    rows: int
    tokenizer: str
    prompts: dict[str, str]
    max_length: int
    format: int = TOKENS_FORMAT

    def key(self) -> str:
        payload = json.dumps(self.__dict__, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class TokenReport:
    """What tokenizing found: texts cut to the leaf's length, texts the leaf cannot read (by kind)."""

    max_length: int
    truncated: dict[str, int]
    unreadable: dict[str, int]
    longest_tokens: int  # the longest text before truncation, in tokens

    @property
    def truncated_total(self) -> int:
        return sum(self.truncated.values())

    @property
    def unreadable_total(self) -> int:
        return sum(self.unreadable.values())

    def describe(self) -> str:
        return (
            f"{self.truncated_total:,} texts longer than {self.max_length} tokens were cut to their first "
            f"{self.max_length} (the longest had {self.longest_tokens:,}); {self.unreadable_total:,} texts "
            "read as nothing but [UNK] or no token at all (e.g. only emoji or zero-width characters) and "
            "are left out of training"
        )


class TokenStore:
    """Flat token ids of every row, memory-mapped; ``lengths``, ``row(i)`` and vectorised ``collate``."""

    def __init__(self, folder: str | os.PathLike, want: TokenFacts | None = None, verify: bool = True):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        try:
            self.manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LeafHubError(
                f"token store {self.folder} has no readable {MANIFEST} ({exc}); delete the folder to rebuild it"
            ) from None
        m = self.manifest
        facts = m.get("facts") or {}
        if want is not None and facts != want.__dict__:
            diff = sorted(k for k in want.__dict__ if facts.get(k) != want.__dict__[k])
            raise LeafHubError(
                f"token store {self.folder} was built for other {', '.join(diff) or 'inputs'} than this run's; "
                "delete the folder to rebuild it"
            )
        self.rows = int(m["rows"])
        self.dtype = np.dtype(m["dtype"])
        sizes = {"ids.bin": int(m["tokens"]) * self.dtype.itemsize, "offsets.bin": (self.rows + 1) * 8}
        sizes["flags.bin"] = self.rows
        checks = CheckedFiles(self.folder / CHECKED)
        for name, size in sizes.items():
            file = self.folder / name
            if not file.is_file() or file.stat().st_size != size:
                raise LeafHubError(
                    f"token store {self.folder} is damaged: {name} is "
                    f"{file.stat().st_size if file.is_file() else 'missing'} bytes, not {size}; delete the "
                    "folder to rebuild it (the texts and teacher vectors are kept)"
                )
            crc = m["crc32"][name]
            if verify and checks.needs_check(file, crc):
                if _crc32(file) != crc:
                    raise LeafHubError(
                        f"token store {self.folder} is damaged: {name} does not match its checksum; delete "
                        "the folder to rebuild it (the texts and teacher vectors are kept)"
                    )
                checks.checked(file, crc)
        checks.save()
        self.ids = _map(self.folder / "ids.bin", self.dtype, int(m["tokens"]))
        self.offsets = _map(self.folder / "offsets.bin", np.dtype(np.int64), self.rows + 1)
        self.flags = _map(self.folder / "flags.bin", np.dtype(np.uint8), self.rows)
        self.lengths = np.diff(self.offsets).astype(np.int32)
        drop_pages(self.offsets)  # read whole once: kept as lengths, not as mapped pages
        self.report = TokenReport(**m["report"])
        self.pad_token_id = int(m["pad_token_id"])

    def __len__(self) -> int:
        return self.rows

    def row(self, i: int) -> list[int]:
        return self.take([i])[0].tolist()

    def usable_rows(self) -> np.ndarray:
        """Rows training may use (the unreadable ones left out)."""
        dtype, step = row_index_dtype(self.rows), FLAG_SCAN_ROWS
        usable = np.concatenate(
            [
                start + np.flatnonzero((self.flags[start : start + step] & UNREADABLE) == 0).astype(dtype)
                for start in range(0, self.rows, step)
            ]
            or [np.empty(0, dtype)]
        )
        drop_pages(self.flags)
        return usable

    @property
    def reads_positionally(self) -> bool:
        """Whether rows are read with ``pread`` rather than through the maps (ids over ``RESIDENT_MAP_BYTES``)."""
        return self.ids.nbytes > RESIDENT_MAP_BYTES

    def take(self, rows: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ids of ``rows`` back to back, and where each starts (``len(rows) + 1`` offsets into them)."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows].astype(np.int64)
        local = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        if self.reads_positionally:  # nothing of a large store is mapped into the process (see files.py)
            starts = read_spans(self.folder / "offsets.bin", rows * 8, np.full(len(rows), 8)).view(np.int64)
            size = self.dtype.itemsize
            flat = read_spans(self.folder / "ids.bin", starts * size, lengths * size).view(self.dtype)
        else:
            starts = np.asarray(self.offsets[rows], dtype=np.int64)
            flat = np.asarray(self.ids[np.repeat(starts - local[:-1], lengths) + np.arange(local[-1])])
        return flat, local

    def release(self) -> None:
        """Unmap every page this process holds of the store (they stay in the page cache)."""
        for array in (self.ids, self.offsets, self.flags):
            drop_pages(array)


def _map(path: Path, dtype: np.dtype, count: int) -> np.ndarray:
    return map_array(path, dtype, (count,))


def _crc32(path: Path, block: int = 16 << 20) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(block):
            crc = zlib.crc32(chunk, crc)
    return crc


def collate_flat(
    ids: np.ndarray, offsets: np.ndarray, rows: Sequence[int] | np.ndarray, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a flat id array padded to their longest: (input_ids int64, attention_mask int64), no row loop."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.asarray(offsets[rows], dtype=np.int64)
    lengths = np.asarray(offsets[rows + 1], dtype=np.int64) - starts
    width = int(lengths.max()) if len(rows) else 0
    cols = np.arange(width, dtype=np.int64)
    mask = cols[None, :] < lengths[:, None]
    index = np.where(mask, starts[:, None] + cols[None, :], 0)
    out = np.where(mask, np.asarray(ids[index.ravel()]).reshape(index.shape), pad_id).astype(np.int64)
    return out, mask.astype(np.int64)


def _informative_ids(tokenizer: Any) -> tuple[list[int], int]:
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    if tokenizer.unk_token_id is not None:
        special.add(tokenizer.unk_token_id)
    return sorted(special), len(tokenizer)


def build_tokens(
    texts,
    tokenizer: Any,
    prompts: dict[str, str],
    max_length: int,
    root: str | os.PathLike,
) -> TokenStore:
    """Tokenize every row of ``texts`` (a :class:`~leaf_hub.data.store.TextStore`) into a token store under
    ``root``, or open the complete one built before for the same texts, tokenizer, prompts and length."""
    from tqdm.auto import tqdm

    facts = TokenFacts(
        texts_sha256=texts.texts_sha256,
        rows=len(texts),
        tokenizer=tokenizer_fingerprint(tokenizer),
        prompts={k: v for k, v in sorted(prompts.items()) if v},
        max_length=int(max_length),
    )
    folder = Path(root) / facts.key()
    if (folder / MANIFEST).is_file():
        store = TokenStore(folder, facts)
        logger.info("token ids of %d texts: %s (built before)", len(store), folder)
        return store
    folder.mkdir(parents=True, exist_ok=True)
    special, vocab = _informative_ids(tokenizer)
    dtype = np.dtype(np.uint16 if vocab <= 1 << 16 else np.uint32)
    backend = _truncating_backend(tokenizer, max_length)
    added = backend.num_special_tokens_to_add(is_pair=False)
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    # Tokens of each kind's prompt alone that carry meaning: a text adding none beyond them is unreadable.
    baseline = {}
    for kind in KINDS:
        ids = np.asarray(backend.encode(facts.prompts.get(kind, "")).ids)
        baseline[kind] = int((~np.isin(ids, special)).sum())

    progress = _resume(folder, facts)
    counts = progress["counts"]
    bar = tqdm(total=len(texts), initial=progress["rows"], desc="tokenizing", unit="text", unit_scale=True)
    for _, batch, kinds in texts.batches(CHUNK_ROWS, start=progress["rows"]):
        encodings = encode(  # encode_batch_fast: no character offsets, which nothing here needs
            [facts.prompts.get(k, "") + t for t, k in zip(batch, kinds, strict=True)]
        )
        lists = [e.ids for e in encodings]
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        flat = np.fromiter(itertools.chain.from_iterable(lists), dtype=dtype, count=int(lengths.sum()))
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(lists))
        full = lengths + np.fromiter(  # each overflowing piece carries its own special tokens
            (sum(len(o.ids) - added for o in e.overflowing) for e in encodings),
            dtype=np.int64,
            count=len(lists),
        )
        meaningful = np.concatenate([[0], np.cumsum(~np.isin(flat, special))])
        ends = np.cumsum(lengths)
        per_row = meaningful[ends] - meaningful[ends - lengths]
        kind_ids = np.asarray([KINDS.index(k) for k in kinds])
        unreadable = per_row <= np.asarray([baseline[k] for k in KINDS])[kind_ids]
        flags = (truncated * TRUNCATED + unreadable * UNREADABLE).astype(np.uint8)
        for k, kind in enumerate(KINDS):
            counts["truncated"][kind] += int((truncated & (kind_ids == k)).sum())
            counts["unreadable"][kind] += int((unreadable & (kind_ids == k)).sum())
        counts["longest_tokens"] = max(counts["longest_tokens"], int(full.max()) if len(full) else 0)
        _append(folder, progress, flat, progress["tokens"] + ends, flags)
        bar.update(len(batch))
    bar.close()
    return _finish(folder, facts, progress, dtype, tokenizer.pad_token_id or 0)


def _truncating_backend(tokenizer: Any, max_length: int):
    """A copy of the leaf's Rust tokenizer that truncates as ``tokenizer(..., truncation=True)`` does."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.enable_truncation(
        max_length=int(max_length), direction=getattr(tokenizer, "truncation_side", "right")
    )
    backend.no_padding()
    return backend


def _resume(folder: Path, facts: TokenFacts) -> dict[str, Any]:
    """The committed progress of an interrupted build (files cut back to it), or a fresh start."""
    counts = {
        "truncated": dict.fromkeys(KINDS, 0),
        "unreadable": dict.fromkeys(KINDS, 0),
        "longest_tokens": 0,
    }
    progress: dict[str, Any] = {
        "facts": facts.__dict__,
        "rows": 0,
        "tokens": 0,
        "ids_bytes": 0,
        "counts": counts,
    }
    path = folder / PROGRESS
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError:
            saved = {}
        if saved.get("facts") == facts.__dict__:
            progress = saved
            logger.info("token store %s: resuming after %d rows", folder, saved["rows"])
    sizes = {
        "ids.bin": progress["ids_bytes"],
        "offsets.bin": (progress["rows"] + 1) * 8,
        "flags.bin": progress["rows"],
    }
    for name, size in sizes.items():  # cut anything written after the last commit
        with open(folder / name, "ab") as f:
            f.truncate(size)
    if progress["rows"] == 0:
        with open(folder / "offsets.bin", "wb") as f:
            f.write(np.zeros(1, dtype=np.int64).tobytes())
    return progress


def _append(
    folder: Path, progress: dict[str, Any], flat: np.ndarray, ends: np.ndarray, flags: np.ndarray
) -> None:
    """Append one chunk to the three files, sync them, then commit it in progress.json."""
    for name, data in (("ids.bin", flat), ("offsets.bin", ends.astype(np.int64)), ("flags.bin", flags)):
        with open(folder / name, "ab") as f:
            f.write(data.tobytes())
            f.flush()
            os.fsync(f.fileno())
    progress["rows"] += len(flags)
    progress["tokens"] += len(flat)
    progress["ids_bytes"] = progress["tokens"] * flat.dtype.itemsize
    atomic_write_json(folder / PROGRESS, progress)


def _finish(
    folder: Path, facts: TokenFacts, progress: dict[str, Any], dtype: np.dtype, pad: int
) -> TokenStore:
    counts = progress["counts"]
    report = TokenReport(
        max_length=facts.max_length,
        truncated=counts["truncated"],
        unreadable=counts["unreadable"],
        longest_tokens=counts["longest_tokens"],
    )
    manifest = {
        "format": TOKENS_FORMAT,
        "facts": facts.__dict__,
        "rows": progress["rows"],
        "tokens": progress["tokens"],
        "dtype": dtype.name,
        "pad_token_id": int(pad),
        "report": report.__dict__,
        "crc32": {name: _crc32(folder / name) for name in _FILES},
    }
    atomic_write_json(folder / MANIFEST, manifest)
    (folder / PROGRESS).unlink(missing_ok=True)
    logger.info(
        "token ids of %d texts (%d tokens, %s) in %s; %s",
        progress["rows"],
        progress["tokens"],
        dtype.name,
        folder,
        report.describe(),
    )
    return TokenStore(folder, facts, verify=False)

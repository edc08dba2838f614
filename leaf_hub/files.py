"""Files: atomic writes (readers see the old file or the complete new one, never a partial one), JSON reads, and
memory maps that hand their pages back.

Everything leaf-hub writes that another run or user may read (caches, reports, cards, ONNX files) goes
through here: the content is written to a temporary name in the same folder, flushed to disk, given the
permissions a normally created file would have (``mkstemp`` makes owner-only files), then renamed.
"""

from __future__ import annotations

import json
import mmap
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def finish_temp(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move a completely written temporary file into place with the usual permissions."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def atomic_write_path(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """``write(tmp_path)`` fills a temporary file (for writers that take a file name), then it is moved to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        finish_temp(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """``write(f)`` fills a binary file object, which is synced and then moved to ``path``."""

    def fill(tmp: str) -> None:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

    atomic_write_path(path, fill)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, sort_keys: bool = False) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


def read_json(path: str | os.PathLike) -> Any | None:
    """A JSON file's content; None when the file does not exist.

    Raises :class:`~leaf_hub.errors.LeafHubError` naming the file when it cannot be read or is not JSON
    (a file cut short by a kill is never taken for an empty one).
    """
    from leaf_hub.errors import LeafHubError

    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LeafHubError(f"{path} is not readable JSON ({exc}); rewrite it or delete it") from None


# -- memory maps ---------------------------------------------------------------------------------------

# A read fault on a mapped file maps more than the page asked for: fault-around maps up to 64 KB of cached
# pages, and a large page-cache folio (up to 2 MB, a PMD) is mapped whole. Random 2 KB reads over a mapped
# store therefore put up to 2 MB each into the process's RSS until the whole file is resident (measured: a
# 2 GB file fully resident after 4,000 random batches of 32 rows). Unmapping the 2 MB-aligned windows
# around what was read keeps RSS flat; the pages stay in the page cache, so the next read is a minor fault.
PAGE_WINDOW = 2 << 20

# Stores up to this size stay mapped as read: the process holds at most their size. Larger ones hand each
# read's pages back at once (a minor fault per row the next time, ~4x slower reads, and a flat RSS).
RESIDENT_MAP_BYTES = 1 << 30


def map_array(path: str | os.PathLike, dtype: Any, shape: tuple[int, ...], offset: int = 0) -> np.ndarray:
    """A read-only memory map of ``shape`` items of ``dtype`` at ``offset`` bytes into ``path``.

    An empty shape gives an empty in-memory array (a zero-length file cannot be mapped).
    """
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def drop_pages(array: np.ndarray, first: np.ndarray | None = None, last: np.ndarray | None = None) -> None:
    """Unmap from this process the pages of ``array`` (a :func:`map_array`) that hold items ``first..last``.

    ``first`` and ``last`` are arrays of item indices along the first axis (``last`` exclusive, default
    ``first + 1``); without them the whole map is dropped. Only this process's mapping changes: the file's
    pages stay in the page cache (shared with other processes mapping it), and a later read maps them
    again. A no-op for in-memory arrays and where ``madvise`` is missing.
    """
    mm = getattr(array, "_mmap", None)
    if mm is None or not hasattr(mmap, "MADV_DONTNEED") or mm.closed:
        return
    if first is None:
        mm.madvise(mmap.MADV_DONTNEED)
        return
    first = np.asarray(first, dtype=np.int64)
    if not len(first):
        return
    last = first + 1 if last is None else np.asarray(last, dtype=np.int64)
    map_start = array.offset - array.offset % mmap.ALLOCATIONGRANULARITY  # the file offset the map begins at
    stride = array.strides[0] if array.ndim else array.itemsize
    begin = array.offset + first * stride  # file offsets of the items' first and last bytes
    end = array.offset + np.maximum(last, first + 1) * stride - 1
    low, high = begin // PAGE_WINDOW, end // PAGE_WINDOW
    count = high - low + 1  # windows each item spans (one or two for a row or a text's ids)
    step = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    windows = np.unique(np.repeat(low, count) + step)
    size = len(mm)
    for w in windows.tolist():
        start = max(w * PAGE_WINDOW - map_start, 0)
        stop = min((w + 1) * PAGE_WINDOW - map_start, size)
        if stop > start:
            mm.madvise(mmap.MADV_DONTNEED, start, stop - start)


# -- files checked in full -----------------------------------------------------------------------------


class CheckedFiles:
    """Which files of a folder were checked in full (their checksums), remembered by size, mtime and inode.

    Checking every checksum of a paper-scale store reads all of it (~4 s per million texts: minutes at 64M)
    at every start. As git's index does, a file whose size, modification time and inode are unchanged since
    it was checked is not read again; a rewritten, truncated or replaced file is. ``tag`` ties the record to
    what the file was checked against (e.g. its expected CRC), so a new manifest checks again. A file
    modified within the last ``RACY_SECONDS`` is not recorded (a write in the same clock tick could leave
    its mtime unchanged), so it is read again next time.
    """

    RACY_SECONDS = 2.0

    def __init__(self, record: str | os.PathLike):
        self.record = Path(record)
        try:
            loaded = json.loads(self.record.read_text())
            self.stamps: dict[str, list] = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self.stamps = {}
        self._changed = False

    @staticmethod
    def _stamp(path: Path, tag: Any) -> list:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns, st.st_ino, tag]

    def needs_check(self, path: str | os.PathLike, tag: Any = None) -> bool:
        path = Path(path)
        try:
            return self.stamps.get(path.name) != self._stamp(path, tag)
        except OSError:
            return True

    def checked(self, path: str | os.PathLike, tag: Any = None) -> None:
        """Record that ``path`` passed its check (unless it was modified too recently to trust its mtime)."""
        import time

        path = Path(path)
        stamp = self._stamp(path, tag)
        if stamp[1] > (time.time() - self.RACY_SECONDS) * 1e9 or self.stamps.get(path.name) == stamp:
            return
        self.stamps[path.name] = stamp
        self._changed = True

    def save(self) -> None:
        if self._changed:
            atomic_write_json(self.record, self.stamps, sort_keys=True)
            self._changed = False

"""Files: atomic writes (readers see the old file or the complete new one, never a partial one), JSON reads,
memory maps and positional reads of large stores, and a record of the files whose checksums were checked.

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


# -- memory maps and positional reads -------------------------------------------------------------------

# A read fault on a mapped file maps more than the page asked for: fault-around maps up to 64 KB of cached
# pages, and a large page-cache folio (up to 2 MB, a PMD) is mapped whole. Random 2 KB reads through a map
# of a large store therefore put up to 2 MB each into the process's RSS until the whole file is resident
# (measured: a 2 GB file fully resident after 4,000 random batches of 32 rows), and unmapping after each
# read makes every read a fault that maps a folio again (~7x slower than a positional read, measured on the
# 12 GB cache of 6.4M texts). Stores larger than this are read row by row with ``pread`` (:func:`read_spans`):
# the same page cache, shared by every process, and nothing mapped. Smaller ones stay mapped as read: they
# cost at most their size, and a read from a resident map is the fastest there is.
RESIDENT_MAP_BYTES = 1 << 30


def map_array(path: str | os.PathLike, dtype: Any, shape: tuple[int, ...], offset: int = 0) -> np.ndarray:
    """A read-only memory map of ``shape`` items of ``dtype`` at ``offset`` bytes into ``path``.

    An empty shape gives an empty in-memory array (a zero-length file cannot be mapped).
    """
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def drop_pages(array: np.ndarray | mmap.mmap) -> None:
    """Unmap from this process every page of ``array`` (a :func:`map_array`, or an ``mmap``) it has read.

    Only this process's mapping changes: the pages stay in the page cache, and a later read maps them
    again. A no-op for in-memory arrays and where ``madvise`` is missing.
    """
    mm = array if isinstance(array, mmap.mmap) else getattr(array, "_mmap", None)
    if mm is not None and hasattr(mmap, "MADV_DONTNEED") and not mm.closed:
        mm.madvise(mmap.MADV_DONTNEED)


def read_spans(path: str | os.PathLike, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The bytes ``[starts[i], starts[i] + sizes[i])`` of ``path``, back to back, as a uint8 array.

    One positional read (``pread``) per span, through the page cache, with nothing mapped into the process.
    A file shorter than a span raises :class:`~leaf_hub.errors.LeafHubError` naming it.
    """
    starts = np.asarray(starts, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.int64)
    out = np.empty(int(sizes.sum()), dtype=np.uint8)
    view = memoryview(out)
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        for start, size in zip(starts.tolist(), sizes.tolist(), strict=True):
            if size and os.preadv(fd, [view[pos : pos + size]], start) != size:
                from leaf_hub.errors import LeafHubError

                raise LeafHubError(
                    f"{path} ends before byte {start + size:,}: it was cut short; delete it and rerun to rebuild it"
                )
            pos += size
    finally:
        os.close(fd)
    return out


# -- files checked in full -----------------------------------------------------------------------------

CHECKED_RECORD = "checked.json"  # a store's CheckedFiles record: local stamps, never published


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

    ANY_TAG = object()  # needs_check(path, ANY_TAG): checked at all since it last changed, whatever the tag

    def needs_check(self, path: str | os.PathLike, tag: Any = None) -> bool:
        path = Path(path)
        try:
            stamp, recorded = self._stamp(path, tag), self.stamps.get(path.name)
        except OSError:
            return True
        if tag is self.ANY_TAG:
            return recorded is None or recorded[:3] != stamp[:3]
        return recorded != stamp

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

"""Files: atomic writes (readers see the old file or the complete new one, never a partial one) and JSON reads.

Everything leaf-hub writes that another run or user may read (caches, reports, cards, ONNX files) goes
through here: the content is written to a temporary name in the same folder, flushed to disk, given the
permissions a normally created file would have (``mkstemp`` makes owner-only files), then renamed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


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

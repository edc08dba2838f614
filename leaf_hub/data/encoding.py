"""Text files that are not valid UTF-8: where the first bad byte is, and a repair that damages nothing.

A data file with a bad byte is usually one of two things. Either it is entirely in a legacy 8-bit encoding
(Latin-1 / Windows-1252), and ``iconv -f latin1 -t utf-8`` fixes it; or it *mixes* UTF-8 lines with a few
lines in the legacy encoding (files concatenated from several sources). ``iconv -f latin1`` on such a file
turns every valid UTF-8 character into mojibake ("café" -> "cafÃ©"), which the next run accepts without a
word. So the error tells the two apart and, for a mixed file, points at the repair here, which re-decodes
only the lines that are not UTF-8::

    python -m leaf_hub.data.encoding data.jsonl fixed-data.jsonl

Lines that are valid UTF-8 are copied byte for byte; the others are decoded as Windows-1252 (Latin-1 for
the five bytes Windows-1252 leaves undefined). ``.gz`` files are read and written compressed.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import zlib
from pathlib import Path

from leaf_hub.errors import LeafHubError

_BOM = b"\xef\xbb\xbf"


def _open(path: Path, mode: str):
    return gzip.open(path, mode) if path.name.endswith(".gz") else open(path, mode)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def utf8_error(path: Path, compressed: bool) -> LeafHubError:
    """The one-line error for a file that is not valid UTF-8: where the first bad byte is and how to fix it."""
    first: tuple[int, int, UnicodeDecodeError, bytes] | None = None
    bad_lines = utf8_lines = 0  # lines that are not UTF-8; lines with non-ASCII UTF-8 characters
    offset = 0
    try:
        with gzip.open(path, "rb") if compressed else open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                body = raw[3:] if number == 1 and raw.startswith(_BOM) else raw
                try:
                    body.decode("utf-8")
                    utf8_lines += not body.isascii()
                except UnicodeDecodeError as exc:
                    bad_lines += 1
                    if first is None:
                        exc.start += len(raw) - len(body)
                        first = (number, offset, exc, raw)
                offset += len(raw)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        return LeafHubError(
            f"data file {path} is not a complete gzip file ({exc}); re-create or re-download it"
        )
    if first is None:  # the decoder failed on something line-by-line reading does not see
        return LeafHubError(f"data file {path} is not valid UTF-8; re-encode it as UTF-8")
    number, line_offset, exc, raw = first
    where = f"line {number}, byte offset {line_offset + exc.start}" + (
        " of the decompressed text" if compressed else ""
    )
    bad = raw[exc.start : exc.start + 1].hex()
    repair = f"`python -m leaf_hub.data.encoding {path} fixed-{path.name}`"
    if utf8_lines or compressed:
        advice = (
            f"it mixes UTF-8 ({utf8_lines:,} lines with non-ASCII characters) with another encoding "
            f"({bad_lines:,} lines); re-encode only the lines that are not UTF-8 with {repair} "
            "(iconv -f latin1 would garble the UTF-8 lines)"
            if utf8_lines
            else f"re-encode it as UTF-8 with {repair}"
        )
    else:
        advice = f"re-encode it as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed-{path.name}` or {repair}"
    return LeafHubError(f"data file {path} is not valid UTF-8: byte 0x{bad} at {where}; {advice}")


def _legacy(raw: bytes) -> str:
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8d, 0x8f, 0x90, 0x9d are undefined in Windows-1252
        return raw.decode("latin-1")


def repair_file(source: str | Path, target: str | Path) -> tuple[int, int]:
    """Copy ``source`` to ``target`` as UTF-8, re-decoding only non-UTF-8 lines; returns (lines, changed)."""
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        raise LeafHubError(f"write the repaired file somewhere else than {source}")
    lines = changed = 0
    with _open(source, "rb") as src, _open(target, "wb") as dst:
        for raw in src:
            lines += 1
            if not _is_utf8(raw):
                raw = _legacy(raw).encode("utf-8")
                changed += 1
            dst.write(raw)
    return lines, changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m leaf_hub.data.encoding",
        description="Re-encode the lines of a text file that are not UTF-8 (Windows-1252/Latin-1 -> UTF-8); "
        "valid UTF-8 lines are copied unchanged.",
    )
    parser.add_argument("source", help="the file to repair (.gz is read compressed)")
    parser.add_argument("target", help="where to write the repaired copy (.gz is written compressed)")
    args = parser.parse_args(argv)
    try:
        lines, changed = repair_file(args.source, args.target)
    except (LeafHubError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.target}: {lines:,} lines, {changed:,} re-encoded from Windows-1252/Latin-1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

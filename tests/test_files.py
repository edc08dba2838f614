"""leaf_hub.files: memory maps that hand their pages back, and files checked once (issue 17)."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

from leaf_hub.files import CheckedFiles, drop_pages, map_array

HAS_SMAPS = sys.platform.startswith("linux") and os.path.exists("/proc/self/smaps")
needs_smaps = pytest.mark.skipif(not HAS_SMAPS, reason="reads /proc/self/smaps")


def resident_kb(path) -> int:
    """Pages of ``path`` mapped into this process now (the Rss of its mappings in /proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:  # a mapping's header line
                inside = " ".join(fields[5:]) == str(path)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total


@needs_smaps
def test_drop_pages_unmaps_what_was_read_and_keeps_the_values(tmp_path):
    """Random rows read from a mapped file stay mapped (RSS grows) unless their pages are dropped."""
    rows, width = 6000, 1024  # 12 MB of float16: several 2 MB windows
    path = tmp_path / "vectors.bin"
    data = np.random.default_rng(0).standard_normal((rows, width)).astype(np.float16)
    path.write_bytes(b"\0" * 100 + data.tobytes())  # an offset that is not page-aligned, as in a shard
    array = map_array(path, np.float16, (rows, width), offset=100)
    picks = np.random.default_rng(1).choice(rows, 64, replace=False)

    assert np.array_equal(array[picks], data[picks])
    assert resident_kb(path) >= 64 * width * 2 // 1024  # at least the rows read
    drop_pages(array)
    assert resident_kb(path) == 0

    for batch in np.array_split(picks, 8):
        assert np.array_equal(np.asarray(array[batch], dtype=np.float32), data[batch].astype(np.float32))
        drop_pages(array, batch)
        assert resident_kb(path) == 0

    ids = map_array(path, np.uint16, (rows * width,), offset=100)  # spans of a flat id array
    starts = np.array([0, 4095, 2 * 1024 * 1024 - 3, rows * width - 600])
    spans = [np.array(ids[s : s + 512]) for s in starts]  # copies: the pages are read
    assert resident_kb(path) > 0
    drop_pages(ids, starts, starts + 512)
    assert resident_kb(path) == 0 and all(len(s) == 512 for s in spans)


def test_drop_pages_ignores_in_memory_arrays(tmp_path):
    drop_pages(np.zeros((4, 4)), np.array([1]))
    assert map_array(tmp_path / "missing", np.float32, (0, 8)).shape == (0, 8)  # empty: nothing to map


def test_checked_files_skips_only_files_unchanged_since_their_check(tmp_path):
    path = tmp_path / "ids.bin"
    path.write_bytes(b"x" * 100)
    old = time.time() - 60
    os.utime(path, (old, old))
    checks = CheckedFiles(tmp_path / "checked.json")
    assert checks.needs_check(path, tag=7)
    checks.checked(path, tag=7)
    checks.save()

    again = CheckedFiles(tmp_path / "checked.json")
    assert not again.needs_check(path, tag=7)
    assert again.needs_check(path, tag=8)  # checked against something else
    path.write_bytes(b"y" * 100)  # same size, rewritten
    assert again.needs_check(path, tag=7)

    fresh = CheckedFiles(tmp_path / "other.json")  # a file written just now is not trusted by its mtime
    fresh.checked(path, tag=7)
    fresh.save()
    assert not (tmp_path / "other.json").exists() and fresh.needs_check(path, tag=7)

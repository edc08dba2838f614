"""leaf_hub.files: memory maps, positional reads of large stores, and files checked once (issue 17)."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

from leaf_hub.files import CheckedFiles, drop_pages, map_array, read_spans

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
def test_mapped_reads_stay_in_rss_until_dropped_and_positional_reads_map_nothing(tmp_path):
    """Why large stores are read with pread: random rows read through a map stay mapped (RSS grows)."""
    rows, width = 6000, 1024  # 12 MB of float16
    path = tmp_path / "vectors.bin"
    data = np.random.default_rng(0).standard_normal((rows, width)).astype(np.float16)
    path.write_bytes(b"\0" * 100 + data.tobytes())  # an offset that is not page-aligned, as in a shard
    array = map_array(path, np.float16, (rows, width), offset=100)
    picks = np.random.default_rng(1).choice(rows, 64, replace=False)

    assert np.array_equal(array[picks], data[picks])
    assert resident_kb(path) >= 64 * width * 2 // 1024  # at least the rows read
    drop_pages(array)
    assert resident_kb(path) == 0

    row = width * 2
    got = read_spans(path, 100 + picks * row, np.full(len(picks), row)).view(np.float16).reshape(-1, width)
    assert np.array_equal(got, data[picks]) and resident_kb(path) == 0
    spans = read_spans(path, np.array([100, 4097, 100]), np.array([0, 3, 2]))
    raw = path.read_bytes()
    assert spans.tolist() == list(raw[4097:4100]) + list(raw[100:102])


def test_a_span_past_the_end_of_a_file_names_the_file(tmp_path):
    from leaf_hub.errors import LeafHubError

    path = tmp_path / "ids.bin"
    path.write_bytes(b"x" * 10)
    with pytest.raises(LeafHubError, match=r"ids\.bin ends before byte 12: it was cut short"):
        read_spans(path, np.array([0, 8]), np.array([4, 4]))


def test_drop_pages_ignores_in_memory_arrays(tmp_path):
    drop_pages(np.zeros((4, 4)))
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

"""The out-of-core data path: text store (ingest), token store, TrainData over both; resume and refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from leaf_hub.data import store as store_module
from leaf_hub.data.store import DigestTable, TextStore, ingest
from leaf_hub.data.texts import load_texts
from leaf_hub.data.tokens import build_tokens
from leaf_hub.errors import LeafHubError
from leaf_hub.training.data import FlatIds, TrainData

REPO = Path(__file__).resolve().parents[1]


def _corpus(tmp_path: Path, n: int = 3000, repeat_every: int = 7) -> Path:
    """JSON lines with queries and documents, every few rows a repeat of an earlier text, some empty rows."""
    rng = np.random.default_rng(0)
    words = "the cat dog house car tree water fire city music science history language computer".split()
    rows = []
    for i in range(n):
        if i % repeat_every == 3 and i > 10:
            rows.append(dict(rows[int(rng.integers(0, i - 1))]))
        elif i % 97 == 5:
            rows.append({"text": "   ", "type": "document"})
        else:
            text = " ".join(rng.choice(words, int(rng.integers(1, 40)))) + f" {i}"
            rows.append({"text": text, "type": "query" if i % 3 == 0 else "document"})
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _old_reference(path: Path) -> tuple[list[tuple[str, str]], dict]:
    """De-duplication the way the in-memory loader always did it: a set of (kind, text), first one wins."""
    seen, out = set(), []
    stats = {"read": 0, "kept": 0, "dropped_empty": 0, "dropped_duplicate": 0, "dropped_max_texts": 0}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        stats["read"] += 1
        text = row["text"].strip()
        if not text:
            stats["dropped_empty"] += 1
        elif (row["type"], text) in seen:
            stats["dropped_duplicate"] += 1
        else:
            seen.add((row["type"], text))
            out.append((text, row["type"]))
            stats["kept"] += 1
    return out, stats


def test_ingest_streams_into_a_store_with_the_old_results(tmp_path, monkeypatch):
    from leaf_hub.data import readers

    monkeypatch.setattr(store_module, "PART_ROWS", 500)  # several parts, duplicates across them
    monkeypatch.setattr(readers, "BATCH_ROWS", 256)
    path = _corpus(tmp_path)
    store = ingest([str(path)], tmp_path / "texts")
    want, stats = _old_reference(path)
    assert [(r.text, r.kind) for r in store.records()] == want
    assert store.stats[str(path)] == stats and stats["dropped_duplicate"] > 300
    assert len(list(store.folder.glob("part-*.arrow"))) > 3
    assert not (store.folder / "seen.table").exists() and not (store.folder / "progress.json").exists()
    # Random access, kinds, digests and the text hash agree with the records.
    rows = np.array([5, 0, len(store) - 1, 77])
    assert store.texts(rows) == [want[i][0] for i in rows]
    assert store.kind_names(rows) == [want[i][1] for i in rows]
    from leaf_hub.data.store import text_digests, texts_sha256

    assert np.array_equal(store.digests(rows), text_digests(store.texts(rows), store.kind_names(rows)))
    assert store.texts_sha256 == texts_sha256(iter([([t for t, _ in want], [k for _, k in want])]))
    # The Arrow parts are ordinary datasets files.
    import datasets

    part = datasets.Dataset.from_file(str(store.folder / "part-00000.arrow"))
    assert part[0]["text"] == want[0][0]
    # The same data again: the store is reused, not read again.
    monkeypatch.setattr(store_module, "iter_source", lambda *a: pytest.fail("the store should be reused"))
    again = ingest([str(path)], tmp_path / "texts")
    assert again.folder == store.folder and len(again) == len(store)


def test_load_texts_and_ingest_agree_with_max_texts(tmp_path):
    path = _corpus(tmp_path, 800)
    sampled = load_texts([str(path), "builtin::limit=300"], max_texts=400, seed=5)
    store = ingest([str(path), "builtin::limit=300"], tmp_path / "t", max_texts=400, seed=5)
    assert store.records() == sampled.records and store.stats == sampled.stats
    assert len(store) == 400 and store.totals()["dropped_max_texts"] > 0
    assert store.fingerprint() == sampled.fingerprint()


def test_digest_table_grows_and_finds_exactly(tmp_path):
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**63, size=(20_000, 2), dtype=np.int64).view(np.uint64)
    keys[:, 1] &= np.uint64(0xFF)  # crowd a few start slots: long probe chains
    keys = np.unique(keys, axis=0)
    table = DigestTable(tmp_path / "t.table", capacity=16)
    for part in np.array_split(keys, 7):
        assert not table.find(part).any()
        table.insert(part)
    assert table.capacity >= len(keys) / table.MAX_LOAD and table.find(keys).all()
    other = keys.copy()
    other[:, 0] ^= np.uint64(1)
    assert not table.find(other).any()
    table.close()
    assert not (tmp_path / "t.table").exists()


def _run_killed(code: str, cwd: Path) -> int:
    """Run ``code`` in a fresh interpreter that kills itself with SIGKILL where the code says; return rc."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True
    )
    return proc.returncode


def test_ingest_killed_then_rerun_gives_the_uninterrupted_store(tmp_path):
    path = _corpus(tmp_path, 4000)
    code = f"""
        import os, signal
        from leaf_hub.data import readers, store
        store.PART_ROWS, readers.BATCH_ROWS = 400, 256
        real, calls = store._Ingest._commit, []
        def commit(self, *args):
            real(self, *args)
            calls.append(1)
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
        store._Ingest._commit = commit
        store.ingest([{str(path)!r}], {str(tmp_path / "killed")!r})
    """
    assert _run_killed(code, tmp_path) == -signal.SIGKILL
    (folder,) = (tmp_path / "killed").iterdir()
    assert (folder / "progress.json").is_file() and not (folder / "manifest.json").exists()
    resumed = ingest([str(path)], tmp_path / "killed")
    straight = ingest([str(path)], tmp_path / "straight")
    assert resumed.records() == straight.records() and resumed.stats == straight.stats
    assert np.array_equal(resumed.digests(), straight.digests())


def test_mixed_encodings_get_advice_that_keeps_the_utf8_lines(tmp_path):
    """Issue 19.8: `iconv -f latin1` on a mostly-UTF-8 file garbles it; the advice must not."""
    path = tmp_path / "mixed.txt"
    path.write_bytes("naïve café\n".encode() + b"caf\xe9 cr\xe8me\n" + "über\n".encode())
    with pytest.raises(LeafHubError) as err:
        load_texts([str(path)])
    msg = str(err.value)
    assert "line 2" in msg and "0xe9" in msg and "mixes UTF-8" in msg and "iconv -f latin1 -t" not in msg
    command = msg.split("`")[1].split()  # python -m leaf_hub.data.encoding SOURCE TARGET
    assert command[:3] == ["python", "-m", "leaf_hub.data.encoding"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, *command[1:]], cwd=tmp_path, env=env, check=True, capture_output=True)
    fixed = load_texts([str(tmp_path / command[-1])])
    assert fixed.texts() == ["naïve café", "café crème", "über"]  # UTF-8 lines kept, the other repaired


def test_csv_texts_are_read_as_written(tmp_path):
    """Through datasets, a CSV's 'NA', 'null' and '007' stay texts (no missing-value or number guessing)."""
    path = tmp_path / "d.csv"
    path.write_text("text,type\nNA,query\nnull,document\n007,query\n")
    assert [(r.text, r.kind) for r in load_texts([str(path)])] == [
        ("NA", "query"),
        ("null", "document"),
        ("007", "query"),
    ]


# ---------------------------------------------------------------------------------------------------------
# Token store
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture()
def tiny_tokenizer(tiny_student_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_student_dir / "backbone"))


def _store_of(tmp_path: Path, rows: list[dict]) -> TextStore:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ingest([str(path)], tmp_path / "texts")


def test_token_store_holds_what_the_tokenizer_gives(tmp_path, tiny_tokenizer, monkeypatch):
    from leaf_hub.data import tokens as tokens_module

    monkeypatch.setattr(tokens_module, "CHUNK_ROWS", 64)
    rng = np.random.default_rng(0)
    words = "the cat dog house car tree water fire city music science".split()
    rows = [
        {
            "text": " ".join(rng.choice(words, int(rng.integers(1, 60)))) + f" {i}",
            "type": ["query", "document"][i % 2],
        }
        for i in range(300)
    ]
    texts = _store_of(tmp_path, rows)
    prompts = {"query": "query: ", "document": ""}
    store = build_tokens(texts, tiny_tokenizer, prompts, 32, tmp_path / "tokens")
    prefixed = [
        prompts[k] + t
        for t, k in zip(texts.texts(range(len(texts))), texts.kind_names(range(len(texts))), strict=True)
    ]
    want = tiny_tokenizer(prefixed, truncation=True, max_length=32)["input_ids"]
    assert [store.row(i) for i in range(len(store))] == want
    assert store.ids.dtype == np.uint16 and isinstance(store.ids, np.memmap)
    full = [len(x) for x in tiny_tokenizer(prefixed)["input_ids"]]
    assert store.report.truncated_total == sum(n > 32 for n in full) > 0
    assert store.report.longest_tokens == max(full)
    # Reused by the next run on the same texts and tokenizer; another length is another store.
    monkeypatch.setattr(tokens_module, "_append", lambda *a: pytest.fail("the token store should be reused"))
    assert build_tokens(texts, tiny_tokenizer, prompts, 32, tmp_path / "tokens").folder == store.folder


def test_token_store_killed_then_rerun_is_identical(tmp_path, tiny_student_dir):
    rows = [{"text": f"the cat number {i} " * (i % 9 + 1), "type": "document"} for i in range(500)]
    texts = _store_of(tmp_path, rows)
    code = f"""
        import os, signal
        from transformers import AutoTokenizer
        from leaf_hub.data import tokens
        from leaf_hub.data.store import TextStore
        tokens.CHUNK_ROWS = 64
        real, calls = tokens._append, []
        def append(*args):
            real(*args)
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        tokens._append = append
        tok = AutoTokenizer.from_pretrained({str(tiny_student_dir / "backbone")!r})
        tokens.build_tokens(TextStore({str(texts.folder)!r}), tok, {{}}, 16, {str(tmp_path / "tk")!r})
    """
    assert _run_killed(code, tmp_path) == -signal.SIGKILL
    from transformers import AutoTokenizer

    from leaf_hub.data import tokens as tokens_module

    tok = AutoTokenizer.from_pretrained(str(tiny_student_dir / "backbone"))
    tokens_module.CHUNK_ROWS, old = 64, tokens_module.CHUNK_ROWS
    try:
        resumed = build_tokens(texts, tok, {}, 16, tmp_path / "tk")
    finally:
        tokens_module.CHUNK_ROWS = old
    straight = build_tokens(texts, tok, {}, 16, tmp_path / "straight")
    for name in ("ids.bin", "offsets.bin", "flags.bin"):
        assert (resumed.folder / name).read_bytes() == (straight.folder / name).read_bytes()


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign"])
def test_damaged_or_foreign_token_store_is_refused(tmp_path, tiny_tokenizer, damage):
    rows = [{"text": f"the dog {i} " * 3, "type": "document"} for i in range(50)]
    texts = _store_of(tmp_path, rows)
    store = build_tokens(texts, tiny_tokenizer, {}, 16, tmp_path / "tokens")
    ids = store.folder / "ids.bin"
    if damage == "truncate":
        ids.write_bytes(ids.read_bytes()[:-6])
    elif damage == "flip":
        data = bytearray(ids.read_bytes())
        data[len(data) // 2] ^= 0x04
        ids.write_bytes(bytes(data))
    else:  # a store built for another length, copied under this run's key
        other = build_tokens(texts, tiny_tokenizer, {}, 8, tmp_path / "other")
        for path in other.folder.iterdir():
            (store.folder / path.name).write_bytes(path.read_bytes())
    with pytest.raises(LeafHubError) as err:
        build_tokens(texts, tiny_tokenizer, {}, 16, tmp_path / "tokens")
    msg = str(err.value)
    assert str(store.folder) in msg and "delete the folder to rebuild it" in msg and "\n" not in msg
    assert ("other max_length" in msg) if damage == "foreign" else ("damaged" in msg)


def test_token_files_checked_once_are_not_read_again_until_they_change(tmp_path, tiny_tokenizer, monkeypatch):
    """Issue 17: opening a paper-scale store must not read it all each time; a changed file is read again."""
    import os
    import time

    from leaf_hub.data import tokens as tokens_module
    from leaf_hub.data.tokens import TokenStore

    texts = _store_of(tmp_path, [{"text": f"the dog {i} " * 3, "type": "document"} for i in range(50)])
    store = build_tokens(texts, tiny_tokenizer, {}, 16, tmp_path / "tokens")
    old = time.time() - 60
    for name in ("ids.bin", "offsets.bin", "flags.bin"):
        os.utime(store.folder / name, (old, old))
    read = []
    real = tokens_module._crc32
    monkeypatch.setattr(tokens_module, "_crc32", lambda path: read.append(path.name) or real(path))
    TokenStore(store.folder)
    assert sorted(read) == ["flags.bin", "ids.bin", "offsets.bin"]
    read.clear()
    TokenStore(store.folder)
    assert read == []
    ids = store.folder / "ids.bin"
    data = bytearray(ids.read_bytes())
    data[len(data) // 2] ^= 0x04
    ids.write_bytes(bytes(data))
    with pytest.raises(LeafHubError, match="ids.bin does not match its checksum"):
        TokenStore(store.folder)
    assert read == ["ids.bin"]


def test_unreadable_texts_are_flagged(tmp_path, tiny_tokenizer, monkeypatch):
    """Issue 19.6: texts of only emoji or zero-width characters are nothing but [UNK] (or nothing)."""
    rows = [
        {"text": "the cat", "type": "query"},
        {"text": "🙂🙂🙂", "type": "query"},
        {"text": "\u200b\u200b", "type": "document"},
        {"text": "🙂 🎉", "type": "document"},
        {"text": "a dog 🙂", "type": "document"},
    ]
    texts = _store_of(tmp_path, rows)
    store = build_tokens(texts, tiny_tokenizer, {"query": "query: "}, 16, tmp_path / "tokens")
    assert store.usable_rows().tolist() == [0, 4] and store.usable_rows().dtype == np.int32
    from leaf_hub.data import tokens as tokens_module

    monkeypatch.setattr(tokens_module, "FLAG_SCAN_ROWS", 2)  # the flags read in pieces give the same rows
    assert store.usable_rows().tolist() == [0, 4]
    assert store.report.unreadable == {"query": 1, "document": 2}


# ---------------------------------------------------------------------------------------------------------
# TrainData
# ---------------------------------------------------------------------------------------------------------


def _loop_collate(rows: list[list[int]], pad: int) -> dict[str, torch.Tensor]:
    """Padding the way it was done before, one row at a time (the reference for the vectorised one)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, seq in enumerate(rows):
        ids[i, : len(seq)] = torch.as_tensor(seq)
        mask[i, : len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def test_flat_collation_equals_row_by_row_padding():
    rng = np.random.default_rng(0)
    lists = [rng.integers(1, 30000, size=int(rng.integers(1, 50))).tolist() for _ in range(200)]
    flat = FlatIds.from_lists(lists)
    for rows in (np.array([3]), rng.permutation(200)[:32], np.arange(200)):
        got = flat.collate(rows, pad_id=0)
        want = _loop_collate([lists[i] for i in rows], 0)
        assert all(torch.equal(got[k], want[k]) for k in want)
    assert flat[7] == lists[7] and flat.lengths.tolist() == [len(x) for x in lists]


@pytest.mark.parametrize("large", [False, True])
def test_mapped_train_data_equals_in_memory(tmp_path, tiny_tokenizer, monkeypatch, large):
    """The stores give the in-memory batches; stores too large to stay mapped are read without mapping them."""
    from test_files import HAS_SMAPS, resident_kb
    from test_teacher_cache import CountingTeacher

    from leaf_hub.data import tokens as tokens_module
    from leaf_hub.teachers import cache as cache_module
    from leaf_hub.teachers.cache import TeacherCache

    if large:
        monkeypatch.setattr(tokens_module, "RESIDENT_MAP_BYTES", 100)
        monkeypatch.setattr(cache_module, "RESIDENT_MAP_BYTES", 100)

    rows = [
        {"text": f"the city music {i} " * (i % 6 + 1), "type": ["query", "document"][i % 2]}
        for i in range(120)
    ]
    texts = _store_of(tmp_path, rows)
    tokens = build_tokens(texts, tiny_tokenizer, {"query": "q: "}, 24, tmp_path / "tokens")
    targets = TeacherCache(tmp_path / "cache", shard_size=16).prepare(CountingTeacher(), texts)
    train, val = np.arange(0, 100), np.arange(100, 120)
    mapped = TrainData(tokens, targets, train, val, tokens.pad_token_id)
    memory = TrainData([tokens.row(i) for i in range(len(tokens))], np.asarray(targets), train, val, 0)
    assert np.array_equal(mapped.lengths, memory.lengths) and len(mapped) == len(memory) == 120
    for batch_rows in (np.array([5, 99, 3]), np.arange(32), np.array([119])):
        a, b = mapped.batch(batch_rows), memory.batch(batch_rows)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert a["target"].dtype == torch.float32
        if large and HAS_SMAPS:
            assert resident_kb(tokens.folder / "ids.bin") == resident_kb(tokens.folder / "offsets.bin") == 0
            assert sum(resident_kb(shard.path) for shard in targets.shards) == 0
    assert mapped.input_ids.store.reads_positionally == targets.reads_positionally == large
    assert mapped.input_ids[7] == memory.input_ids[7]


def test_large_parquet_file_streams_in_bounded_memory(tmp_path):
    """Reading one parquet file holds about a row group, not the whole file: ``datasets`` reads through a Python
    file object, and a pre-buffered fragment reads every row group's bytes up front and keeps them until the
    file ends (apache/arrow#39808), so a 6 GB file took 6 GB of RAM. The bytes it reads are Python objects,
    which tracemalloc counts exactly."""
    import tracemalloc

    import pyarrow as pa
    import pyarrow.parquet as pq

    from leaf_hub.data.readers import read_file
    from leaf_hub.data.specs import parse_specs

    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(5000)], dtype=object)
    path = tmp_path / "big.parquet"
    groups, rows = 16, 4096
    with pq.ParquetWriter(path, pa.schema([("text", pa.string()), ("type", pa.string())])) as writer:
        for _ in range(groups):
            lengths = rng.integers(1, 200, size=rows)
            texts = [" ".join(words[rng.integers(0, len(words), size=int(n))]) for n in lengths]
            writer.write_table(pa.table({"text": texts, "type": ["document"] * rows}))
    size = path.stat().st_size
    assert pq.ParquetFile(path).num_row_groups == groups and size > 8 << 20
    read = 0
    tracemalloc.start()
    try:
        for texts, _ in read_file(parse_specs([str(path)])[0]):
            read += len(texts)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert read == groups * rows
    assert peak < size / 3, f"{peak / 2**20:.1f} MB held while streaming a {size / 2**20:.1f} MB file"

"""The teacher cache: computed once, resumable after a crash, refuses to mix teachers or texts."""

from __future__ import annotations

import numpy as np
import pytest
from test_files import needs_smaps, resident_kb

from leaf_hub.errors import LeafHubError
from leaf_hub.teachers.cache import TeacherCache


class CountingTeacher:
    """A deterministic black-box teacher (text -> vector) that counts and can fail after N calls."""

    def __init__(self, dimension=8, fingerprint="t1", fail_after=None, scale=1.0):
        self.name, self.fingerprint, self.dimension = "counting", fingerprint, dimension
        self.normalized, self.prompts, self.max_seq_length = True, {"query": "q: ", "document": ""}, 128
        self.seen: list[str] = []
        self.fail_after, self.scale = fail_after, scale

    def encode(self, texts, kind):
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise KeyboardInterrupt  # the process is killed mid-run
        self.seen.extend(texts)
        vecs = np.stack(
            [np.random.default_rng(abs(hash((kind, t))) % 2**32).normal(size=self.dimension) for t in texts]
        )
        return (self.scale * vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)

    def token_lengths(self, texts):
        return [len(t.split()) for t in texts]


def _texts(n=50):
    texts = [("word " * (i % 7 + 1)) + str(i) for i in range(n)]
    return texts, ["query" if i % 4 == 0 else "document" for i in range(n)]


def test_cache_matches_teacher_and_is_reused(tmp_path):
    texts, kinds = _texts()
    teacher = CountingTeacher()
    emb = TeacherCache(tmp_path, shard_size=8).build(teacher, texts, kinds)
    for i in (0, 1, 17):
        expect = teacher.encode([texts[i]], kinds[i])[0]
        assert np.dot(emb[i], expect) / np.linalg.norm(emb[i]) > 0.9999
    again = CountingTeacher()
    emb2 = TeacherCache(tmp_path, shard_size=8).build(again, texts, kinds)
    assert again.seen == [] and np.array_equal(emb, emb2)


def test_interrupted_build_resumes_without_recomputing(tmp_path):
    texts, kinds = _texts(64)
    with pytest.raises(KeyboardInterrupt):
        TeacherCache(tmp_path, shard_size=16).build(CountingTeacher(fail_after=32), texts, kinds)
    assert len(list(tmp_path.glob("shard-*.npz"))) == 2
    with pytest.raises(LeafHubError, match="incomplete"):
        TeacherCache(tmp_path).load()
    second = CountingTeacher()
    emb = TeacherCache(tmp_path, shard_size=16).build(second, texts, kinds)
    assert len(second.seen) == 32 and emb.shape == (64, 8)
    assert not list(tmp_path.glob("*.tmp"))


def test_partial_shard_file_is_not_taken_as_complete(tmp_path):
    texts, kinds = _texts(16)
    TeacherCache(tmp_path, shard_size=8).build(CountingTeacher(), texts, kinds)
    (tmp_path / ".shard-00001.npz.abc.tmp").write_bytes(b"half a shard")  # what a kill mid-write leaves
    (tmp_path / "shard-00001.npz").unlink()
    teacher = CountingTeacher()
    TeacherCache(tmp_path, shard_size=8).build(teacher, texts, kinds)
    assert len(teacher.seen) == 8


@pytest.mark.parametrize(
    "other, message",
    [
        (CountingTeacher(fingerprint="other"), "built by teacher"),
        (CountingTeacher(dimension=16), "dimension is 8"),
    ],
)
def test_mismatched_teacher_is_refused(tmp_path, other, message):
    texts, kinds = _texts(16)
    TeacherCache(tmp_path).build(CountingTeacher(), texts, kinds)
    with pytest.raises(LeafHubError, match=message):
        TeacherCache(tmp_path).build(other, texts, kinds)


def test_other_texts_are_refused(tmp_path):
    texts, kinds = _texts(16)
    TeacherCache(tmp_path).build(CountingTeacher(), texts, kinds)
    with pytest.raises(LeafHubError, match="other texts"):
        TeacherCache(tmp_path).build(CountingTeacher(), texts[:-1], kinds[:-1])


def test_float16_keeps_cosine_and_refuses_overflow(tmp_path):
    texts, kinds = _texts(16)
    emb16 = TeacherCache(tmp_path / "a").build(CountingTeacher(), texts, kinds, dtype="float16")
    emb32 = TeacherCache(tmp_path / "b").build(CountingTeacher(), texts, kinds, dtype="float32")
    cos = (emb16 * emb32).sum(1) / np.linalg.norm(emb16, axis=1) / np.linalg.norm(emb32, axis=1)
    assert cos.min() >= 0.999 and not np.array_equal(emb16, emb32)
    with pytest.raises(LeafHubError, match="float32"):
        TeacherCache(tmp_path / "c").build(CountingTeacher(scale=1e6), texts, kinds, dtype="float16")


def test_complete_cache_is_loaded_without_asking_the_teacher_anything(tmp_path):
    texts, kinds = _texts(20)
    TeacherCache(tmp_path, shard_size=8).build(CountingTeacher(), texts, kinds)

    class Untouchable(CountingTeacher):
        def token_lengths(self, texts):
            raise AssertionError("a complete cache needs no tokenization")

    assert TeacherCache(tmp_path, shard_size=8).build(Untouchable(), texts, kinds).shape == (20, 8)


# ---------------------------------------------------------------------------------------------------------
# Read by memory map; shards that cannot prove themselves; damaged shards; a teacher that changes (issue 19)
# ---------------------------------------------------------------------------------------------------------


def test_prepare_maps_the_shards_and_converts_per_batch(tmp_path):
    texts, kinds = _texts(50)
    cache = TeacherCache(tmp_path, shard_size=8)
    targets = cache.prepare(CountingTeacher(), texts, kinds)
    full = cache.load()
    assert len(targets) == 50 and targets.shape == (50, 8)
    rows = np.array([49, 0, 17, 17, 3])
    batch = targets[rows]
    assert batch.dtype == np.float32 and np.array_equal(batch, full[rows])
    assert np.array_equal(targets[17], full[17]) and np.array_equal(np.asarray(targets), full)
    assert all(isinstance(s.embedding, np.memmap) for s in targets.shards)  # mapped, not loaded
    assert targets.shards[0].embedding.dtype == np.float16


@needs_smaps
def test_a_cache_too_large_to_stay_resident_is_read_without_mapping_it(tmp_path, monkeypatch):
    """Issue 17: random batches over a large cache keep RSS flat (pread); a small cache stays mapped."""
    from leaf_hub.teachers import cache as cache_module

    texts, kinds = _texts(64)
    full = TeacherCache(tmp_path, shard_size=8).build(CountingTeacher(dimension=512), texts, kinds)
    rows = np.random.default_rng(0).permutation(64)[:20]
    small = TeacherCache(tmp_path, shard_size=8).open(texts, kinds)
    assert not small.reads_positionally
    assert np.array_equal(small[rows], full[rows])
    assert sum(resident_kb(s.path) for s in small.shards) > 0
    small.release()

    monkeypatch.setattr(cache_module, "RESIDENT_MAP_BYTES", 1000)  # this cache is "large" now
    large = TeacherCache(tmp_path, shard_size=8).open(texts, kinds)
    assert large.reads_positionally
    for batch in np.array_split(rows, 4):
        assert np.array_equal(large[batch], full[batch])
        assert sum(resident_kb(s.path) for s in large.shards) == 0


def test_a_shard_checked_once_is_not_read_again_until_it_changes(tmp_path, monkeypatch):
    """Issue 17: CRCs are checked in full once; an unchanged shard is trusted by size, mtime and inode."""
    import os
    import time
    import zipfile

    from leaf_hub.teachers import cache as cache_module

    texts, kinds = _texts(32)
    TeacherCache(tmp_path, shard_size=8).build(CountingTeacher(), texts, kinds)
    old = time.time() - 60  # shards written a minute ago (a file written this second is checked again)
    for shard in tmp_path.glob("shard-*.npz"):
        os.utime(shard, (old, old))
    checked = []
    real = cache_module._member_crc
    monkeypatch.setattr(
        cache_module, "_member_crc", lambda f, info: checked.append(info.filename) or real(f, info)
    )

    compared = []
    real_digests = cache_module._ListRows.digests
    monkeypatch.setattr(
        cache_module._ListRows,
        "digests",
        lambda self, rows: compared.append(len(rows)) or real_digests(self, rows),
    )

    TeacherCache(tmp_path, shard_size=8).open(texts, kinds)
    assert len(checked) == 4 * 4  # index, embedding, digest and meta of each of the 4 shards
    assert compared == [8, 8, 8, 8]  # every shard's rows compared with the texts'
    checked.clear()
    compared.clear()
    targets = TeacherCache(tmp_path, shard_size=8).open(texts, kinds)
    assert checked == [] and compared == []  # unchanged shards, same texts: nothing read again
    assert np.allclose(targets[np.arange(32)], np.asarray(TeacherCache(tmp_path).load()))
    assert checked == []  # opened without texts: the CRCs are known as well
    other = [*texts[:20], "a text this cache never saw", *texts[21:]]
    with pytest.raises(LeafHubError, match=r"holds other texts than this run's \(row 20 differs"):
        TeacherCache(tmp_path, shard_size=8).open(other, kinds)  # other texts: compared again, and refused
    assert checked == [] and compared  # only the digests were read for them
    TeacherCache(tmp_path, shard_size=8).open(texts, kinds)
    assert checked == []

    shard = tmp_path / "shard-00002.npz"
    data = bytearray(shard.read_bytes())
    data[zipfile.ZipFile(shard).getinfo("embedding.npy").header_offset + 200] ^= 0x10
    shard.write_bytes(bytes(data))  # same size, new mtime
    with pytest.raises(LeafHubError, match=r"shard-00002\.npz is damaged"):
        TeacherCache(tmp_path, shard_size=8).open(texts, kinds)
    assert 0 < len(checked) <= 4  # only the changed shard was read (up to its bad member)


def test_progress_moves_per_teacher_batch(tmp_path, monkeypatch):
    """Issue 16: the bar advances per teacher call (a batch), not per 256-text block."""
    from leaf_hub.teachers import cache as cache_module

    updates = []

    class Bar:
        def __init__(self, *args, **kwargs):
            pass

        def update(self, n):
            updates.append(n)

        def close(self):
            pass

    monkeypatch.setattr(cache_module, "tqdm", Bar)
    texts, kinds = _texts(600)
    teacher = CountingTeacher()
    teacher.batch_size = 32
    TeacherCache(tmp_path, shard_size=512).prepare(teacher, texts, kinds)
    assert sum(updates) == 600 and max(updates) <= 32 and len(updates) >= 600 // 32


def test_manifest_gone_shards_must_prove_their_texts(tmp_path):
    """Issue 19.2: without its manifest a folder's shards are reused only for the texts they hold."""
    texts, kinds = _texts(40)
    first = TeacherCache(tmp_path, shard_size=8).build(CountingTeacher(), texts, kinds)
    (tmp_path / "manifest.json").unlink()
    again = CountingTeacher()
    assert np.array_equal(TeacherCache(tmp_path, shard_size=8).build(again, texts, kinds), first)
    assert again.seen == []  # the shards proved they hold these texts
    (tmp_path / "manifest.json").unlink()
    order = np.random.default_rng(0).permutation(40)
    shuffled, shuffled_kinds = [texts[i] for i in order], [kinds[i] for i in order]
    with pytest.raises(LeafHubError, match=r"shard-\d+\.npz holds other texts than this run's") as err:
        TeacherCache(tmp_path, shard_size=8).build(CountingTeacher(), shuffled, shuffled_kinds)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "manifest.json").exists()  # no new manifest vouches for the foreign shards


def test_a_shard_from_another_teacher_is_refused(tmp_path):
    texts, kinds = _texts(16)
    TeacherCache(tmp_path / "a", shard_size=8).build(CountingTeacher(), texts, kinds)
    TeacherCache(tmp_path / "b", shard_size=8).build(CountingTeacher(fingerprint="t2"), texts, kinds)
    (tmp_path / "a" / "shard-00001.npz").write_bytes((tmp_path / "b" / "shard-00001.npz").read_bytes())
    with pytest.raises(LeafHubError, match=r"shard-00001\.npz was made with another teacher_fingerprint"):
        TeacherCache(tmp_path / "a", shard_size=8).build(CountingTeacher(), texts, kinds)


@pytest.mark.parametrize("damage", ["truncate", "flip-vectors", "flip-headers"])
def test_damaged_shard_is_named_with_the_fix(tmp_path, damage):
    """Issue 19.3: a truncated or bit-flipped shard is one line naming the shard and what to do."""
    import zipfile

    texts, kinds = _texts(32)
    TeacherCache(tmp_path, shard_size=8).build(CountingTeacher(), texts, kinds)
    shard = tmp_path / "shard-00002.npz"
    data = bytearray(shard.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip-vectors":
        data[zipfile.ZipFile(shard).getinfo("embedding.npy").header_offset + 200] ^= 0x10
    else:
        for i in (30, len(data) // 2):  # the first member's name, the middle of the file
            data[i] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(LeafHubError) as err:
        TeacherCache(tmp_path, shard_size=8).build(CountingTeacher(), texts, kinds)
    msg = str(err.value)
    assert "shard-00002.npz" in msg and "damaged" in msg and "delete shard-00002.npz and rerun" in msg
    assert "\n" not in msg
    shard.unlink()  # the fix works: only that shard is computed again
    teacher = CountingTeacher()
    TeacherCache(tmp_path, shard_size=8).build(teacher, texts, kinds)
    assert len(teacher.seen) == 8


def test_teacher_changing_dimension_mid_cache(tmp_path):
    """Issue 19.1: a teacher whose answers change width fails with a clear error, finished shards kept."""

    class Changing(CountingTeacher):
        def encode(self, texts, kind):
            vecs = super().encode(texts, kind)
            return vecs[:, :6] if len(self.seen) > 20 else vecs

    texts, kinds = _texts(48)
    with pytest.raises(LeafHubError, match=r"returned embeddings of shape \(\d+, 6\).*teacher changed"):
        TeacherCache(tmp_path, shard_size=16).build(Changing(), texts, kinds)
    assert len(list(tmp_path.glob("shard-*.npz"))) == 1


def test_api_teacher_changing_dimension_mid_cache(tmp_path, tiny_teacher_dir):
    """Issue 19.1 through a real server: answers of another width among the requests of one encode call
    (several in flight) are a one-line error, not numpy's concatenate traceback."""
    from embedding_server import serve_embeddings

    from leaf_hub.teachers import HttpTeacher

    texts, _ = _texts(64)
    kinds = ["document"] * len(texts)
    with serve_embeddings(tiny_teacher_dir) as server:
        teacher = HttpTeacher(server.url, model=server.model_name, batch_size=4, concurrency=2, backoff=0.01)
        real_embed = server.embed

        def embed(inputs):  # after the probe, every other answer comes from a narrower model
            vectors = real_embed(inputs)
            return vectors[:, :16] if server.requests > 1 and server.requests % 2 else vectors

        server.embed = embed
        with pytest.raises(LeafHubError) as err:
            TeacherCache(tmp_path, shard_size=64).build(teacher, texts, kinds)
        teacher.close()
    assert "changed its dimension from 48 to 16" in str(err.value) and "\n" not in str(err.value)


def test_cache_of_the_previous_format_is_still_read(tmp_path):
    """A cache written before shards carried digests (format 1) stays valid under its manifest."""
    import io
    import json

    texts, kinds = _texts(20)
    teacher = CountingTeacher()
    want = TeacherCache(tmp_path / "new", shard_size=8).build(teacher, texts, kinds)
    old = tmp_path / "old"
    old.mkdir()
    manifest = json.loads((tmp_path / "new" / "manifest.json").read_text())
    manifest["format_version"] = 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    for path in sorted((tmp_path / "new").glob("shard-*.npz")):
        with np.load(path) as shard:
            buf = io.BytesIO()
            np.savez(buf, index=shard["index"], embedding=shard["embedding"])
        (old / path.name).write_bytes(buf.getvalue())
    again = CountingTeacher()
    assert np.array_equal(TeacherCache(old, shard_size=8).build(again, texts, kinds), want) and not again.seen
    (old / "manifest.json").unlink()  # without the manifest nothing vouches for old shards
    with pytest.raises(LeafHubError, match="cannot prove which texts it holds"):
        TeacherCache(old, shard_size=8).build(CountingTeacher(), texts, kinds)

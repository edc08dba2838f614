"""The teacher cache: computed once, resumable after a crash, refuses to mix teachers or texts."""

from __future__ import annotations

import numpy as np
import pytest

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

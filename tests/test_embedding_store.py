"""The on-disk embedding cache: same vectors as the model, keyed correctly, atomic, resumable."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from eval_helpers import WORDS
from sentence_transformers import SentenceTransformer

from leaf_hub.evaluation.embedding_store import EmbeddingStore, default_cache_dir, texts_hash


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir):
    return SentenceTransformer(str(tiny_teacher_dir), device="cpu")


@pytest.fixture(scope="module")
def leaf(tiny_leaf_dir):
    return SentenceTransformer(str(tiny_leaf_dir), device="cpu")


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    # Varied lengths, so the store's length sorting really reorders them.
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 30)))) for _ in range(n)]


def test_matches_the_model_in_input_order(teacher, tmp_path):
    texts = _texts(50)
    store = EmbeddingStore(tmp_path)
    for task, direct in (
        ("query", teacher.encode_query(texts)),
        ("document", teacher.encode_document(texts)),
        ("text", teacher.encode(texts)),
    ):
        np.testing.assert_allclose(store.encode(teacher, texts, task, batch_size=8), direct, atol=1e-5)
    # The query prompt ("query: ") really changes the vectors, so the task is part of the key.
    assert not np.allclose(teacher.encode_query(texts[:3]), teacher.encode_document(texts[:3]), atol=1e-3)
    assert store.misses == 3 and store.hits == 0


def test_second_store_reads_from_disk(teacher, leaf, tmp_path):
    texts = _texts(20, seed=1)
    first = EmbeddingStore(tmp_path).encode(teacher, texts, "document", model_name="tiny-teacher")
    again = EmbeddingStore(tmp_path)
    second = again.encode(teacher, texts, "document")
    np.testing.assert_array_equal(first, second)
    assert (again.hits, again.misses, again.encode_seconds) == (1, 0, 0.0)
    assert again.bare_seconds > 0  # the recorded cost of the cached entry
    npys = list(tmp_path.rglob("*.npy"))
    assert len(npys) == 1
    meta = json.loads(npys[0].with_suffix(".json").read_text())
    assert meta["model"] == "tiny-teacher" and meta["num_texts"] == 20 and meta["dim"] == 48
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".partial")]
    # Other texts, another order, or another model: other entries.
    store = EmbeddingStore(tmp_path)
    store.encode(teacher, texts[::-1], "document")
    store.encode(leaf, texts, "document")
    assert store.misses == 2
    assert len(list(tmp_path.rglob("*.npy"))) == 3


def test_resumes_after_interruption(teacher, tmp_path, caplog):
    texts = _texts(40, seed=2)
    calls = {"n": 0}
    original = teacher.encode_document

    def flaky(batch, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(batch, **kwargs)

    teacher.encode_document = flaky
    try:
        with pytest.raises(KeyboardInterrupt):
            EmbeddingStore(tmp_path).encode(teacher, texts, "document", batch_size=4, checkpoint_every=4)
    finally:
        del teacher.encode_document
    partial = next(tmp_path.rglob("*.partial"))
    assert len(list(partial.glob("*.npy"))) == 3  # three batches of 4 saved
    store = EmbeddingStore(tmp_path)
    with caplog.at_level(logging.INFO, logger="leaf_hub.evaluation.embedding_store"):
        resumed = store.encode(teacher, texts, "document", batch_size=4, checkpoint_every=4)
    assert "resuming after 12 of 40 texts" in caplog.text
    np.testing.assert_allclose(resumed, teacher.encode_document(texts), atol=1e-5)
    assert not partial.exists()


def test_memory_only_writes_nothing_and_damaged_entries_are_recomputed(teacher, tmp_path):
    texts = _texts(10, seed=3)
    mem = EmbeddingStore(tmp_path, memory_only=True)
    a = mem.encode(teacher, texts, "query")
    assert mem.encode(teacher, texts, "query") is a
    assert not list(tmp_path.iterdir())
    disk = EmbeddingStore(tmp_path)
    disk.encode(teacher, texts, "query")
    npy = next(tmp_path.rglob("*.npy"))
    npy.write_bytes(b"not an array")
    fresh = EmbeddingStore(tmp_path)
    np.testing.assert_allclose(fresh.encode(teacher, texts, "query"), a, atol=1e-6)
    assert fresh.misses == 1


def test_empty_input_and_cache_location(teacher, tmp_path, monkeypatch):
    assert EmbeddingStore(tmp_path).encode(teacher, [], "document").shape == (0, 48)
    monkeypatch.setenv("LEAF_HUB_CACHE", str(tmp_path / "lh"))
    assert default_cache_dir() == tmp_path / "lh" / "embeddings"
    monkeypatch.delenv("LEAF_HUB_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "leaf-hub", "embeddings")
    assert texts_hash(["ab", "c"]) != texts_hash(["a", "bc"])

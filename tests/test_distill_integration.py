"""Distil the real PyPI-shipped teacher (all-mpnet-base-v2) into a real MiniLM leaf for a few steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import STUDENT_ID, TEACHER_ID
from sentence_transformers import SentenceTransformer

from leaf_hub.cli import main
from leaf_hub.leaf import build_leaf


@pytest.mark.integration
def test_real_models_distil_towards_the_teacher(tmp_path, offline_models, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "distill",
            "--teacher",
            TEACHER_ID,
            "--student",
            STUDENT_ID,
            "--data",
            "builtin::limit=240",
            "--data",
            "bert-tokens::limit=80",
            "--output",
            str(out),
            "--max-steps",
            "16",
            "--eval-every",
            "8",
            "--val-batches",
            "1",
            "--warm-start-texts",
            "280",
        ]  # fmt: skip
    )
    assert code == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    start, last = records[0], records[-1]
    assert start["event"] == "start" and last["step"] == 16
    # The warm start already points the leaf at the teacher; 16 steps keep it there. (On 288 texts the
    # ridge fit has seen nearly everything, so whether 16 steps improve one held-out batch is noise.)
    assert start["val_cosine"] > 0.3 and last["val_cosine"] > 0.3
    assert min(r["val_l2"] for r in records) <= start["val_l2"]

    leaf = SentenceTransformer(str(out / "leaf"), device="cpu")
    teacher = SentenceTransformer(TEACHER_ID, device="cpu")
    texts = ["How do I read a file in Python?", "A list is a mutable sequence type."]
    emb = leaf.encode(texts)
    assert emb.shape == (2, 768)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert leaf.max_seq_length == teacher.max_seq_length == 384  # the teacher's length, within MiniLM's 512
    target = teacher.encode(texts)
    cos = (emb * target).sum(1)
    # Closer to the teacher than before distilling: the student with a random projection, as built.
    untrained = build_leaf(SentenceTransformer(STUDENT_ID, device="cpu"), 768, True, {}, 384)
    before = (untrained.encode(texts) * target).sum(1)
    assert cos.mean() > 0.3 and cos.mean() > before.mean() + 0.3
    assert "cosine to teacher" in capsys.readouterr().out

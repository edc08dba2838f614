"""``leaf-hub pair``: one Router model, leaf for queries and teacher for documents."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from leaf_hub.cli import main
from leaf_hub.export.pair import PAIR_MANIFEST
from leaf_hub.models import weights_fingerprint


def _pair(leaf, teacher, output, *extra: str) -> int:
    """``leaf-hub pair --leaf LEAF --teacher TEACHER --output OUTPUT [extra]``; returns the exit code."""
    return main(["pair", "--leaf", str(leaf), "--teacher", str(teacher), "--output", str(output), *extra])


QUERIES = ["what is a leaf model", "Cased Query About The Teacher"]
DOCUMENTS = ["The teacher embeds documents once.", "Data, networks and information science in one long text."]


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory, tiny_leaf_dir, tiny_teacher_dir):
    out = tmp_path_factory.mktemp("pair") / "pair"
    assert _pair(tiny_leaf_dir, tiny_teacher_dir, out) == 0
    return out


def test_pair_routes_queries_to_the_leaf_and_documents_to_the_teacher(
    pair_dir, tiny_leaf_dir, tiny_teacher_dir
):
    pair = SentenceTransformer(str(pair_dir), device="cpu")
    leaf = SentenceTransformer(str(tiny_leaf_dir), device="cpu")
    teacher = SentenceTransformer(str(tiny_teacher_dir), device="cpu")

    assert np.abs(pair.encode_query(QUERIES) - leaf.encode_query(QUERIES)).max() <= 1e-6
    assert np.abs(pair.encode_document(DOCUMENTS) - teacher.encode_document(DOCUMENTS)).max() <= 1e-6
    # Plain encode takes the document route (the teacher).
    assert np.abs(pair.encode(DOCUMENTS) - teacher.encode(DOCUMENTS)).max() <= 1e-6
    # The routes really differ: the leaf's and the teacher's query vectors are not the same.
    assert np.abs(pair.encode_query(QUERIES) - teacher.encode_query(QUERIES)).max() > 1e-3
    assert pair.get_embedding_dimension() == 48
    assert pair.prompts["query"] == "query: "

    manifest = json.loads((pair_dir / PAIR_MANIFEST).read_text())
    assert manifest["routes"] == {"query": "leaf", "document": "teacher"}
    assert manifest["teacher"] == str(tiny_teacher_dir)
    router = json.loads((pair_dir / "router_config.json").read_text())
    assert router["parameters"]["default_route"] == "document"
    assert sorted(router["structure"]) == ["document", "query"]


def test_rewriting_a_pair_replaces_it(pair_dir, tiny_leaf_dir, tiny_teacher_dir, capsys):
    (pair_dir / "stale.txt").write_text("from an earlier run")
    assert _pair(tiny_leaf_dir, tiny_teacher_dir, pair_dir) == 0
    assert not (pair_dir / "stale.txt").exists()
    assert "encode_query -> leaf" in capsys.readouterr().out
    assert not [p for p in pair_dir.parent.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_dimension_mismatch_is_explained(tmp_path, capsys, tiny_leaf_dir, tiny_student_dir):
    rc = _pair(tiny_leaf_dir, tiny_student_dir, tmp_path / "p")
    assert rc == 2
    err = capsys.readouterr().err
    assert "48 dimensions" in err and "32" in err and "not distilled from this teacher" in err
    assert not (tmp_path / "p").exists()


def test_recorded_teacher_fingerprint_is_checked(tmp_path, capsys, tiny_leaf_dir, tiny_teacher_dir):
    leaf = tmp_path / "leaf"
    shutil.copytree(tiny_leaf_dir, leaf)
    (leaf / "leaf_run.json").write_text(
        json.dumps({"teacher": "some/other-teacher", "teacher_fingerprint": "0" * 16})
    )
    assert _pair(leaf, tiny_teacher_dir, tmp_path / "p") == 2
    err = capsys.readouterr().err
    assert "some/other-teacher" in err and "--force" in err
    assert _pair(leaf, tiny_teacher_dir, tmp_path / "p", "--force") == 0

    # With the right fingerprint no --force is needed.
    teacher_fp = weights_fingerprint(SentenceTransformer(str(tiny_teacher_dir), device="cpu"))
    (leaf / "leaf_run.json").write_text(
        json.dumps({"teacher": str(tiny_teacher_dir), "teacher_fingerprint": teacher_fp})
    )
    assert _pair(leaf, tiny_teacher_dir, tmp_path / "p2") == 0
    assert (
        json.loads((tmp_path / "p2" / PAIR_MANIFEST).read_text())["leaf_run"]["teacher_fingerprint"]
        == teacher_fp
    )


def test_bad_paths(tmp_path, capsys, tiny_leaf_dir, tiny_teacher_dir):
    assert _pair(tmp_path / "nope", tiny_teacher_dir, tmp_path / "o") == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert _pair(tiny_leaf_dir, tiny_teacher_dir, tmp_path / "file") == 2
    assert "is a file" in capsys.readouterr().err
    assert _pair(tiny_leaf_dir, tiny_teacher_dir, tiny_leaf_dir) == 2
    assert "leaf's or the teacher's folder" in capsys.readouterr().err

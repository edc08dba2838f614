"""STS pair files and Spearman; held-out alignment texts and the leaf-vs-teacher distances."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from eval_helpers import write_sts_plain
from scipy.stats import spearmanr

from leaf_hub.cli import main
from leaf_hub.errors import LeafHubError
from leaf_hub.evaluation.alignment import embedding_distance, load_alignment_texts
from leaf_hub.evaluation.sts import StsDataset, evaluate_sts, load_sts, read_pairs_file


def test_stsb_layout_with_quotes_and_extra_columns(tmp_path):
    path = tmp_path / "stsb" / "sts-dev.csv"
    path.parent.mkdir()
    path.write_text(
        'main-news\tfile\t2012\t0001\t4.5\tHe said "hi\tShe said "hello"\n'
        "main-news\tfile\t2012\t0002\t1.0\tA cat.\tA dog.\textra\tcolumns\n"
        "main-news\tfile\t2012\t0003\t0.0\tX\tY\n"
    )
    ds = read_pairs_file(path)
    assert ds.name == "stsb-dev"
    assert ds.sentences1 == ['He said "hi', "A cat.", "X"]
    assert ds.sentences2 == ['She said "hello"', "A dog.", "Y"]
    assert ds.scores == [4.5, 1.0, 0.0]


def test_real_stsb_dev_file(shared_data):
    path = shared_data / "eval" / "stsb" / "sts-dev.csv"
    ds = read_pairs_file(path)
    assert len(ds.scores) == sum(1 for line in path.open(encoding="utf-8") if line.strip()) == 1500
    assert ds.sentences1[0] == "A man with a hard hat is dancing."
    assert ds.scores[0] == 5.0
    assert min(ds.scores) >= 0 and max(ds.scores) <= 5


def test_plain_tsv_with_and_without_header(tmp_path):
    with_header = read_pairs_file(write_sts_plain(tmp_path / "a.tsv", n=10, header=True))
    without = read_pairs_file(write_sts_plain(tmp_path / "b.tsv", n=10, header=False))
    assert len(with_header.scores) == len(without.scores) == 10
    assert with_header.sentences1 == without.sentences1
    assert load_sts(f"mine={tmp_path / 'a.tsv'}").name == "mine"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1.0\tonly two\n", "tab-separated columns"),
        ("1.0\ta\tb\n2.0\ta\n", "expected score, s1, s2"),
        ("1.0\ta\tb\nx\ta\tb\n", "score is not a number"),
        ("1.0\ta\tb\n1.0\tc\td\n", "same score"),
        ("1.0\ta\tb\n", "at least two"),
    ],
)
def test_bad_pair_files(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(LeafHubError, match=message):
        read_pairs_file(path)


def test_spearman_of_cosine_and_asymmetric_pairs():
    ds = StsDataset("t", ["a", "b", "c", "a"], ["b", "c", "d", "d"], [1, 2, 3, 4])
    sentences, ia, ib = ds.unique_sentences()
    assert sentences == ["a", "b", "c", "d"]
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(4, 8))
    other = rng.normal(size=(4, 8))
    cos = [
        float(emb[i] @ other[j] / np.linalg.norm(emb[i]) / np.linalg.norm(other[j]))
        for i, j in zip(ia, ib, strict=True)
    ]
    assert evaluate_sts(ds, emb, other)["spearman"] == pytest.approx(spearmanr(cos, [1, 2, 3, 4]).statistic)


def test_hub_stsb_offline_error(tmp_path, tiny_teacher_dir, tiny_leaf_dir, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = main(
        ["evaluate", "--leaf", str(tiny_leaf_dir), "--teacher", str(tiny_teacher_dir), "--sts", "stsb"]
        + ["--output", str(tmp_path / "r.json"), "--no-save-to-leaf"]
    )
    assert rc == 2
    assert "sentence-transformers/stsb" in (err := capsys.readouterr().err) and "offline" in err


def test_alignment_texts_from_files_and_run_folder(tmp_path):
    (tmp_path / "plain.txt").write_text("one\n\ntwo\nthree\n")
    plain = load_alignment_texts(tmp_path / "plain.txt")
    assert (plain.texts, plain.queries, plain.documents) == (["one", "two", "three"], [], [])
    rows = [
        {"text": "what is a cat", "type": "query"},
        {"text": "A cat is an animal.", "type": "document"},
        {"text": "untyped"},
    ]
    body = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "v.jsonl").write_text(body)
    with gzip.open(tmp_path / "v.jsonl.gz", "wt") as f:
        f.write(body)
    run = tmp_path / "run"
    run.mkdir()
    (run / "validation.jsonl").write_text(body)
    for source in (tmp_path / "v.jsonl", tmp_path / "v.jsonl.gz", run):
        texts = load_alignment_texts(source)
        assert texts.queries == ["what is a cat"]
        assert texts.documents == ["A cat is an animal."]
        assert texts.texts == ["untyped"]
    assert len(load_alignment_texts(tmp_path / "v.jsonl", limit=2)) == 2
    with pytest.raises(LeafHubError, match="validation.jsonl"):
        load_alignment_texts(tmp_path)  # a folder without a validation split
    (tmp_path / "bad.jsonl").write_text('{"txt": 1}\n')
    with pytest.raises(LeafHubError, match="no 'text'"):
        load_alignment_texts(tmp_path / "bad.jsonl")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(LeafHubError, match="no texts"):
        load_alignment_texts(tmp_path / "empty.txt")


def test_embedding_distance():
    t = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    leaf = np.array([[0.0, 1.0], [0.0, 2.0]], dtype=np.float32)
    d = embedding_distance(t, leaf)
    assert d["l2"] == pytest.approx((np.sqrt(2) + 1) / 2)
    assert d["cosine"] == pytest.approx(0.5)
    with pytest.raises(LeafHubError, match="not distilled from this teacher"):
        embedding_distance(t, np.zeros((2, 3), dtype=np.float32))

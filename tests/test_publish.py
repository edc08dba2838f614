"""``leaf-hub publish`` against a real local Hub-compatible HTTP server (tests/hub_server.py)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from leaf_hub.cli import main
from leaf_hub.hub.card import CARD_MARKER

TEXTS = ["what is a leaf model?", "The cat sat on the mat.", "Distillation makes small models fast."]


@pytest.fixture()
def leaf_dir(tmp_path, tiny_leaf_dir) -> Path:
    folder = tmp_path / "leaf"
    shutil.copytree(tiny_leaf_dir, folder)
    run = {"teacher": "sentence-transformers/all-mpnet-base-v2", "student": "sentence-transformers/all-MiniLM-L6-v2",
           "data": ["texts.jsonl.gz"], "num_texts": 100, "steps": 10, "epochs": 1.0, "batch_size": 8,
           "hardware": "cpu", "wall_time_s": 12.0, "validation": {"l2": 0.5, "cosine": 0.8}}  # fmt: skip
    (folder / "leaf_run.json").write_text(json.dumps(run))
    (folder / "eval_report.json").write_text(json.dumps({"results": {"leaf": {"cisi": {"ndcg@10": 0.12}}}}))
    (folder / "plots").mkdir()
    (folder / "plots" / "alignment.png").write_bytes(b"\x89PNG\r\n\x1a\n fake plot bytes")
    (folder / ".leaf.tmp").write_text("an unfinished atomic write")  # never uploaded
    return folder


def _expected_files(folder: Path) -> dict[str, int]:
    files = {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name != "journal.jsonl"
    }
    files.pop("README.md", None)  # rendered by publish
    return files


def _dry_run_files(out: str) -> dict[str, int]:
    files = {}
    for line in out.splitlines():
        match = re.fullmatch(r"\s+([\d,]+)  (\S+)(?:  \(.*\))?", line)
        if match:
            files[match.group(2)] = int(match.group(1).replace(",", ""))
    return files


def _publish(*args: str) -> int:
    return main(["publish", *args])


def test_dry_run_prints_the_exact_commit_and_sends_nothing(hub, leaf_dir, capsys):
    assert _publish(str(leaf_dir), "--repo-id", "tester/tiny-leaf", "--dry-run", "--private") == 0
    out = capsys.readouterr().out
    planned = _dry_run_files(out)
    expected = _expected_files(leaf_dir)
    assert {k: v for k, v in planned.items() if k != "README.md"} == expected
    assert "README.md" in planned and "rendered by leaf-hub card" in out
    assert "tester/tiny-leaf (model; created private if missing)" in out
    assert "'Upload leaf with leaf-hub" in out and "branch main" in out
    assert hub.requests == []  # no token was needed and nothing was sent
    # the real publish uploads exactly what the dry run listed
    assert _publish(str(leaf_dir), "--repo-id", "tester/tiny-leaf", "--private", "--token", hub.token) == 0
    files = hub.files("tester/tiny-leaf")
    assert {p: len(c) for p, c in files.items() if p != ".gitattributes"} == planned
    assert hub.repo("tester/tiny-leaf").private


def test_publish_and_download_back_embeds_identically(hub, leaf_dir, tmp_path, monkeypatch, capsys):
    from huggingface_hub import ModelCard, snapshot_download
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv("HF_TOKEN", hub.token)
    assert _publish(str(leaf_dir), "--repo-id", "tester/tiny-leaf") == 0
    out = capsys.readouterr().out
    assert f"published {len(_expected_files(leaf_dir)) + 1} changed files (0 unchanged)" in out
    repo = hub.repo("tester/tiny-leaf")
    assert [c.summary for c in repo.history()][0].startswith("Upload leaf with leaf-hub")
    assert len(repo.history()) == 2  # the Hub's initial commit + one commit for the whole publish
    stored = hub.files("tester/tiny-leaf")
    for path in _expected_files(leaf_dir):
        assert stored[path] == (leaf_dir / path).read_bytes(), path
    card = ModelCard(stored["README.md"].decode())
    assert CARD_MARKER in card.content and 'SentenceTransformer("tester/tiny-leaf")' in card.text
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert (leaf_dir / "README.md").read_text() != stored["README.md"].decode()  # the folder is not modified

    folder = snapshot_download(
        "tester/tiny-leaf", endpoint=hub.url, token=hub.token, cache_dir=tmp_path / "dl"
    )
    local = SentenceTransformer(str(leaf_dir), device="cpu")
    downloaded = SentenceTransformer(folder, device="cpu")
    np.testing.assert_array_equal(local.encode(TEXTS), downloaded.encode(TEXTS))
    np.testing.assert_array_equal(local.encode_query(TEXTS), downloaded.encode_query(TEXTS))
    assert downloaded.prompts.get("query") == local.prompts.get("query")


def test_no_token_and_wrong_token_are_clear(hub, leaf_dir, capsys):
    assert _publish(str(leaf_dir), "--repo-id", "tester/tiny-leaf") == 2
    err = capsys.readouterr().err
    assert (
        "no Hugging Face token" in err and "hf auth login" in err and "HF_TOKEN" in err and "--token" in err
    )
    assert hub.requests == []
    assert _publish(str(leaf_dir), "--repo-id", "tester/tiny-leaf", "--token", "hf_wrong") == 2
    err = capsys.readouterr().err
    assert "rejected the token (401 Unauthorized)" in err and "--token" in err
    assert hub.repos == {}


@pytest.mark.parametrize("mode", ["before", "after"])
def test_network_failure_mid_upload_then_rerun_does_not_duplicate(hub, leaf_dir, capsys, mode):
    args = [str(leaf_dir), "--repo-id", "tester/tiny-leaf", "--token", hub.token]
    hub.fail_commit(mode=mode)  # the connection drops on the commit (before or after the Hub applied it)
    assert _publish(*args) == 2
    err = capsys.readouterr().err
    assert "network failure while uploading the commit" in err and "rerun the same command" in err
    assert _publish(*args) == 0
    out = capsys.readouterr().out
    repo = hub.repo("tester/tiny-leaf")
    assert len(repo.history()) == 2  # exactly one publish commit on top of the initial one
    if mode == "after":
        assert "is up to date" in out  # the first commit had landed: the rerun sends nothing new
    files = hub.files("tester/tiny-leaf")
    assert sorted(files) == sorted([".gitattributes", "README.md", *_expected_files(leaf_dir)])
    # a third publish after a change: one more commit, files overwritten by path, none duplicated
    (leaf_dir / "eval_report.json").write_text(json.dumps({"results": {"leaf": {"cisi": {"ndcg@10": 0.2}}}}))
    assert _publish(*args) == 0
    assert "changed files" in capsys.readouterr().out
    assert len(repo.history()) == 3
    assert sorted(hub.files("tester/tiny-leaf")) == sorted(files)
    assert (
        json.loads(hub.files("tester/tiny-leaf")["eval_report.json"])["results"]["leaf"]["cisi"]["ndcg@10"]
        == 0.2
    )


def test_revision_branch_and_pull_request(hub, leaf_dir, capsys):
    args = [str(leaf_dir), "--repo-id", "tester/tiny-leaf", "--token", hub.token]
    assert _publish(*args, "--revision", "dev", "--commit-message", "first on dev") == 0
    repo = hub.repo("tester/tiny-leaf")
    assert "modules.json" in hub.files("tester/tiny-leaf", revision="dev")
    assert sorted(hub.files("tester/tiny-leaf", revision="main")) == [".gitattributes"]  # main untouched
    assert repo.history("dev")[0].summary == "first on dev"
    assert _publish(*args, "--create-pr") == 0
    out = capsys.readouterr().out
    assert f"opened {hub.url}/tester/tiny-leaf/discussions/1" in out
    assert "modules.json" in hub.files("tester/tiny-leaf", revision="refs/pr/1")
    assert sorted(hub.files("tester/tiny-leaf", revision="main")) == [".gitattributes"]


def test_publish_vocabulary_dataset(hub, tmp_path, capsys):
    import pyarrow.parquet as pq
    from chat_server import ChatServer
    from huggingface_hub import snapshot_download

    words = tmp_path / "words.txt"
    words.write_text("apple\nriver\nmusic\n")
    out = tmp_path / "vocab"
    with ChatServer() as chat:
        argv = ["vocab", "build", "--words", str(words), "--output", str(out), "--base-url", chat.base_url]
        assert main([*argv, "--model", "m", "--api-key", "k"]) == 0
    assert (out / "journal.jsonl").is_file()
    assert _publish(str(out), "--repo-id", "tester/vocabulary", "--token", hub.token) == 0
    files = hub.files("tester/vocabulary", repo_type="dataset")
    assert "journal.jsonl" not in files  # internal progress, already in the dataset files
    assert {"vocabulary.parquet", "vocabulary.jsonl", "failures.jsonl", "build.json", "README.md"} <= set(
        files
    )
    assert "configs:" in files["README.md"].decode()
    folder = snapshot_download(
        "tester/vocabulary", repo_type="dataset", endpoint=hub.url, token=hub.token, cache_dir=tmp_path / "dl"
    )
    assert (
        pq.read_table(Path(folder) / "vocabulary.parquet").to_pylist()
        == pq.read_table(out / "vocabulary.parquet").to_pylist()
    )


def test_publish_teacher_cache_as_dataset(hub, tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    manifest = {"teacher": "sentence-transformers/all-mpnet-base-v2", "teacher_fingerprint": "f" * 16,
                "prompts": {}, "dimension": 4, "normalized": True, "dtype": "float16", "rows": 3}  # fmt: skip
    (cache / "manifest.json").write_text(json.dumps(manifest))
    np.savez(cache / "shard-00000.npz", index=np.arange(3), embedding=np.ones((3, 4), dtype=np.float16))
    assert _publish(str(cache), "--repo-id", "tester/cache", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "tester/cache (dataset;" in out and "shard-00000.npz" in out
    assert _publish(str(cache), "--repo-id", "tester/cache", "--token", hub.token) == 0
    files = hub.files("tester/cache", repo_type="dataset")
    assert files["shard-00000.npz"] == (cache / "shard-00000.npz").read_bytes()
    assert "Teacher weights fingerprint | `ffffffffffffffff`" in files["README.md"].decode()


def test_hand_written_readme_is_kept_and_input_errors(hub, leaf_dir, tmp_path, capsys):
    (leaf_dir / "README.md").write_text("---\nlicense: apache-2.0\n---\n# My own card\n")
    extra = tmp_path / "eval-out"
    extra.mkdir()
    (extra / "report.md").write_text("# report")
    assert _publish(str(leaf_dir), "--repo-id", "tester/x", "--dry-run", "--include", str(extra)) == 0
    out = capsys.readouterr().out
    assert "README.md  (hand-written, kept)" in out
    assert _dry_run_files(out)["eval-out/report.md"] == len("# report")
    assert _publish(str(leaf_dir), "--repo-id", "no-slash", "--dry-run") == 2
    assert "USER/NAME" in capsys.readouterr().err
    assert _publish(str(tmp_path / "missing"), "--repo-id", "tester/x", "--dry-run") == 2
    assert "is not a folder" in capsys.readouterr().err
    run_dir = tmp_path / "run"
    shutil.copytree(leaf_dir, run_dir / "leaf")
    assert _publish(str(run_dir), "--repo-id", "tester/x", "--dry-run") == 2
    assert "publish its final model" in capsys.readouterr().err
    assert hub.requests == []

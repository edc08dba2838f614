"""``leaf-hub publish`` against a real local Hub-compatible HTTP server (tests/hub_server.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from leaf_hub.cli import main
from leaf_hub.files import CHECKED_RECORD, CheckedFiles
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
    # The record of shards checked on this machine (sizes, mtimes, inodes) stays here.
    os.utime(cache / "shard-00000.npz", (1e9, 1e9))
    checks = CheckedFiles(cache / CHECKED_RECORD)
    checks.checked(cache / "shard-00000.npz", tag=1)
    checks.save()
    assert (cache / CHECKED_RECORD).is_file()
    assert _publish(str(cache), "--repo-id", "tester/cache", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "tester/cache (dataset;" in out and "shard-00000.npz" in out and CHECKED_RECORD not in out
    assert _publish(str(cache), "--repo-id", "tester/cache", "--token", hub.token) == 0
    files = hub.files("tester/cache", repo_type="dataset")
    assert files["shard-00000.npz"] == (cache / "shard-00000.npz").read_bytes()
    assert CHECKED_RECORD not in files
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


@pytest.mark.parametrize(
    "repo_id", ["me/bad name", "me/a..b", "me/-x", "me/x--y", "me/" + "a" * 97, "me/é", "a/b/c", "no-slash"]
)
def test_repo_ids_huggingface_hub_refuses_are_refused_client_side(hub, leaf_dir, capsys, repo_id):
    from leaf_hub.errors import ConfigError
    from leaf_hub.hub.publish import PublishPlan, check_repo_id, publish

    assert _publish(str(leaf_dir), "--repo-id", repo_id, "--dry-run") == 2
    err = capsys.readouterr().err
    assert f"--repo-id {repo_id!r}" in err and "the Hub" not in err.replace("Hub repo id", "")
    assert _publish(str(leaf_dir), "--repo-id", repo_id, "--token", hub.token) == 2
    assert "refused" not in capsys.readouterr().err
    with pytest.raises(ConfigError, match="repo_id"):
        check_repo_id(repo_id)
    plan = PublishPlan(leaf_dir, "leaf", repo_id, "model", False, None, False, "m", hub.url)
    with pytest.raises(ConfigError):  # the library call checks too, before any request
        publish(plan, token=hub.token)
    assert hub.requests == []


def test_a_card_that_would_show_a_local_teacher_is_refused(hub, leaf_dir, capsys):
    run = json.loads((leaf_dir / "leaf_run.json").read_text())
    (leaf_dir / "leaf_run.json").write_text(json.dumps({**run, "teacher": "/some/folder/mpnet"}))
    assert _publish(str(leaf_dir), "--repo-id", "tester/tiny-leaf", "--dry-run") == 2
    err = capsys.readouterr().err
    assert "would name the teacher only as the local folder '/some/folder/mpnet'" in err
    assert "--teacher-repo-id OWNER/NAME" in err
    args = [str(leaf_dir), "--repo-id", "tester/tiny-leaf", "--token", hub.token]
    assert _publish(*args, "--teacher-repo-id", "sentence-transformers/all-mpnet-base-v2") == 0
    readme = hub.files("tester/tiny-leaf")["README.md"].decode()
    assert "/some/folder" not in readme and "sentence-transformers/all-mpnet-base-v2" in readme
    # a kept README that shows the path is refused too
    (leaf_dir / "README.md").write_text("---\nlicense: apache-2.0\n---\nDistilled from /some/folder/mpnet.\n")
    assert _publish(*args, "--teacher-repo-id", "sentence-transformers/all-mpnet-base-v2") == 2
    assert "shows the teacher's local path '/some/folder/mpnet'" in capsys.readouterr().err


def test_the_hub_checks_the_cards_metadata_as_the_real_one_does(hub, leaf_dir, capsys):
    from huggingface_hub import HfApi

    (leaf_dir / "README.md").write_text(
        "---\nlicense: my-own-license\nbase_model: /some/folder\n---\n# mine\n"
    )
    assert _publish(str(leaf_dir), "--repo-id", "tester/tiny-leaf", "--token", hub.token) == 2
    err = capsys.readouterr().err
    assert "the Hub refused uploading the commit" in err and '"license"' in err and '"base_model"' in err
    assert ("tester/tiny-leaf" not in {r for _, r in hub.repos}) or hub.files("tester/tiny-leaf").keys() == {
        ".gitattributes"
    }
    (leaf_dir / "README.md").unlink()
    assert _publish(str(leaf_dir), "--repo-id", "tester/tiny-leaf", "--token", hub.token) == 0
    info = HfApi(endpoint=hub.url, token=hub.token).model_info("tester/tiny-leaf")
    assert info.card_data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert info.pipeline_tag == "sentence-similarity" and info.library_name == "sentence-transformers"
    assert "base_model:sentence-transformers/all-MiniLM-L6-v2" in info.tags and "leaf" in info.tags


@pytest.mark.integration
def test_a_real_size_leaf_goes_up_and_comes_back_through_lfs(hub, tmp_path, offline_models, capsys):
    """A MiniLM-sized leaf (90 MB of weights, a 91 MB graph) through the LFS batch API and back, byte for byte."""
    from huggingface_hub import snapshot_download
    from sentence_transformers import SentenceTransformer

    from leaf_hub.leaf import build_leaf

    folder = tmp_path / "leaf"
    # From its snapshot folder: the Hub id would be asked of the test Hub, which does not hold it.
    student = SentenceTransformer(str(offline_models["sentence-transformers/all-MiniLM-L6-v2"]), device="cpu")
    build_leaf(student, teacher_dim=768, normalize=True, max_seq_length=256).save(str(folder))
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model.onnx").write_bytes(np.random.default_rng(0).bytes(91_000_000))
    (folder / "notes.txt").write_text("a large text file\n" * 650_000)  # 11.7 MB: LFS by size alone
    run = {
        "teacher": "sentence-transformers/all-mpnet-base-v2",
        "student": "sentence-transformers/all-MiniLM-L6-v2",
    }
    (folder / "leaf_run.json").write_text(json.dumps(run))
    args = [str(folder), "--repo-id", "tester/real-leaf", "--token", hub.token]
    assert _publish(*args) == 0
    lfs = hub.lfs_files("tester/real-leaf")
    assert {"model.safetensors", "onnx/model.onnx", "notes.txt", "2_Dense/model.safetensors"} <= lfs
    assert "modules.json" not in lfs and "README.md" not in lfs and "config.json" not in lfs
    assert hub.lfs_uploads == len(lfs) and hub.lfs_verified == len(lfs)
    batch_requests = [p for m, p in hub.requests if p.endswith("/info/lfs/objects/batch")]
    assert batch_requests == ["/tester/real-leaf.git/info/lfs/objects/batch"]
    # rerun: the Hub has every object, nothing is uploaded again
    assert _publish(*args) == 0
    assert "is up to date" in capsys.readouterr().out and hub.lfs_uploads == len(lfs)
    # download through the redirects to storage, byte for byte
    local = snapshot_download(
        "tester/real-leaf", endpoint=hub.url, token=hub.token, cache_dir=tmp_path / "dl"
    )
    for path in (p for p in folder.rglob("*") if p.is_file() and p.name != "README.md"):
        rel = path.relative_to(folder)
        assert (Path(local) / rel).read_bytes() == path.read_bytes(), rel
    texts = ["a query", "a document about leaves"]
    np.testing.assert_array_equal(
        SentenceTransformer(str(folder), device="cpu").encode(texts),
        SentenceTransformer(local, device="cpu").encode(texts),
    )


def test_publish_bench_uploads_the_report_the_card_shows(hub, leaf_dir, tmp_path, capsys):
    report = {"meta": {"cpu": "test CPU", "threads": 1, "cores": 2}, "results": [],
              "summary": {"onnx": {"documents_speedup": 6.4, "queries_speedup": 12.6}}}  # fmt: skip
    bench = tmp_path / "X.json"  # leaf-hub bench --output X.json
    bench.write_text(json.dumps(report))
    args = [str(leaf_dir), "--repo-id", "tester/tiny-leaf", "--token", hub.token, "--bench", str(bench)]
    assert _publish(*args) == 0
    files = hub.files("tester/tiny-leaf")
    assert json.loads(files["bench_report.json"]) == report
    assert "12.6x" in files["README.md"].decode() and "No benchmark report" not in files["README.md"].decode()
    assert _publish(*args[:-1], str(tmp_path / "missing.json")) == 2
    assert "--bench" in capsys.readouterr().err

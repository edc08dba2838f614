"""distill on the out-of-core path: the same leaf as the in-memory recipe, kill -9 in every phase then a
rerun gives the uninterrupted result, and what it says about texts it cannot use (issue 17, issue 19)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from leaf_hub.cli import main
from leaf_hub.errors import LeafHubError

REPO = Path(__file__).resolve().parents[1]
WORDS = "the cat dog house car tree water fire city music science history language computer data".split()


def _data(path: Path, n: int = 600, extra: list[dict] | None = None) -> Path:
    rng = np.random.default_rng(0)
    rows = [
        {
            "text": " ".join(rng.choice(WORDS, rng.integers(1, 30))),
            "type": "query" if i % 3 == 0 else "document",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows + (extra or [])))
    return path


def _args(teacher, student, data, out, *extra) -> list[str]:
    return ["distill", "--teacher", str(teacher), "--student", str(student), "--data", str(data), "--output", str(out),
            "--batch-size", "16", "--val-batches", "2", "--max-steps", "14", "--eval-every", "7", "--save-every", "4",
            "--cache-shard-size", "64", "--seed", "3", *extra]  # fmt: skip


def _weights(leaf_dir: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(leaf_dir.rglob("*.safetensors")):
        out.update({f"{path.relative_to(leaf_dir)}:{k}": v for k, v in load_file(path).items()})
    return out


def _same_leaf(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and wa
    assert all(np.array_equal(wa[k], wb[k]) for k in wa), "the leaves differ"


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_teacher_dir, tiny_student_dir):
    """One uninterrupted run: the reference of the equivalence and kill tests."""
    base = tmp_path_factory.mktemp("straight")
    data = _data(base / "texts.jsonl")
    assert main(_args(tiny_teacher_dir, tiny_student_dir, data, base / "run")) == 0
    return base / "run", data


def test_same_leaf_as_the_in_memory_recipe(straight, tmp_path, tiny_teacher_dir, tiny_student_dir):
    """The recipe run by hand on in-memory lists (texts, float32 targets, token lists) gives the same leaf."""
    from leaf_hub.data.texts import load_texts
    from leaf_hub.leaf import build_leaf, projection
    from leaf_hub.models import load_model
    from leaf_hub.teachers import load_teacher
    from leaf_hub.teachers.cache import TeacherCache
    from leaf_hub.training.config import TrainConfig
    from leaf_hub.training.data import TrainData
    from leaf_hub.training.distill import split_validation, tokenize_for_leaf
    from leaf_hub.training.trainer import train
    from leaf_hub.training.warm_start import fit_ridge_projection, pooled_embeddings, set_projection

    run, data_path = straight
    records = load_texts([str(data_path)], seed=3).records
    texts, kinds = [r.text for r in records], [r.kind for r in records]
    teacher = load_teacher(str(tiny_teacher_dir), device="cpu")
    targets = TeacherCache(tmp_path / "cache", shard_size=64).build(teacher, texts, kinds)
    assert isinstance(targets, np.ndarray) and targets.dtype == np.float32
    leaf = build_leaf(
        load_model(str(tiny_student_dir), device="cpu"), teacher.dimension, teacher.normalized,
        dict(teacher.prompts), teacher.max_seq_length,
    )  # fmt: skip
    ids = tokenize_for_leaf(leaf, texts, kinds, dict(teacher.prompts))
    train_idx, val_idx = split_validation(len(texts), 2, 16, 3)
    data = TrainData(ids, targets, train_idx, val_idx, leaf[0].tokenizer.pad_token_id or 0)
    rows = train_idx[np.random.default_rng(3).permutation(len(train_idx))[:20000]]
    w, warm = fit_ridge_projection(
        pooled_embeddings(leaf, [ids[i] for i in rows], data.pad_token_id), targets[rows], seed=3
    )
    set_projection(projection(leaf), w)
    config = TrainConfig(batch_size=16, max_steps=14, eval_every=7, save_every=4, seed=3)
    train(
        leaf, data, tmp_path / "by-hand", config, warm_start=warm
    )  # a warm-started run warms up its backbone
    _same_leaf(run / "leaf", tmp_path / "by-hand" / "leaf")
    read = lambda p: [json.loads(line) for line in p.read_text().splitlines()]  # noqa: E731
    assert read(run / "metrics.jsonl") == read(tmp_path / "by-hand" / "metrics.jsonl") or all(
        {k: v for k, v in a.items() if k != "elapsed_s"} == {k: v for k, v in b.items() if k != "elapsed_s"}
        for a, b in zip(
            read(run / "metrics.jsonl"), read(tmp_path / "by-hand" / "metrics.jsonl"), strict=True
        )
    )


KILLS = {
    # phase: (code run before main(), patching the step after which the process kills itself)
    "ingest": """
        from leaf_hub.data import readers, store
        store.PART_ROWS, readers.BATCH_ROWS = 100, 50
        real = store._Ingest._commit
        def patched(self, *a):
            real(self, *a)
            die_at(3)
        store._Ingest._commit = patched
    """,
    "tokenize": """
        from leaf_hub.data import tokens
        tokens.CHUNK_ROWS = 128
        real = tokens._append
        def patched(*a):
            real(*a)
            die_at(2)
        tokens._append = patched
    """,
    "cache": """
        from leaf_hub.teachers import cache
        real = cache.atomic_write_bytes
        def patched(*a):
            real(*a)
            die_at(3)
        cache.atomic_write_bytes = patched
    """,
    "training": """
        from leaf_hub.training import loss
        real = loss.leaf_loss
        def patched(*a):
            die_at(10)  # during step 10; the last state saved is step 8
            return real(*a)
        loss.leaf_loss = patched
    """,
}


@pytest.mark.parametrize("phase", list(KILLS))
def test_kill_9_in_each_phase_then_rerun_gives_the_uninterrupted_leaf(
    phase, straight, tmp_path, tiny_teacher_dir, tiny_student_dir
):
    run, data = straight
    args = _args(tiny_teacher_dir, tiny_student_dir, data, tmp_path / "run")
    # The killed run computes its first steps in another process: with this process's thread count, so
    # the floating-point sums (and so the leaf) are the ones the uninterrupted run computed here.
    code = f"import torch\ntorch.set_num_threads({torch.get_num_threads()})\n"
    code += "import os, signal\ncalls = []\ndef die_at(n):\n    calls.append(1)\n    if len(calls) == n:\n"
    code += "        os.kill(os.getpid(), signal.SIGKILL)\n" + textwrap.dedent(KILLS[phase])
    code += f"\nfrom leaf_hub.cli import main\nmain({args!r})\n"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{Path(__file__).parent}"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (tmp_path / "run" / "leaf" / "leaf_run.json").exists()
    assert main([*args, "--resume"]) == 0
    _same_leaf(run / "leaf", tmp_path / "run" / "leaf")


def test_unreadable_texts_are_left_out_with_a_count(tmp_path, tiny_teacher_dir, tiny_student_dir, caplog):
    """Issue 19.6: emoji-only and zero-width texts are not trained on, and the log says how many and why."""
    junk = [{"text": "🙂" * (i + 1), "type": "query"} for i in range(20)]
    junk += [{"text": "\u200b" * (i + 1), "type": "document"} for i in range(15)]
    data = _data(tmp_path / "texts.jsonl", 300, junk)
    with caplog.at_level(logging.WARNING, logger="leaf_hub"):
        assert (
            main(_args(tiny_teacher_dir, tiny_student_dir, data, tmp_path / "run", "--max-steps", "2")) == 0
        )
    assert any("left out 35 of" in r.getMessage() and "emoji" in r.getMessage() for r in caplog.records)
    facts = json.loads((tmp_path / "run" / "leaf" / "leaf_run.json").read_text())
    assert facts["num_train"] + facts["num_validation"] == facts["num_texts"] - 35
    assert facts["tokens"]["unreadable"] == {"query": 20, "document": 15}
    held_out = [
        json.loads(line)["text"] for line in (tmp_path / "run" / "validation.jsonl").read_text().splitlines()
    ]
    assert not any("🙂" in t or "\u200b" in t for t in held_out)


def test_only_unreadable_texts_is_an_error_not_a_perfect_score(tmp_path, tiny_teacher_dir, tiny_student_dir):
    """Issue 19.6: before, every text read as the same ids and validation said L2 0.0000, cosine 1.0000."""
    from leaf_hub import distill

    junk = [{"text": "🙂" * (i + 1), "type": "document"} for i in range(40)]
    path = tmp_path / "junk.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in junk))
    with pytest.raises(LeafHubError, match="none of the 40 training texts is readable") as err:
        distill(teacher=str(tiny_teacher_dir), student=str(tiny_student_dir), data=[str(path)],
                output=tmp_path / "run", max_steps=2, batch_size=4)  # fmt: skip
    assert "\n" not in str(err.value)


def test_texts_far_beyond_the_length_are_counted(tmp_path, tiny_teacher_dir, tiny_student_dir, caplog):
    """Issue 19.11: a 200,000-character text is cut to the leaf's length, and that is said (how many, to what)."""
    from leaf_hub.data.tokens import TokenStore

    huge = [{"text": "the cat sat on the mat. " * 8400, "type": "document"}]
    data = _data(tmp_path / "texts.jsonl", 200, huge)
    with caplog.at_level(logging.INFO, logger="leaf_hub"):
        assert (
            main(_args(tiny_teacher_dir, tiny_student_dir, data, tmp_path / "run", "--max-steps", "1")) == 0
        )
    (folder,) = (tmp_path / "run" / "teacher-cache" / "tokens").iterdir()
    report = TokenStore(folder).report
    assert report.max_length == 64 and report.truncated == {"query": 0, "document": 1}
    assert report.longest_tokens > 40_000
    assert any("cut to their first 64" in r.getMessage() for r in caplog.records)
    # ... and recorded with the leaf, for its card (how many texts were cut, and to what length).
    from leaf_hub import DistillResult

    facts = DistillResult.read(tmp_path / "run" / "leaf")
    assert facts.tokens == report and facts.tokens.truncated_total == 1

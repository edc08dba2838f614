"""`leaf-hub distill` end to end on tiny models, and its one-line errors on bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from embedding_server import serve_embeddings
from sentence_transformers import SentenceTransformer

from leaf_hub.cli import main


def _data(tmp_path, n=300):
    words = "the cat dog house car tree water fire city music science history language computer data".split()
    rng = np.random.default_rng(0)
    path = tmp_path / "texts.jsonl"
    rows = [
        {
            "text": " ".join(rng.choice(words, rng.integers(1, 15))),
            "type": "query" if i % 3 == 0 else "document",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _error_line(stderr: str) -> str:
    """The one error line (progress bars also go to stderr); a traceback fails the test."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("leaf-hub distill: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def _args(teacher, student, data, out, *extra):
    return ["distill", "--teacher", str(teacher), "--student", str(student), "--data", str(data), "--output", str(out),
            "--batch-size", "16", "--val-batches", "2", "--max-steps", "12", "--eval-every", "6", "--save-every", "6", *extra]  # fmt: skip


def test_distill_writes_a_loadable_leaf_in_the_teachers_space(
    tmp_path, tiny_teacher_dir, tiny_student_dir, capsys
):
    data = _data(tmp_path)
    out = tmp_path / "run"
    assert main(_args(tiny_teacher_dir, tiny_student_dir, data, out)) == 0
    printed = capsys.readouterr().out
    assert "validation L2" in printed and "cosine to teacher" in printed
    leaf = SentenceTransformer(str(out / "leaf"), device="cpu")
    teacher = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    assert [type(m).__name__ for m in leaf] == ["Transformer", "Pooling", "Dense", "Normalize"]
    assert leaf.prompts.get("query") == "query: "  # inherited from the teacher
    emb = leaf.encode_query(["what is a cat"])
    assert emb.shape == (1, teacher.get_embedding_dimension())
    assert abs(np.linalg.norm(emb) - 1) < 1e-5
    dense = json.loads((out / "leaf" / "2_Dense" / "config.json").read_text())
    assert dense["bias"] is False and dense["activation_function"].endswith("Identity")
    facts = json.loads((out / "leaf" / "leaf_run.json").read_text())
    assert facts["steps"] == 12 and facts["num_texts"] > 200 and facts["warm_start"]["heldout_cosine"] > 0
    assert (out / "validation.jsonl").is_file() and (out / "teacher-cache" / "manifest.json").is_file()

    # Same teacher and texts again: the cache is reused, and the run folder asks for --resume.
    assert main(_args(tiny_teacher_dir, tiny_student_dir, data, out)) == 2
    assert "--resume" in capsys.readouterr().err
    shared_cache = ["--cache", str(out / "teacher-cache")]
    assert main(_args(tiny_teacher_dir, tiny_student_dir, data, tmp_path / "run2", *shared_cache)) == 0


def test_cache_of_another_teacher_is_refused(tmp_path, tiny_teacher_dir, tiny_student_dir, capsys):
    data = _data(tmp_path, 120)
    out = tmp_path / "run"
    assert main(_args(tiny_teacher_dir, tiny_student_dir, data, out, "--max-steps", "1")) == 0
    # The student is a 32-d model: as a teacher it has another dimension and fingerprint.
    code = main(
        _args(
            tiny_student_dir,
            tiny_student_dir,
            data,
            tmp_path / "other",
            "--cache",
            str(out / "teacher-cache"),
        )
    )
    err = _error_line(capsys.readouterr().err)
    assert code == 2 and "does not match this run" in err and "dimension is 48" in err


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p.write_text(""), "empty"),
        (lambda p: p.write_bytes(b'{"text": "caf\xe9"}\n'), "UTF-8"),
        (lambda p: p.write_text('{"sentence": "a"}\n'), "column"),
    ],
)
def test_bad_data_files_give_one_line_errors(
    tmp_path, tiny_teacher_dir, tiny_student_dir, capsys, setup, message
):
    bad = tmp_path / "bad.jsonl"
    setup(bad)
    assert main(_args(tiny_teacher_dir, tiny_student_dir, bad, tmp_path / "run")) == 2
    err = _error_line(capsys.readouterr().err)
    assert message.lower() in err.lower() and str(bad) in err


def test_bad_options_and_models_give_one_line_errors(tmp_path, tiny_teacher_dir, tiny_student_dir, capsys):
    data = _data(tmp_path, 50)
    assert main(_args(tiny_teacher_dir, tiny_student_dir, data, tmp_path / "r", "--batch-size", "0")) == 2
    assert "--batch-size must be a positive integer" in capsys.readouterr().err
    assert main(_args(tiny_teacher_dir, tiny_student_dir, data, tmp_path / "r", "--head-lr", "0")) == 2
    assert "--head-lr must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse: usage line plus the reason, exit code 2
        main(_args(tiny_teacher_dir, tiny_student_dir, data, tmp_path / "r", "--dropout", "1.5"))
    assert exc.value.code == 2 and "dropout must be in [0, 1) or 'model'" in capsys.readouterr().err
    assert main(_args("nobody/no-such-model-xyz", tiny_student_dir, data, tmp_path / "r")) == 2
    assert "unknown model 'nobody/no-such-model-xyz'" in capsys.readouterr().err
    assert (
        main(_args("http://127.0.0.1:9/v1", tiny_student_dir, data, tmp_path / "r", "--api-model", "m")) == 2
    )
    assert "127.0.0.1:9" in capsys.readouterr().err


def test_onnx_teacher_backend_reuses_the_pytorch_teachers_cache(
    tmp_path, tiny_teacher_dir, tiny_student_dir, monkeypatch
):
    monkeypatch.setenv("LEAF_HUB_CACHE", str(tmp_path / "leaf-hub-cache"))
    data = _data(tmp_path, 120)
    cache = tmp_path / "shared-cache"
    short = ["--cache", str(cache), "--max-steps", "2"]
    assert main(_args(tiny_teacher_dir, tiny_student_dir, data, tmp_path / "a", *short)) == 0
    shards = {p.name: p.stat().st_mtime_ns for p in cache.glob("shard-*.npz")}
    onnx = [*short, "--teacher-backend", "onnx"]
    assert main(_args(tiny_teacher_dir, tiny_student_dir, data, tmp_path / "b", *onnx)) == 0
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("shard-*.npz")} == shards  # nothing re-embedded


def _failure(proc) -> str:
    """The traceback lines of every rank (the launcher's own output is mostly noise)."""
    return "\n".join(line for line in proc.stderr.splitlines() if "Error" in line or "File" in line)[-6000:]


def test_distill_under_accelerate_launch_with_two_processes(tmp_path, tiny_teacher_dir, tiny_student_dir):
    """`accelerate launch` with 2 CPU processes (gloo DDP): the teacher cache is split across them and equals
    a single-process cache; training runs in step, resumes, and leaves one loadable leaf."""
    import os
    import subprocess
    import sys

    data = _data(tmp_path)
    out = tmp_path / "run"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "leaf_hub"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = _args(tiny_teacher_dir, tiny_student_dir, data, out, "--cache-shard-size", "64")
    proc = subprocess.run([*launch, *args], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, _failure(proc)
    run = json.loads((out / "run.json").read_text())
    assert run["train"]["num_processes"] == 2 and run["steps"] == 12
    assert 12 * 16 < run["train"]["texts_seen"] <= 12 * 16 * 2  # each step takes one batch per process

    # The same cache as one process builds.
    single = tmp_path / "single"
    assert (
        main(
            _args(
                tiny_teacher_dir,
                tiny_student_dir,
                data,
                single,
                "--max-steps",
                "1",
                "--cache-shard-size",
                "64",
            )
        )
        == 0
    )
    from leaf_hub.teachers.cache import TeacherCache

    shards = sorted(p.name for p in (out / "teacher-cache").glob("shard-*.npz"))
    assert len(shards) == 5 and shards == sorted(
        p.name for p in (single / "teacher-cache").glob("shard-*.npz")
    )
    np.testing.assert_array_equal(
        TeacherCache(out / "teacher-cache").load(), TeacherCache(single / "teacher-cache").load()
    )

    leaf = SentenceTransformer(str(out / "leaf"), device="cpu")
    assert (
        leaf.encode(["a cat"]).shape[1]
        == SentenceTransformer(str(tiny_teacher_dir)).get_embedding_dimension()
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == len({(r["step"], r["event"]) for r in records}), "only the main process logs"

    # Resume under the launcher: more steps continue from the saved state.
    more = [*args, "--max-steps", "18", "--resume"]  # the last --max-steps wins
    proc = subprocess.run([*launch, *more], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, _failure(proc)
    assert json.loads((out / "run.json").read_text())["steps"] == 18


@pytest.mark.parametrize("where", ["userinfo", "query"])
def test_a_key_in_the_teacher_url_reaches_no_file_log_or_card(
    tmp_path, tiny_teacher_dir, tiny_student_dir, capsys, caplog, where
):
    key = "sk-SECRET-4f2b9"
    teacher = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    auth = {"basic_auth": ("me", key)} if where == "userinfo" else {}
    with serve_embeddings(teacher, **auth) as server:
        url = (
            server.url.replace("http://", f"http://me:{key}@")
            if where == "userinfo"
            else f"{server.url}?api_key={key}"
        )
        out = tmp_path / "run"
        with caplog.at_level(logging.DEBUG):
            assert (
                main(_args(url, tiny_student_dir, _data(tmp_path), out, "--api-model", server.model_name))
                == 0
            )
            assert main(["card", "--model", str(out / "leaf")]) == 0
        assert server.ok_requests > 0  # the key did its job: the server accepted the requests
    captured = capsys.readouterr()
    assert key not in captured.out + captured.err + caplog.text
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "README.md" for p in written) and any(p.name == "manifest.json" for p in written)
    for path in written:
        assert key.encode() not in path.read_bytes(), path
    assert json.loads((out / "run.json").read_text())["options"]["teacher"].startswith(
        "http://***@" if where == "userinfo" else "http://127.0.0.1"
    )


@pytest.mark.parametrize("rows", [1, 5])
def test_too_few_texts_are_refused_before_any_model_loads(tmp_path, tiny_student_dir, capsys, rows):
    """The teacher does not exist: if the models loaded first, the error would name it instead."""
    data = _data(tmp_path, rows)
    assert (
        main(_args("nobody/no-such-model-xyz", tiny_student_dir, data, tmp_path / "r", "--cycles", "1")) == 2
    )
    err = _error_line(capsys.readouterr().err)
    assert "needs at least 10" in err and "--data" in err and "no-such-model" not in err


def test_refusals_come_before_the_models_load(tmp_path, tiny_teacher_dir, tiny_student_dir, capsys):
    data = _data(tmp_path, 60)
    out = tmp_path / "run"
    assert main(_args(tiny_teacher_dir, tiny_student_dir, data, out, "--max-steps", "2")) == 0
    capsys.readouterr()
    # A rerun into a folder with saved state, with a teacher that would fail to load: the --resume advice wins.
    assert main(_args("nobody/no-such-model-xyz", tiny_student_dir, data, out)) == 2
    err = _error_line(capsys.readouterr().err)
    assert "--resume" in err and "no-such-model" not in err
    # A data file that is not what it claims: named before any model loads.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    assert main(_args("nobody/no-such-model-xyz", tiny_student_dir, bad, tmp_path / "other")) == 2
    err = _error_line(capsys.readouterr().err)
    assert str(bad) in err and "no-such-model" not in err
    assert main(_args(tiny_teacher_dir, tiny_student_dir, data, tmp_path / "r0", "--val-batches", "0")) == 2
    assert "--val-batches must be at least 1" in _error_line(capsys.readouterr().err)

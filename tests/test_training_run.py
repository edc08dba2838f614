"""Training on sentence-transformers' trainer: the loss, the sampler, and what a run folder guarantees
(a kill mid-save, resumed records, file modes, log lines beside the progress bar, DataLoader workers)."""

from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np
import pytest
import torch
import transformers
from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss
from test_train import _setup

from leaf_hub.training.config import TrainConfig
from leaf_hub.training.data import TrainData
from leaf_hub.training.loss import LeafDistillLoss, leaf_loss
from leaf_hub.training.sampler import LengthGroupedBatchSampler, TrainDataset
from leaf_hub.training.trainer import train


def test_embed_distill_l2_is_the_leaf_loss_in_float32(tiny_student_dir):
    leaf, data = _setup(tiny_student_dir)
    pred = torch.randn(8, 16)
    target = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    expected = torch.stack([(p - t).pow(2).sum().sqrt() for p, t in zip(pred, target, strict=True)]).mean()
    st = EmbedDistillLoss(leaf, distance_metric="l2").compute_loss_from_embeddings([pred], [target])
    ours = LeafDistillLoss(leaf).compute_loss_from_embeddings([pred], [target])
    assert torch.equal(st, leaf_loss(pred, target)) and torch.equal(ours, st)
    torch.testing.assert_close(ours, expected)
    # In half precision sentence-transformers' loss casts the teacher down; ours stays in float32.
    half = LeafDistillLoss(leaf).compute_loss_from_embeddings([pred.bfloat16()], [target])
    assert half.dtype == torch.float32
    assert EmbedDistillLoss(leaf, "l2").compute_loss_from_embeddings([pred.bfloat16()], [target]).dtype == (
        torch.bfloat16
    )


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("n", [1, 31, 700, 4100])
def test_sampler_splits_an_epoch_into_equal_disjoint_shares(grouped, n):
    lengths = np.random.default_rng(n).integers(1, 200, size=n)
    ids = [[1] * int(length) for length in lengths]
    data = TrainData(ids, np.zeros((n, 2), np.float32), np.arange(n), np.arange(0), pad_token_id=0)
    dataset = TrainDataset(data, data.train_idx)
    samplers = [
        LengthGroupedBatchSampler(dataset, 32, seed=5, grouped=grouped, num_processes=3, process_index=i)
        for i in range(3)
    ]
    for epoch in (0, 1):
        shares = []
        for s in samplers:
            s.set_epoch(epoch)
            shares.append(list(s))
            assert len(shares[-1]) == len(s)
        assert len({len(share) for share in shares}) == 1, "every process takes as many batches"
        single = LengthGroupedBatchSampler(dataset, 32, seed=5, grouped=grouped)
        single.set_epoch(epoch)
        everything = list(single)
        assert len(everything) == len(single)
        assert sorted(i for b in everything for i in b) == list(range(n))
        if len(everything) >= 3:  # process i takes batches i, i + 3, ...
            assert [shares[i][k] for k in range(len(shares[0])) for i in range(3)] == everything[
                : 3 * len(shares[0])
            ]


def test_kill_while_saving_the_state_resumes_from_the_last_complete_one(
    tmp_path, tiny_student_dir, monkeypatch
):
    """transformers writes a checkpoint straight into checkpoint-N and its resume takes the highest N: a kill in
    the middle of a save would leave a half-written state that the next run trusts."""
    config = TrainConfig(batch_size=16, lr=1e-3, max_steps=12, eval_every=5, save_every=4, seed=2)
    leaf, data = _setup(tiny_student_dir, seed=1)
    train(leaf, data, tmp_path / "straight", config)
    expected = {k: v.clone() for k, v in leaf.state_dict().items()}

    saves = {"n": 0}
    real = transformers.Trainer._save_rng_state

    def dying_save(self, output_dir):  # weights and optimizer of step 8 are written; the RNG state is not
        saves["n"] += 1
        if saves["n"] == 2:
            raise KeyboardInterrupt
        return real(self, output_dir)

    monkeypatch.setattr(transformers.Trainer, "_save_rng_state", dying_save)
    leaf, data = _setup(tiny_student_dir, seed=1)
    with pytest.raises(KeyboardInterrupt):
        train(leaf, data, tmp_path / "killed", config)
    monkeypatch.setattr(transformers.Trainer, "_save_rng_state", real)
    assert (tmp_path / "killed" / ".trainer" / "checkpoint-8" / "optimizer.pt").is_file()  # the partial save
    assert json.loads((tmp_path / "killed" / "state" / "trainer_state.json").read_text())["global_step"] == 4

    fresh, data = _setup(tiny_student_dir, seed=1)
    result = train(fresh, data, tmp_path / "killed", config, resume=True)
    assert result.steps == 12
    for name, value in fresh.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)


def test_a_resumed_run_reports_like_an_uninterrupted_one(tmp_path, tiny_student_dir, monkeypatch):
    """The loss printed at a validation covers every step since the previous one, and the run's totals
    (loss, texts, training seconds, the warm start) count every invocation."""
    from leaf_hub.training import loss as loss_module

    config = TrainConfig(batch_size=16, lr=1e-3, max_steps=12, eval_every=5, save_every=3, seed=4)
    warm = {"alpha": 0.01, "heldout_cosine": 0.5}
    leaf, data = _setup(tiny_student_dir, seed=2)
    straight = train(leaf, data, tmp_path / "straight", config, warm_start=warm)

    calls = {"n": 0}
    real_loss = loss_module.leaf_loss

    def dying_loss(pred, target):
        calls["n"] += 1
        if calls["n"] == 8:  # killed in step 8: the state of step 6 is saved, the last validation was at 5
            raise KeyboardInterrupt
        return real_loss(pred, target)

    monkeypatch.setattr(loss_module, "leaf_loss", dying_loss)
    leaf, data = _setup(tiny_student_dir, seed=2)
    with pytest.raises(KeyboardInterrupt):
        train(leaf, data, tmp_path / "killed", config, warm_start=warm)
    monkeypatch.setattr(loss_module, "leaf_loss", real_loss)
    leaf, data = _setup(tiny_student_dir, seed=2)
    resumed = train(leaf, data, tmp_path / "killed", config, resume=True)  # the warm start is not refitted

    def losses(folder):
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["loss"] for r in rows if "loss" in r}

    assert losses(tmp_path / "killed").keys() == losses(tmp_path / "straight").keys() == {5, 10, 12}
    for step, value in losses(tmp_path / "straight").items():
        assert losses(tmp_path / "killed")[step] == pytest.approx(value, abs=1e-6)
    assert resumed.train_loss == pytest.approx(straight.train_loss, abs=1e-6)
    assert resumed.texts_seen == straight.texts_seen and resumed.invocations == 2
    assert resumed.warm_start == warm
    assert resumed.train_time_s > 0 and resumed.final.elapsed_s == pytest.approx(
        resumed.train_time_s, abs=0.1
    )


def test_saved_files_have_the_usual_mode(tmp_path, tiny_student_dir):
    leaf, data = _setup(tiny_student_dir, n=200)
    train(leaf, data, tmp_path, TrainConfig(batch_size=16, max_steps=12, eval_every=6, save_every=6))
    mask = os.umask(0)
    os.umask(mask)
    files = [p for d in ("leaf", "state", "checkpoints") for p in (tmp_path / d).rglob("*") if p.is_file()]
    assert any(p.name == "model.safetensors" for p in files)
    assert {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in files} == {
        p.relative_to(tmp_path).as_posix(): oct(0o666 & ~mask) for p in files
    }


def test_log_lines_do_not_land_on_the_progress_bar(tmp_path, tiny_student_dir, capsys):
    handler = logging.StreamHandler(sys.stderr)  # the console handler the command line's basicConfig adds
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        leaf, data = _setup(tiny_student_dir, n=200)
        train(leaf, data, tmp_path, TrainConfig(batch_size=16, max_steps=9, eval_every=3, save_every=3))
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "training:" in err, "the progress bar is drawn"
    lines = [line for line in err.split("\n") if "LOG " in line]
    assert sum("state saved at step" in line for line in lines) == 3
    for line in lines:  # whatever the bar drew on this line was erased (\r) before the log line
        assert line.split("\r")[-1].startswith("LOG "), repr(line)


def test_dataloader_workers_give_the_same_leaf(tmp_path, tiny_student_dir):
    leaves = []
    for workers in (0, 2):
        leaf, data = _setup(tiny_student_dir, n=200, seed=3)
        config = TrainConfig(batch_size=16, lr=1e-3, max_steps=8, eval_every=8, dataloader_workers=workers)
        train(leaf, data, tmp_path / f"w{workers}", config)
        leaves.append(leaf.state_dict())
    for name, value in leaves[0].items():
        assert torch.equal(value, leaves[1][name]), name


def test_distill_resumed_keeps_the_warm_start_and_counts_all_its_time(
    tmp_path, tiny_teacher_dir, tiny_student_dir, capsys
):
    """Issue 19: after a resume, leaf_run.json and run.json said warm_start null and counted only the last
    invocation's time."""
    from test_distill_cli import _args, _data

    from leaf_hub.cli import main

    data = _data(tmp_path)
    out = tmp_path / "run"
    assert main(_args(tiny_teacher_dir, tiny_student_dir, data, out, "--max-steps", "6")) == 0
    first = json.loads((out / "leaf" / "leaf_run.json").read_text())
    assert main(_args(tiny_teacher_dir, tiny_student_dir, data, out, "--max-steps", "12", "--resume")) == 0
    facts = json.loads((out / "leaf" / "leaf_run.json").read_text())
    run = json.loads((out / "run.json").read_text())
    assert facts["steps"] == 12 and run["train"]["invocations"] == 2
    assert facts["warm_start"] is not None and facts["warm_start"] == first["warm_start"] == run["warm_start"]
    # Both count every invocation (times are rounded to 0.1 s, and six tiny steps may take less than that).
    assert facts["wall_time_s"] > first["wall_time_s"] and facts["train_time_s"] >= first["train_time_s"]
    assert 11 * 16 < run["train"]["texts_seen"] <= 12 * 16  # one batch of an epoch may be smaller
    capsys.readouterr()


def test_gradient_accumulation_and_bf16_autocast(tmp_path, tiny_student_dir):
    """Two batches per optimizer step count one step (and twice the texts); bf16 autocast trains on the CPU
    too, its loss taken in float32."""
    leaf, data = _setup(tiny_student_dir, n=200)
    config = TrainConfig(
        batch_size=8,
        lr=1e-3,
        max_steps=4,
        eval_every=4,
        gradient_accumulation_steps=2,
        mixed_precision="bf16",
    )
    result = train(leaf, data, tmp_path, config)
    assert result.steps == 4 and 4 * 2 * 8 - 8 < result.texts_seen <= 4 * 2 * 8
    assert np.isfinite(result.train_loss) and result.final.step == 4


def test_after_a_warm_start_the_backbone_rate_warms_up():
    from leaf_hub.training.config import WARM_START_WARMUP
    from leaf_hub.training.schedule import Clock, Schedule

    warm = Schedule(TrainConfig(), total=1000, clock=Clock(), warm_started=True)
    assert warm.factor(0) == pytest.approx(1 / WARM_START_WARMUP) and warm.factor(0, head=True) == 1.0
    assert warm.factor(WARM_START_WARMUP - 1) == 1.0 and warm.factor(WARM_START_WARMUP) < 1.0
    cold = Schedule(TrainConfig(), total=1000, clock=Clock(), warm_started=False)
    assert cold.factor(0) == cold.factor(0, head=True) == 1.0, "no warm start: the paper's schedule"
    off = Schedule(TrainConfig(backbone_warmup_steps=0), total=1000, clock=Clock(), warm_started=True)
    assert off.factor(0) == 1.0
    both = Schedule(TrainConfig(warmup_steps=10), total=1000, clock=Clock(), warm_started=True)
    assert both.factor(4, head=True) == pytest.approx(0.5) and both.factor(4) == pytest.approx(
        5 / WARM_START_WARMUP
    )


def test_the_default_warm_up_keeps_the_warm_start(tmp_path, tiny_student_dir):
    """Issue 20: the first steps at the peak rate undid the warm start (here 0.91 -> 0.33 held-out cosine in
    two steps); with the default warm-up of the backbone's rate the first ten steps keep it."""

    def first_steps(backbone_warmup_steps):
        leaf, data = _setup(tiny_student_dir, n=400, warm=True)
        config = TrainConfig(
            batch_size=16, lr=1e-3, head_lr=5e-4, max_steps=10, eval_every=2,
            backbone_warmup_steps=backbone_warmup_steps,
        )  # fmt: skip
        out = tmp_path / f"warmup-{backbone_warmup_steps}"
        train(leaf, data, out, config, warm_start={"heldout_cosine": 0.9})
        return [json.loads(line)["val_cosine"] for line in (out / "metrics.jsonl").read_text().splitlines()]

    kept = first_steps(None)
    assert kept[0] > 0.8 and min(kept) > kept[0] - 0.02
    undone = first_steps(0)
    assert undone[0] == pytest.approx(kept[0]) and min(undone) < undone[0] - 0.2

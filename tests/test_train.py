"""Training pieces: schedule, batching, warm start, the loop, and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from leaf_hub.errors import ConfigError
from leaf_hub.leaf import build_leaf, projection
from leaf_hub.training import loss as loss_module
from leaf_hub.training import schedule as schedule_module
from leaf_hub.training import trainer as train_module
from leaf_hub.training.batching import length_grouped_batches, random_batches
from leaf_hub.training.config import TrainConfig
from leaf_hub.training.data import TrainData
from leaf_hub.training.distill import split_validation, tokenize_for_leaf
from leaf_hub.training.schedule import lr_factor
from leaf_hub.training.trainer import train
from leaf_hub.training.validation import validate
from leaf_hub.training.warm_start import fit_ridge_projection, pooled_embeddings, set_projection

WORDS = (
    "the cat dog house car tree water fire city music science history language computer data network".split()
)


def test_schedule_has_cycles_of_linear_decay():
    lrs = [1e-4 * lr_factor(s, 30, 3, 1e-4, 1e-5, 0) for s in range(30)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[10] == pytest.approx(1e-4) and lrs[20] == pytest.approx(1e-4)
    assert all(a > b for a, b in zip(lrs[:9], lrs[1:10], strict=True))
    assert min(lrs) >= 1e-5
    assert lr_factor(0, 30, 3, 1e-4, 1e-5, warmup=4) == pytest.approx(0.25)


def test_length_grouped_batches_cover_each_row_once_and_reduce_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, size=2000)
    batches = length_grouped_batches(lengths, 32, seed=1, epoch=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(2000))
    assert batches == length_grouped_batches(lengths, 32, seed=1, epoch=0)
    assert batches != length_grouped_batches(lengths, 32, seed=1, epoch=1)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    random_padded = sum(32 * lengths[rng.permutation(2000)[:32]].max() for _ in batches)
    assert padded < 0.6 * random_padded


def _reference_length_grouped_batches(lengths, batch_size, seed, epoch, group=64):
    """The list-of-lists form the batches had before they were held as arrays (issue 17)."""
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(lengths), batch_size * group):
        chunk = perm[start : start + batch_size * group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


@pytest.mark.parametrize("n", [1, 31, 2048, 5000])
def test_epoch_batches_are_the_same_batches_held_in_flat_int32_arrays(n):
    """Same batches, same order as the list form (so runs resume across versions), at ~4 bytes a row."""
    lengths = np.random.default_rng(n).integers(1, 300, size=n)
    batches = length_grouped_batches(lengths, 32, seed=3, epoch=2)
    assert list(batches) == _reference_length_grouped_batches(lengths, 32, seed=3, epoch=2)
    assert batches.rows.dtype == np.int32 and batches.rows.nbytes == 4 * n
    assert batches[1:4] == list(batches)[1:4] and batches[-1] == list(batches)[-1]
    plain = random_batches(n, 32, seed=3, epoch=0)
    perm = np.random.default_rng([3, 0]).permutation(n)
    assert list(plain) == [perm[i : i + 32].tolist() for i in range(0, n, 32)]


@pytest.mark.parametrize("n", [10, 1000, 4099])
def test_validation_split_is_the_one_of_earlier_versions_in_int32(n):
    """The held-out rows must not change across versions (a resumed run validates on the same rows)."""
    train_idx, val_idx = split_validation(n, 4, 32, seed=7)
    perm = np.random.default_rng(7).permutation(n)
    n_val = min(4 * 32, n // 10)
    assert train_idx.tolist() == sorted(perm[n_val:].tolist()) and val_idx.tolist() == sorted(
        perm[:n_val].tolist()
    )
    assert train_idx.dtype == val_idx.dtype == np.int32


def test_ridge_is_well_conditioned_on_rank_deficient_inputs():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(8, 32))
    x = (rng.normal(size=(500, 8)) @ basis + 1e-6 * rng.normal(size=(500, 32))).astype(np.float32)
    w_true = rng.normal(size=(32, 16))
    y = x @ w_true + 0.1 * rng.normal(size=(500, 16))  # targets the inputs cannot fully explain
    w, info = fit_ridge_projection(x, y)
    lstsq = np.linalg.lstsq(x, y.astype(np.float32), rcond=None)[0]
    assert np.linalg.svd(w, compute_uv=False)[0] < 0.01 * np.linalg.svd(lstsq, compute_uv=False)[0]
    assert info["heldout_cosine"] > 0.95


def _setup(tiny_student_dir, n=400, seed=0, warm=False):
    student = SentenceTransformer(str(tiny_student_dir), device="cpu")
    torch.manual_seed(seed)
    leaf = build_leaf(student, 16, True, {"query": "query: "}, 32)
    rng = np.random.default_rng(seed)
    texts = list(dict.fromkeys(" ".join(rng.choice(WORDS, rng.integers(1, 12))) for _ in range(n)))
    kinds = ["query" if i % 3 == 0 else "document" for i in range(len(texts))]
    ids = tokenize_for_leaf(leaf, texts, kinds, {"query": "query: "})
    # A teacher the student can learn: a fixed nonlinear function of bag-of-words.
    proj = np.random.default_rng(99).normal(size=(len(WORDS), 16))
    bow = np.array([[t.split().count(w) for w in WORDS] for t in texts], dtype=np.float64)
    targets = np.tanh(bow @ proj)
    targets = (targets / np.linalg.norm(targets, axis=1, keepdims=True)).astype(np.float32)
    tr, va = split_validation(len(texts), 2, 16, 0)
    pad = leaf[0].tokenizer.pad_token_id
    if warm:
        w, _ = fit_ridge_projection(pooled_embeddings(leaf, [ids[i] for i in tr], pad), targets[tr])
        set_projection(projection(leaf), w)
    return leaf, TrainData(ids, targets, tr, va, pad)


def test_training_moves_leaf_towards_teacher(tmp_path, tiny_student_dir):
    leaf, data = _setup(tiny_student_dir)
    before = validate(leaf, data, 64, "cpu")
    result = train(
        leaf, data, tmp_path, TrainConfig(batch_size=16, lr=1e-3, max_steps=60, eval_every=30, save_every=30)
    )
    assert result.final.val_l2 < 0.8 * before["val_l2"]
    assert result.final.val_cosine > before["val_cosine"] + 0.05
    reloaded = SentenceTransformer(str(tmp_path / "leaf"), device="cpu")
    assert [type(m).__name__ for m in reloaded] == ["Transformer", "Pooling", "Dense", "Normalize"]
    assert (tmp_path / "checkpoints").is_dir() and (tmp_path / "metrics.jsonl").is_file()


def test_warm_start_beats_random_projection_at_step_zero(tiny_student_dir):
    cold, data = _setup(tiny_student_dir)
    warm, _ = _setup(tiny_student_dir, warm=True)
    assert validate(warm, data, 64, "cpu")["val_cosine"] > validate(cold, data, 64, "cpu")["val_cosine"] + 0.2


def test_resume_after_kill_equals_uninterrupted_run(tmp_path, tiny_student_dir, monkeypatch):
    config = TrainConfig(batch_size=16, lr=1e-3, max_steps=14, eval_every=5, save_every=4, seed=3)
    leaf, data = _setup(tiny_student_dir, seed=1)
    train(leaf, data, tmp_path / "straight", config)
    expected = {k: v.clone() for k, v in leaf.state_dict().items()}

    leaf, data = _setup(tiny_student_dir, seed=1)
    calls = {"n": 0}
    real_loss = loss_module.leaf_loss

    def dying_loss(pred, target):
        calls["n"] += 1
        if calls["n"] == 11:  # killed during step 11; the last saved state is step 8
            raise KeyboardInterrupt
        return real_loss(pred, target)

    monkeypatch.setattr(loss_module, "leaf_loss", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        train(leaf, data, tmp_path / "killed", config)
    monkeypatch.setattr(loss_module, "leaf_loss", real_loss)
    with pytest.raises(ConfigError, match="set resume to continue") as refused:  # the library's words
        train(leaf, data, tmp_path / "killed", config)
    assert refused.value.option == "resume" and "--resume" in refused.value.for_flag("--resume")
    fresh, data = _setup(tiny_student_dir, seed=1)
    with torch.no_grad():  # scramble the weights: resume must restore everything from the saved state
        for p in fresh.parameters():
            p.add_(torch.randn_like(p))
    result = train(fresh, data, tmp_path / "killed", config, resume=True)
    assert result.steps == 14
    for name, value in fresh.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)


def test_max_minutes_runs_the_schedule_on_the_clock(tmp_path, tiny_student_dir, monkeypatch):
    import json
    import types

    clock = {"t": 0.0}

    def tick() -> float:  # a fake clock: every reading is one second later, so each step "takes" ~1 s
        clock["t"] += 1.0
        return clock["t"]

    monkeypatch.setattr(schedule_module, "time", types.SimpleNamespace(monotonic=tick))
    leaf, data = _setup(tiny_student_dir)
    config = TrainConfig(
        batch_size=16, lr=1e-3, min_lr=1e-4, cycles=1, max_minutes=1, eval_every=5, save_every=10
    )
    result = train(leaf, data, tmp_path, config)
    # The paper's 30 epochs are hundreds of steps; a minute of one-second steps is about 60.
    assert 30 < result.steps <= 65
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if r["event"] == "eval"]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False)), "one cycle decays over the whole minute"
    assert lrs[-1] < 0.2 * 1e-3, "the run ends near --min-lr, not cut off at a high learning rate"
    assert lrs[0] > 0.8 * 1e-3


def test_backbone_and_projection_learn_at_their_own_rates(tmp_path, tiny_student_dir):
    import json

    defaults = TrainConfig()
    assert (defaults.lr, defaults.head_lr, defaults.min_lr) == (2e-4, 1e-4, 2e-5)
    leaf, data = _setup(tiny_student_dir)
    head_before = projection(leaf).weight.detach().clone()
    body_before = leaf[0].auto_model.embeddings.word_embeddings.weight.detach().clone()
    config = TrainConfig(
        batch_size=16, lr=1e-3, head_lr=1e-5, min_lr=1e-4, cycles=1, max_steps=10, eval_every=5
    )
    train(leaf, data, tmp_path, config)
    head_step = (projection(leaf).weight - head_before).abs().max().item()
    body_step = (leaf[0].auto_model.embeddings.word_embeddings.weight - body_before).abs().max().item()
    assert 0 < head_step < 0.1 * body_step, "Adam's steps are about the learning rate: 1e-5 against 1e-3"
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "head_lr" in r]
    assert evals[0]["event"] == "start" and evals[-1]["step"] == 10
    assert evals[0]["lr"] == pytest.approx(1e-3) and evals[0]["head_lr"] == pytest.approx(1e-5)
    assert evals[-1]["lr"] < 0.5e-3, "the schedule decays"
    assert all(r["head_lr"] == pytest.approx(r["lr"] / 100) for r in evals), "both decay by the same factor"


@pytest.mark.parametrize("dropout", [0.0, None])
def test_dropout_while_training_and_the_saved_config_keeps_its_own(tmp_path, tiny_student_dir, dropout):
    leaf, data = _setup(tiny_student_dir)
    own = leaf[0].auto_model.config.hidden_dropout_prob
    assert own > 0
    seen: list[tuple[float, bool]] = []
    hooks = [
        m.register_forward_hook(lambda mod, *_: seen.append((mod.p, mod.training)))
        for m in leaf.modules()
        if isinstance(m, torch.nn.Dropout)
    ]
    config = TrainConfig(batch_size=16, lr=1e-3, max_steps=3, eval_every=3, save_every=3, dropout=dropout)
    train(leaf, data, tmp_path, config)
    for h in hooks:
        h.remove()
    in_training = {p for p, training in seen if training}
    assert in_training == ({0.0} if dropout == 0.0 else {own})
    # Without dropout a train-mode forward pass is deterministic; with it, two passes differ.
    leaf.train()
    batch = data.batch(data.train_idx[:8], with_target=False)
    a, b = (leaf(dict(batch))["sentence_embedding"] for _ in range(2))
    assert torch.equal(a, b) == (dropout == 0.0)
    saved = SentenceTransformer(str(tmp_path / "leaf"), device="cpu")
    assert saved[0].auto_model.config.hidden_dropout_prob == own


def test_dropout_out_of_range_is_refused(tiny_student_dir):
    leaf, _ = _setup(tiny_student_dir)
    with pytest.raises(train_module.LeafHubError, match=r"dropout must be in \[0, 1\)"):
        train_module.set_dropout(leaf, 1.0)

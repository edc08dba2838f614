"""The Vocabulary builder against a real local OpenAI-compatible chat server (tests/chat_server.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from chat_server import ChatServer

from leaf_hub.cli import main
from leaf_hub.data.vocabulary import Journal, mentions, parse_answer, validate_answer

REPO = Path(__file__).resolve().parents[1]
WORDS = ["apple", "bank", "run", "carry", "boxes", "zebra", "make", "tree", "music", "river"]


@pytest.fixture()
def words_file(tmp_path) -> Path:
    path = tmp_path / "words.txt"
    path.write_text("# a comment\n" + "\n".join(WORDS) + "\n\nApple\n")  # 'Apple' duplicates 'apple'
    return path


def _build(chat: ChatServer, words: Path, out: Path, *extra: str) -> int:
    return main(
        ["vocab", "build", "--words", str(words), "--output", str(out), "--base-url", chat.base_url]
        + ["--model", "test-model", "--api-key", "secret", "--retry-wait", "0.01", *extra]
    )


def _rows(out: Path) -> list[dict]:
    return pq.read_table(out / "vocabulary.parquet").to_pylist()


def test_validation_rules():
    assert mentions("carry", "She carried the box.") and mentions("make", "Making bread takes time.")
    assert mentions("boxes", "A box is a container.") and mentions("Apple", "an apple a day")
    assert not mentions("carry", "It is heavy.") and not mentions("cat", "A dog is loyal.")
    assert parse_answer('```json\n{"a": ["a b"]}\n```') == {"a": ["a b"]}
    for bad in ("not json at all", '["a list"]', '{"unclosed": '):
        with pytest.raises(ValueError):
            parse_answer(bad)
    verdicts = validate_answer(
        {
            "APPLE": ["An apple is a fruit.", "It is red.", "Apple may refer to a company.", "  "],
            "bank": "A bank holds money.",
            "run": [],
            "zebra": ["Zebra also refers to a crossing.", "zebra can refer to a code"],
            "extra": ["Extra is not asked."],
        },
        ["apple", "bank", "run", "zebra", "tree"],
    )
    assert verdicts["apple"].statements == ["An apple is a fruit."]
    assert sorted(d["reason"] for d in verdicts["apple"].dropped) == [
        "cross-reference",
        "does not contain the term",
        "empty",
    ]
    assert verdicts["apple"].error is None
    assert "not a list" in verdicts["bank"].error
    assert verdicts["run"].error.startswith("no valid statement")
    assert "cross-reference" in verdicts["zebra"].error
    assert verdicts["tree"].error == "missing from the answer"
    assert "extra" not in verdicts


def test_build_validates_retries_and_records_failures(tmp_path, words_file, capsys):
    out = tmp_path / "vocab"
    chat = ChatServer(api_key="secret")
    # request level: a 429 first, then a fenced answer, then garbage for the re-ask of 'bank'
    chat.then("429", "fence", "garbage")
    chat.term("bank", "missing")  # re-asked: garbage, then good
    chat.term("run", "mixed")  # kept with one good statement, two dropped
    chat.term("carry", "noterm", "noterm", "noterm", "noterm")  # never valid: a failure after 3 re-asks
    chat.term("boxes", "crossref", "good")
    chat.term("zebra", "string", "upper")
    with chat:
        assert _build(chat, words_file, out, "--batch-size", "3") == 0
    summary = capsys.readouterr().out
    assert chat.asked["apple"] == 1 and chat.asked["make"] == 1  # good words asked once
    assert chat.asked["bank"] == 3  # missing -> garbage answer -> good
    assert chat.asked["carry"] == 4  # 1 + --max-retries 3
    assert chat.asked["boxes"] == 2 and chat.asked["zebra"] == 2
    assert [r["status"] for r in chat.requests].count(429) == 1
    # re-asks contain only the invalid terms
    assert ["bank"] in [r["terms"] for r in chat.requests]
    assert all("apple" not in r["terms"] for r in chat.requests[2:])
    # the JSON mode and prompt reached the server
    payload = chat.requests[0]["payload"]
    assert payload["model"] == "test-model" and payload["response_format"] == {"type": "json_object"}
    assert "definitions or important facts" in payload["messages"][-1]["content"]

    rows = _rows(out)
    jsonl = [json.loads(line) for line in (out / "vocabulary.jsonl").read_text().splitlines()]
    assert rows == jsonl and set(rows[0]) == {"word", "text"}
    words_out = {r["word"] for r in rows}
    assert words_out == set(WORDS) - {"carry"}
    assert all(mentions(r["word"], r["text"]) for r in rows)
    assert [r["text"] for r in rows if r["word"] == "run"] == ["Run is a word in the test vocabulary."]
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert failures == [
        {"word": "carry", "reason": "no valid statement (does not contain the term)", "attempts": 4}
    ]
    assert "1 failed" in summary and "2 dropped (1 cross-reference, 1 does not contain the term)" in summary
    assert f"{len(rows)} rows" in summary and "1 retried after errors" in summary
    build = json.loads((out / "build.json").read_text())
    assert build["rows"] == len(rows) and build["failed"] == 1 and build["model"] == "test-model"
    from huggingface_hub import DatasetCard

    card = DatasetCard((out / "README.md").read_text())
    assert card.data.to_dict()["configs"][0]["data_files"][0]["path"] == "vocabulary.parquet"
    assert f"**Rows (statements)**: {len(rows)}" in card.text


def test_resume_after_the_endpoint_fails_asks_no_word_twice(tmp_path, words_file, capsys):
    out = tmp_path / "vocab"
    with ChatServer(api_key="secret") as chat:
        chat.then("ok", "ok", *["503"] * 10)  # two batches answered, then the endpoint goes down
        assert _build(chat, words_file, out, "--batch-size", "3", "--max-retries", "2") == 2
        err = capsys.readouterr().err
        assert "kept failing after 3 attempts" in err and "rerun the same command" in err
        assert sum(chat.asked.values()) == 6
        assert len(Journal(out / "journal.jsonl").load()) == 6
        chat.script.clear()
        assert _build(chat, words_file, out, "--batch-size", "3") == 0
    assert "6 done before, 4 asked now" in capsys.readouterr().out
    assert dict(chat.asked) == dict.fromkeys(WORDS, 1)  # server-side count: no word asked twice
    assert {r["word"] for r in _rows(out)} == set(WORDS)
    # a third run has nothing left to ask
    with ChatServer(api_key="secret") as again:
        assert _build(again, words_file, out) == 0
    assert again.requests == []


def test_retry_failed_asks_only_the_failed_words_again(tmp_path, words_file, capsys):
    out = tmp_path / "vocab"
    with ChatServer(api_key="secret") as chat:
        chat.term("carry", "noterm", "empty")
        assert _build(chat, words_file, out, "--max-retries", "1") == 0
        assert [json.loads(x)["word"] for x in (out / "failures.jsonl").read_text().splitlines()] == ["carry"]
        assert _build(chat, words_file, out) == 0  # a plain rerun does not ask the failed word again
        assert chat.asked["carry"] == 2
        assert _build(chat, words_file, out, "--retry-failed") == 0
    assert chat.asked["carry"] == 3 and all(chat.asked[w] == 1 for w in WORDS if w != "carry")
    assert (out / "failures.jsonl").read_text() == ""
    assert "carry" in {r["word"] for r in _rows(out)}


def test_killed_mid_request_resumes_without_asking_twice(tmp_path, words_file):
    out = tmp_path / "vocab"
    chat = ChatServer(api_key="secret", hold_after=2).start()
    try:
        cmd = [
            sys.executable,
            "-m",
            "leaf_hub",
            "vocab",
            "build",
            "--words",
            str(words_file),
            "--output",
            str(out),
        ]
        cmd += ["--base-url", chat.base_url, "--model", "m", "--api-key", "secret", "--batch-size", "3"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while chat.held == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert chat.held == 1, proc.communicate(timeout=5) if proc.poll() is not None else "no request held"
        proc.send_signal(signal.SIGKILL)  # killed while waiting for the third answer
        proc.wait(timeout=30)
        chat.release()
        journal = out / "journal.jsonl"
        assert len(journal.read_text().splitlines()) == 6  # two whole batches were journaled
        with journal.open("a") as fh:  # as if the kill had landed in the middle of a write
            fh.write('{"word": "tree", "status": "ok", "statem')
        chat.hold_after = None
        assert _build(chat, words_file, out, "--batch-size", "3") == 0
    finally:
        chat.stop()
    assert dict(chat.asked) == dict.fromkeys(WORDS, 1)
    lines = (out / "journal.jsonl").read_text().splitlines()
    assert len(lines) == len(WORDS) and all(json.loads(line)["status"] == "ok" for line in lines)
    assert {r["word"] for r in _rows(out)} == set(WORDS)


def test_rate_limit_spaces_requests(tmp_path, words_file):
    with ChatServer(api_key="secret") as chat:
        assert _build(chat, words_file, tmp_path / "v", "--batch-size", "2", "--rate-limit", "20") == 0
    times = [r["time"] for r in chat.requests]
    assert len(times) == 5
    # Arrival times jitter on a busy machine, but the span of 4 spaced sends cannot shrink by more than
    # the jitter of its two ends; unlimited requests would arrive a few milliseconds apart.
    assert times[-1] - times[0] >= 4 / 20 - 0.02
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.5 / 20


def test_endpoint_errors_are_clear(tmp_path, words_file, capsys):
    with ChatServer(api_key="secret") as chat:
        assert _build(chat, words_file, tmp_path / "a", "--api-key", "wrong") == 2
        assert "rejected the API key" in capsys.readouterr().err
        chat.then(*["429"] * 5)
        assert _build(chat, words_file, tmp_path / "b", "--max-retries", "1") == 2
        assert "HTTP 429" in capsys.readouterr().err
        chat.script.clear()
        bad_url = chat.base_url.replace("/v1", "/nope")
        assert _build(chat, words_file, tmp_path / "c", "--base-url", bad_url) == 2
        assert "answered 404" in capsys.readouterr().err
        base = chat.base_url
    # the server is gone: connection refused
    argv = ["vocab", "build", "--words", str(words_file), "--output", str(tmp_path / "d"), "--base-url", base]
    assert main([*argv, "--model", "m", "--api-key", "k", "--max-retries", "1", "--retry-wait", "0.01"]) == 2
    assert "ConnectError" in capsys.readouterr().err


def test_cli_input_errors(tmp_path, words_file, capsys):
    base = ["vocab", "build", "--output", str(tmp_path / "o")]
    assert main([*base, "--words", str(tmp_path / "missing.txt"), "--model", "m", "--api-key", "k"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*base, "--words", str(words_file), "--api-key", "k"]) == 2
    assert "--model" in capsys.readouterr().err
    assert (
        main([*base, "--words", str(words_file), "--model", "m", "--api-key", "k", "--batch-size", "0"]) == 2
    )
    assert "--batch-size 0" in capsys.readouterr().err
    assert main([*base, "--words", str(words_file), "--model", "m", "--api-key", "k", "--limit", "-1"]) == 2
    assert "--limit -1" in capsys.readouterr().err


def _nltk_wordnet() -> bool:
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        return True
    except (ImportError, LookupError):
        return False


def _write_wndb(folder: Path, pos: str, entries: list[tuple[list[str], str]]) -> None:
    """A WordNet database file pair (index.POS/data.POS) in the real format, byte offsets included."""
    name = {"n": "noun", "v": "verb"}[pos]
    data = "  1 This is a tiny WordNet-format database for tests.\n"
    index: dict[str, list[int]] = {}
    for words, gloss in entries:
        offset = len(data.encode())
        listed = " ".join(f"{w} 0" for w in words)
        data += f"{offset:08d} 05 {pos} {len(words):02x} {listed} 000 | {gloss}  \n"
        for w in words:
            index.setdefault(w.lower(), []).append(offset)
    (folder / f"data.{name}").write_text(data)
    lines = [
        f"{w} {pos} {len(o)} 0 {len(o)} 0 " + " ".join(f"{x:08d}" for x in o)
        for w, o in sorted(index.items())
    ]
    (folder / f"index.{name}").write_text("  1 license header\n" + "\n".join(lines) + "\n")


def test_wordnet_source_reads_a_wordnet_database(tmp_path, capsys):
    wn = tmp_path / "wordnet"
    wn.mkdir()
    _write_wndb(
        wn,
        "n",
        [
            (["cat", "true_cat"], 'feline mammal usually having thick soft fur; "the cat purred"'),
            (["cat"], "a spiteful woman gossip"),
            (["goose"], "web-footed long-necked aquatic bird"),
        ],
    )
    _write_wndb(wn, "v", [(["run"], "move fast by using one's feet; \"Don't run--you'll be late\"")])
    (wn / "noun.exc").write_text("geese goose\n")
    (wn / "verb.exc").write_text("ran run\nrunning run\n")
    words = tmp_path / "w.txt"
    words.write_text("cat\ncats\ngeese\nrunning\nqwxz\n")
    out = tmp_path / "v"
    assert main(["vocab", "build", "--words", str(words), "--output", str(out), "--source", "wordnet",
                 "--wordnet-dir", str(wn)]) == 0  # fmt: skip
    rows = _rows(out)
    texts = {r["word"]: [x["text"] for x in rows if x["word"] == r["word"]] for r in rows}
    assert texts["cat"] == [
        "cat (noun): feline mammal usually having thick soft fur.",
        "The cat purred.",
        "cat (noun): a spiteful woman gossip.",
    ]
    assert texts["cats"][0] == "cats (noun, a form of cat): feline mammal usually having thick soft fur."
    assert texts["geese"] == ["geese (noun, a form of goose): web-footed long-necked aquatic bird."]
    assert texts["running"][0] == "running (verb, a form of run): move fast by using one's feet."
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert failures == [{"word": "qwxz", "reason": "no WordNet entry", "attempts": 1}]
    assert "WordNet definitions" in (out / "README.md").read_text()


@pytest.mark.skipif(_nltk_wordnet(), reason="nltk's WordNet is installed")
def test_wordnet_missing_says_how_to_install(tmp_path, words_file, capsys, monkeypatch):
    from leaf_hub.data import vocabulary

    monkeypatch.setattr(vocabulary, "WORDNET_DIR", tmp_path / "no-wordnet")  # as on a machine without it
    out = tmp_path / "v"
    assert (
        main(["vocab", "build", "--words", str(words_file), "--output", str(out), "--source", "wordnet"]) == 2
    )
    err = capsys.readouterr().err
    assert "nltk" in err and "nltk.downloader wordnet" in err and "wordnet-base" in err


@pytest.mark.skipif(
    not (_nltk_wordnet() or Path("/usr/share/wordnet/index.noun").is_file()),
    reason="WordNet is not installed",
)
def test_wordnet_installed(tmp_path):
    words = tmp_path / "w.txt"
    words.write_text("dog\nrunning\n")
    assert (
        main(
            ["vocab", "build", "--words", str(words), "--output", str(tmp_path / "v"), "--source", "wordnet"]
        )
        == 0
    )
    rows = _rows(tmp_path / "v")
    assert any(r["text"].startswith("dog (noun): ") for r in rows)
    assert {r["word"] for r in rows} == {"dog", "running"}

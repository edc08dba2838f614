"""Training data: every --data spec kind on real files, generated sets, and clear errors on bad input."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leaf_hub.data.texts import (
    LEAF_PAPER_MIX,
    TextSet,
    bert_tokens,
    builtin_corpus,
    builtin_words,
    describe_preset,
    load_texts,
)
from leaf_hub.errors import LeafHubError


def write_jsonl(path: Path, rows: list[dict], compress: bool = False) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def check_counts(ts: TextSet) -> None:
    """The counts add up, per source and in total."""
    for label, s in ts.stats.items():
        assert (
            s["read"] == s["kept"] + s["dropped_empty"] + s["dropped_duplicate"] + s["dropped_max_texts"]
        ), label
    assert sum(s["kept"] for s in ts.stats.values()) == len(ts.records)
    for label, s in ts.stats.items():
        assert s["kept"] == sum(1 for r in ts.records if r.source == label)


ROWS = [
    {"text": "What is a leaf model?", "type": "query"},
    {"text": "A leaf model is a small embedding model.", "type": "document"},
    {"text": "   ", "type": "document"},
    {"text": None, "type": "query"},
    {"text": "  What is a leaf model?  ", "type": "query"},  # duplicate after stripping
    {"text": "What is a leaf model?", "type": "document"},  # same text, other kind: kept
    {"text": "Passages count as documents.", "type": "Passage"},
    {"text": "No type means document.", "type": ""},
]


# ---------------------------------------------------------------------------------------------------------
# Local files
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_jsonl_types_empty_and_duplicates(tmp_path, compress):
    path = write_jsonl(tmp_path / ("d.jsonl.gz" if compress else "d.jsonl"), ROWS, compress)
    ts = load_texts([str(path)])
    assert [(r.text, r.kind) for r in ts] == [
        ("What is a leaf model?", "query"),
        ("A leaf model is a small embedding model.", "document"),
        ("What is a leaf model?", "document"),
        ("Passages count as documents.", "document"),
        ("No type means document.", "document"),
    ]
    assert ts.stats[str(path)] == {
        "read": 8,
        "kept": 5,
        "dropped_empty": 2,
        "dropped_duplicate": 1,
        "dropped_max_texts": 0,
    }
    assert ts.counts() == {"query": 1, "document": 4}
    assert all(r.source == str(path) for r in ts)
    check_counts(ts)


def test_kind_option_overrides_type_column_and_limit(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    ts = load_texts([f"{path}::kind=query,limit=2"])
    assert [(r.text, r.kind) for r in ts] == [
        ("What is a leaf model?", "query"),
        ("A leaf model is a small embedding model.", "query"),
    ]
    assert ts.stats[f"{path}::kind=query,limit=2"]["read"] == 2


def test_txt_and_words_files(tmp_path):
    txt = tmp_path / "lines.txt"
    txt.write_text("first line\n\nsecond line\r\nfirst line\n  \nthird\n", encoding="utf-8")
    gz = tmp_path / "lines.txt.gz"
    gz.write_bytes(gzip.compress(b"gz one\ngz two\n"))
    words = tmp_path / "wordlist"
    words.write_text("apple\nbanana\napple\n", encoding="utf-8")
    ts = load_texts([str(txt), f"{gz}::kind=query", f"words:{words}"])
    assert ts.texts("document") == ["first line", "second line", "third", "apple", "banana"]
    assert ts.texts("query") == ["gz one", "gz two"]
    assert ts.stats[str(txt)]["dropped_empty"] == 2
    assert ts.stats[str(txt)]["dropped_duplicate"] == 1
    assert ts.stats[f"words:{words}"]["dropped_duplicate"] == 1
    check_counts(ts)


def test_json_layouts(tmp_path):
    array = tmp_path / "array.json"
    array.write_text(
        json.dumps([{"sentence": "one", "kind": "query"}, {"sentence": "two", "kind": "document"}])
    )
    columnar = tmp_path / "columnar.json"
    columnar.write_text(json.dumps({"text": ["three", "four"], "type": ["document", "query"]}))
    lines = tmp_path / "lines.json"  # JSON lines under a .json name, as Dataset.to_json writes
    lines.write_text('{"text": "five"}\n{"text": "six"}\n')
    strings = tmp_path / "strings.json"
    strings.write_text(json.dumps(["seven", "eight"]))
    ts = load_texts([f"{array}::column=sentence,type_column=kind", str(columnar), str(lines), str(strings)])
    assert [(r.text, r.kind) for r in ts] == [
        ("one", "query"),
        ("two", "document"),
        ("three", "document"),
        ("four", "query"),
        ("five", "document"),
        ("six", "document"),
        ("seven", "document"),
        ("eight", "document"),
    ]


def test_csv_and_tsv(tmp_path):
    path = tmp_path / "d.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "sentence", "kind"])
        w.writerow([1, "A sentence, with a comma", "query"])
        w.writerow([2, 'A "quoted"\nmulti-line text', ""])  # empty type: the kind= default
        w.writerow([3, "", "document"])
    ts = load_texts([f"{path}::column=sentence,type_column=kind,kind=query,limit=1000"])
    assert [(r.text, r.kind) for r in ts] == [
        ("A sentence, with a comma", "query"),
        ('A "quoted"\nmulti-line text', "query"),
    ]
    assert next(iter(ts.stats.values()))["dropped_empty"] == 1

    tsv = tmp_path / "d.tsv.gz"
    tsv.write_bytes(gzip.compress(b"text\ttype\nsome text\tquery\nother text\tdocument\n"))
    ts = load_texts([str(tsv)])
    assert [(r.text, r.kind) for r in ts] == [("some text", "query"), ("other text", "document")]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    table = pa.table({"body": ["alpha", "beta", None, "gamma"], "type": ["query", "document", "query", None]})
    pq.write_table(table, path, row_group_size=2)
    ts = load_texts([f"{path}::column=body"])
    assert [(r.text, r.kind) for r in ts] == [("alpha", "query"), ("beta", "document"), ("gamma", "document")]
    assert ts.stats[f"{path}::column=body"]["dropped_empty"] == 1


def test_dedup_across_sources_and_max_texts(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("\n".join(f"text {i}" for i in range(50)))
    b = tmp_path / "b.txt"
    b.write_text("\n".join(f"text {i}" for i in range(25, 75)))
    ts = load_texts([str(a), str(b)])
    assert len(ts) == 75
    assert ts.stats[str(b)]["dropped_duplicate"] == 25
    sampled = load_texts([str(a), str(b)], max_texts=30, seed=3)
    again = load_texts([str(a), str(b)], max_texts=30, seed=3)
    other = load_texts([str(a), str(b)], max_texts=30, seed=4)
    assert len(sampled) == 30 and sampled.records == again.records and sampled.records != other.records
    assert sampled.fingerprint() == again.fingerprint() != other.fingerprint()
    full_order = [r.text for r in ts]
    positions = [full_order.index(t) for t in sampled.texts()]
    assert positions == sorted(positions)  # the original order is kept
    assert sampled.totals()["dropped_max_texts"] == 45
    check_counts(sampled)
    # The same file twice: the second copy is all duplicates and gets its own stats entry.
    twice = load_texts([str(a), str(a)])
    assert twice.stats[f"{a}#2"]["dropped_duplicate"] == 50


# ---------------------------------------------------------------------------------------------------------
# Hugging Face datasets (a local dataset folder runs the same streaming code as a Hub id)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture()
def local_dataset(tmp_path) -> Path:
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"question": f"question number {i}?", "n": i} for i in range(200)])
    return folder


def test_hf_local_folder_streamed_and_sampled(local_dataset):
    spec = f"hf:{local_dataset}::column=question,kind=query,limit=50"
    ts = load_texts([spec], seed=1)
    assert len(ts) == 50 and set(ts.counts()) == {"query", "document"} and ts.counts()["query"] == 50
    assert all(t.startswith("question number") for t in ts.texts())
    assert load_texts([spec], seed=1).records == ts.records
    assert ts.texts() != load_texts([spec], seed=2).texts()  # the seed drives the shuffle
    assert ts.texts() != [f"question number {i}?" for i in range(50)]  # not just the first rows


def test_hf_missing_column_lists_columns(local_dataset):
    with pytest.raises(LeafHubError) as err:
        load_texts([f"hf:{local_dataset}"])
    msg = str(err.value)
    assert "'text'" in msg and "'question'" in msg and "'n'" in msg and "column=" in msg


def test_hf_errors_are_one_line(local_dataset, tmp_path):
    with pytest.raises(LeafHubError) as err:
        load_texts([f"hf:{local_dataset}::column=question,split=validation"])
    assert f"could not read hf:{local_dataset}" in str(err.value) and "split=" in str(err.value)
    empty = tmp_path / "empty_dataset"
    empty.mkdir()
    with pytest.raises(LeafHubError) as err:
        load_texts([f"hf:{empty}"])
    assert f"hf:{empty}" in str(err.value) and "data files" in str(err.value) and "\n" not in str(err.value)


def test_hf_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LeafHubError) as err:
        load_texts(["hf:someone/some-dataset::split=train", "builtin"])
    msg = str(err.value)
    assert "hf:someone/some-dataset" in msg and "Hub" in msg and "local files" in msg
    assert "\n" not in msg


def test_unreachable_hub_is_detected_once(monkeypatch):
    """Without HF_HUB_OFFLINE, one connection attempt finds the Hub unreachable (a closed local port here)."""
    from embedding_server import free_port

    from leaf_hub.data import texts

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    texts._probe_hub.cache_clear()
    try:
        with pytest.raises(LeafHubError, match="need the Hugging Face Hub"):
            load_texts(["hf:someone/some-dataset"])
        assert os.environ.get("HF_HUB_OFFLINE") == "1"  # later Hub calls fail at once instead of retrying
    finally:
        texts._probe_hub.cache_clear()


def test_preset_offline_names_every_hub_dataset(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LeafHubError) as err:
        load_texts(["preset:leaf-paper"], student_tokenizer=None)
    msg = str(err.value)
    for source in LEAF_PAPER_MIX:
        assert source.name in msg and source.dataset in msg
    assert "\n" not in msg
    table = describe_preset()
    assert "HuggingFaceFW/fineweb" in table and "sample-10BT" in table and "BERT tokens" in table
    with pytest.raises(LeafHubError, match="unknown preset 'nope'"):
        load_texts(["preset:nope"])


# ---------------------------------------------------------------------------------------------------------
# Generated sets
# ---------------------------------------------------------------------------------------------------------


def test_bert_tokens_from_student_tokenizer(tiny_student_dir):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_student_dir))
    tokens = bert_tokens(tokenizer)
    assert len(tokens) == len(set(tokens))
    assert {"the", "teacher", "leaf", "a", "z", "7", "?"} <= set(tokens)
    assert not any(t.startswith("##") or t.startswith("[") for t in tokens)
    special = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    pieces = [t for t in tokenizer.get_vocab() if t not in special]
    assert len(tokens) == len({p.removeprefix("##") for p in pieces})

    ts = load_texts(["bert-tokens"], student_tokenizer=tokenizer)
    assert set(ts.texts("document")) == set(tokens)
    stats = ts.stats["bert-tokens"]
    assert stats["dropped_duplicate"] == len(pieces) - len(tokens) > 0  # "##a" and "a" are one text
    # A SentenceTransformer works too, and so does naming the tokenizer in the spec.
    model = SentenceTransformer(str(tiny_student_dir), device="cpu")
    assert load_texts(["bert-tokens::kind=query"], student_tokenizer=model).texts("query") == ts.texts()
    assert load_texts([f"bert-tokens::tokenizer={tiny_student_dir}"]).texts() == ts.texts()


def test_bert_tokens_skips_unused_and_needs_a_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "##lo", "lo"]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    assert bert_tokens(fast) == ["hello", "lo"]
    with pytest.raises(LeafHubError, match="student's tokenizer"):
        load_texts(["bert-tokens"])


def test_builtin_corpus_is_large_mixed_and_deterministic():
    ts = load_texts(["builtin"])
    counts = ts.counts()
    assert len(ts) > 1000 and counts["query"] > 300 and counts["document"] > 1000
    lengths = [len(t.split()) for t in ts.texts("document")]
    assert min(lengths) <= 8 and max(lengths) >= 150  # sentences up to multi-paragraph sections
    assert any(t.endswith("?") for t in ts.texts("query"))
    # Built again in a fresh interpreter with another hash seed (set order changes): the same texts, in order.
    digest = hashlib.sha256(json.dumps(builtin_corpus()).encode()).hexdigest()
    code = (
        "import hashlib, json; from leaf_hub.data.texts import builtin_corpus; "
        "print(hashlib.sha256(json.dumps(builtin_corpus()).encode()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == digest
    sample = load_texts(["builtin::limit=500"], seed=7)
    assert len(sample) <= 500 and sample.records == load_texts(["builtin::limit=500"], seed=7).records
    assert set(sample.counts()) == {"query", "document"} and min(sample.counts().values()) > 0


def test_builtin_words():
    words = builtin_words()
    assert len(words) > 2000 and list(words) == sorted(set(words))
    assert all(w.isalpha() and w.islower() and len(w) >= 2 for w in words)
    assert {"function", "string", "number", "value"} <= set(words)
    ts = load_texts(["words::limit=100"], seed=0)
    assert len(ts) == 100 and set(ts.texts()) <= set(words)


# ---------------------------------------------------------------------------------------------------------
# Bad input: one clear message naming the input and the fix
# ---------------------------------------------------------------------------------------------------------


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(LeafHubError, match=r"data file '.*nope\.jsonl' does not exist"):
        load_texts([str(tmp_path / "nope.jsonl")])
    with pytest.raises(LeafHubError, match=r"data file '.*nope\.txt' does not exist"):
        load_texts([f"words:{tmp_path / 'nope.txt'}"])
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(LeafHubError, match="has no texts: it is empty"):
        load_texts([str(empty)])
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\t\n")
    with pytest.raises(LeafHubError, match=r"only empty texts \(3 rows\)"):
        load_texts([str(blank)])
    empty_csv = tmp_path / "empty.csv"
    empty_csv.write_text("text,type\n")
    with pytest.raises(LeafHubError, match="has no texts"):
        load_texts([str(empty_csv)])


@pytest.mark.parametrize("name", ["bad.jsonl", "bad.txt", "bad.csv", "bad.txt.gz", "bad.json"])
def test_non_utf8_names_file_line_and_offset(tmp_path, name):
    path = tmp_path / name
    good = b'{"text": "fine"}\n' if "json" in name else b"text\n" if name.endswith(".csv") else b"fine\n"
    bad = b'{"text": "caf\xe9"}\n' if "json" in name else b"caf\xe9\n"
    data = good + bad
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(LeafHubError) as err:
        load_texts([str(path)])
    msg = str(err.value)
    assert str(path) in msg and "UTF-8" in msg and "line 2" in msg and "0xe9" in msg
    offset = data.index(b"\xe9")
    assert f"byte offset {offset}" in msg
    assert "re-encode" in msg


def test_missing_column_and_bad_types(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"body": "x", "label": "q"}])
    with pytest.raises(LeafHubError) as err:
        load_texts([str(path)])
    assert (
        "no column 'text'" in str(err.value)
        and "'body'" in str(err.value)
        and "column=NAME" in str(err.value)
    )
    with pytest.raises(LeafHubError, match="no type column 'kind'"):
        load_texts([f"{path}::column=body,type_column=kind"])
    with pytest.raises(LeafHubError) as err:
        load_texts([f"{path}::column=body,type_column=label"])
    assert "unknown type 'q'" in str(err.value) and "query" in str(err.value) and "line 1" in str(err.value)
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("a,b\n1,2\n")
    with pytest.raises(LeafHubError, match=r"no column 'text' \(its columns: 'a', 'b'\)"):
        load_texts([str(csv_path)])
    numbers = write_jsonl(tmp_path / "n.jsonl", [{"text": ["a", "list"]}])
    with pytest.raises(LeafHubError, match="holds list values, not text"):
        load_texts([str(numbers)])


def test_bad_specs_and_formats(tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("hello\n")
    cases = {
        "hub:org/data": "unknown data source prefix 'hub:'",
        str(tmp_path / "sheet.xlsx"): "unsupported format",
        "fineweb": "unknown data source 'fineweb'",
        f"{data}::colour=red": "unknown option 'colour'",
        f"{data}::column=text": "unknown option 'column'",  # .txt has no columns
        f"{data}::kind=answer": "kind='answer'",
        f"{data}::limit=0": "limit='0'",
        f"{data}::limit": "not key=value",
        f"{data}::": "gives no options",
        "hf:": "names no dataset",
        "builtin::kind=query": "unknown option 'kind'",
        str(tmp_path): "is a folder",
    }
    (tmp_path / "sheet.xlsx").write_bytes(b"PK")
    for spec, expected in cases.items():
        with pytest.raises(LeafHubError) as err:
            load_texts([spec])
        assert expected in str(err.value), (spec, str(err.value))
    with pytest.raises(LeafHubError, match="no training data"):
        load_texts([])


def test_broken_json_gzip_and_parquet(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(LeafHubError, match=r"line 2 of data file .*d\.jsonl is not valid JSON"):
        load_texts([str(jsonl)])
    truncated = tmp_path / "t.jsonl.gz"
    truncated.write_bytes(gzip.compress(b'{"text": "a"}\n' * 1000)[:60])
    with pytest.raises(LeafHubError, match="not a complete gzip file"):
        load_texts([str(truncated)])
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"not parquet at all")
    with pytest.raises(LeafHubError, match="not a readable parquet file"):
        load_texts([str(fake)])

    import pyarrow as pa
    import pyarrow.parquet as pq

    ints = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), ints)
    with pytest.raises(LeafHubError, match="holds int64, not text"):
        load_texts([str(ints)])


def test_paper_size_preset(monkeypatch):
    """preset:leaf-paper-full has the paper's row counts; preset:leaf-paper stays the smaller default."""
    from leaf_hub.data.specs import LEAF_PAPER_FULL_MIX, parse_spec

    table = describe_preset("leaf-paper-full")
    assert "3,000,000" in table and "stanford-oval/ccnews" in table
    years = [s.config for s in LEAF_PAPER_FULL_MIX if s.name.startswith("CC-News")]
    assert years == [str(y) for y in range(2016, 2025)]
    assert all(
        s.limit == 100_000 and s.where == "language:en" for s in LEAF_PAPER_FULL_MIX if s.config in years
    )
    queries = [s for s in LEAF_PAPER_FULL_MIX if s.kind == "query"]
    assert {s.name for s in queries} == {"Amazon QA", "LoTTE", "MS MARCO", "PubMedQA", "TriviaQA"}
    assert all(s.limit is None for s in queries)  # the full query sets
    sources = parse_spec("preset:leaf-paper-full")
    assert [s.title for s in sources][-2:] == ["BERT tokens", "Vocabulary"]
    assert all(s.options["limit"] == "all" for s in sources if s.title in {q.name for q in queries})
    assert sum(s.limit or 0 for s in LEAF_PAPER_MIX) < 1_000_000  # the default stays small
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LeafHubError) as err:
        load_texts(["preset:leaf-paper-full"])
    assert "CC-News 2024 (hf:stanford-oval/ccnews)" in str(err.value) and "\n" not in str(err.value)
    for bad, expected in (("hf:x/y::limit=none", "or all"), ("hf:x/y::where=language", "COLUMN:VALUE")):
        with pytest.raises(LeafHubError, match=expected):
            load_texts([bad])


def test_hf_where_and_limit_all(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    rows = [{"text": f"text {i}", "language": "en" if i % 3 else "de"} for i in range(90)]
    write_jsonl(folder / "train.jsonl", rows)
    ts = load_texts([f"hf:{folder}::where=language:en,limit=all"])
    assert len(ts) == 60 and all(int(t.split()[1]) % 3 for t in ts.texts())
    with pytest.raises(LeafHubError, match="no column 'lang' for where=lang:en"):
        load_texts([f"hf:{folder}::where=lang:en"])


def test_quickstart_preset_is_the_readmes_two_sources_and_reads_offline(monkeypatch):
    """preset:quickstart = builtin::limit=1200 + bert-tokens::limit=800 (same labels, so the same texts)."""
    from leaf_hub.data.specs import parse_spec

    assert [(s.label, s.type) for s in parse_spec("preset:quickstart")] == [
        ("builtin::limit=1200", "builtin"),
        ("bert-tokens::limit=800", "bert-tokens"),
    ]
    assert not any(s.needs_hub for s in parse_spec("preset:quickstart"))
    with pytest.raises(LeafHubError, match="--data builtin::limit=1200 --data bert-tokens::limit=800"):
        parse_spec("preset:quickstart::limit=10")
    with pytest.raises(LeafHubError, match="available: leaf-paper, leaf-paper-full, quickstart"):
        parse_spec("preset:quick")

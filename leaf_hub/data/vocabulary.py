"""The Vocabulary dataset: definitions and important facts about words, one standalone statement per row.

LEAF (arXiv 2509.12539) distils on short, knowledge-dense texts besides queries and documents: for each
word of a word list, an LLM writes definitions or important facts, each a standalone sentence containing the
word (the paper's Listing 1 asks for a batch of terms and gets back a JSON object term -> list of
statements). ``leaf-hub vocab build`` does that through any OpenAI-compatible chat endpoint, or offline from
WordNet (``--source wordnet``).

Building 370k words takes days of requests, so the builder is made to be interrupted:

- every batch's outcome is appended to ``journal.jsonl`` (flushed and fsynced) before the next batch is sent;
  a rerun skips every word already answered or recorded as failed, so no word is asked twice, and a line cut
  short by a kill is ignored (and trimmed) on read;
- requests are rate-limited and retried with exponential backoff on 429, 5xx and network errors (honouring
  ``Retry-After``); when the endpoint keeps failing the build stops with a clear error and a rerun resumes;
- each answer is validated: a JSON object whose keys are the asked terms (case-insensitive), each with a
  list of non-empty statements that contain the term (allowing simple inflections) and are not cross-
  references ("also refers to", "may refer to"). Bad statements are dropped and counted; terms left with
  none are asked again on their own, and after ``--max-retries`` recorded in ``failures.jsonl`` with the
  reason. Nothing is dropped silently.

Outputs (written atomically from the journal at the end of every run): ``vocabulary.parquet`` and
``vocabulary.jsonl`` (columns ``word``, ``text``), ``failures.jsonl``, ``build.json`` (settings and counts)
and a ``README.md`` dataset card.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from leaf_hub.errors import ConfigError, LeafHubError
from leaf_hub.http import HttpStatusError, JsonClient, RetriesExhausted, RetryPolicy

logger = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
DEFAULT_BASE_URL = "https://api.openai.com/v1"

# The paper's Listing 1 could not be retrieved here (only its description: a batch of terms in, a JSON object
# mapping each term to a list of standalone statements, definitions or important facts, out); this prompt
# follows that description and adds the rules the validator enforces, so the model knows them up front.
SYSTEM_PROMPT = "You are a careful lexicographer and encyclopedist. You write precise, factual English."
USER_PROMPT = """For each term in the list below, write definitions or important facts about it.

Rules:
- Each statement is one standalone sentence that contains the term itself, as given; never refer to it as "it", "this word" or "the term".
- Cover the term's main meanings and the most important facts about it, with 1 to {max_statements} statements per term.
- Do not write cross-references such as "X also refers to ..." or "X may refer to ...": state the meaning itself.
- Answer with a single JSON object and nothing else. Its keys are exactly the terms as given; each value is a list of strings, the statements about that term.

Terms: {terms}"""

_CROSS_REFERENCE = re.compile(
    r"\b(also|may|might|can|could)\s+(also\s+)?refers?\s+to\b|\bsee\s+also\b|\brefers?\s+to\s*:",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


# -- validation ----------------------------------------------------------------------------------------
def _stems(term: str) -> list[str]:
    """The term and a few regular inflection stems of it (make -> mak(ing), carry -> carri(ed), boxes -> box)."""
    t = term.lower()
    stems = [t]
    for suffix, replacement in (
        ("ies", "y"),
        ("es", ""),
        ("s", ""),
        ("ed", ""),
        ("ing", ""),
        ("e", ""),
        ("y", "i"),
    ):
        if t.endswith(suffix) and len(t) - len(suffix) + len(replacement) >= 3:
            stems.append(t[: len(t) - len(suffix)] + replacement)
    return stems


def mentions(term: str, statement: str) -> bool:
    """Whether ``statement`` contains ``term`` (case-insensitive), allowing simple regular inflections."""
    text = statement.lower()
    if term.lower() in text:
        return True
    return any(re.search(r"\b" + re.escape(stem) + r"\w*", text) for stem in _stems(term)[1:])


@dataclass
class Verdict:
    """The validated answer for one term: kept statements, dropped ones with reasons, or why it failed."""

    statements: list[str] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    error: str | None = None


def parse_answer(content: str) -> dict:
    """The JSON object of a chat answer (tolerating a Markdown code fence); ValueError with the reason."""
    match = _FENCE.match(content)
    text = match.group(1) if match else content.strip()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the answer is not valid JSON ({exc.__class__.__name__}: {str(exc)[:80]})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"the answer is JSON but not an object (got {type(data).__name__})")
    return data


def validate_answer(data: dict, terms: list[str]) -> dict[str, Verdict]:
    """Judge the statements of each asked term; keys match case-insensitively, extra keys are ignored."""
    by_key: dict[str, Any] = {}
    for key, value in data.items():
        by_key.setdefault(str(key).strip().lower(), value)
    verdicts: dict[str, Verdict] = {}
    for term in terms:
        verdict = Verdict()
        verdicts[term] = verdict
        value = by_key.get(term.lower())
        if value is None:
            verdict.error = "missing from the answer" if term.lower() not in by_key else "null statements"
            continue
        if isinstance(value, str):
            verdict.error = "statements are a string, not a list"
            continue
        if not isinstance(value, list):
            verdict.error = f"statements are a {type(value).__name__}, not a list"
            continue
        seen = set()
        for item in value:
            if not isinstance(item, str) or not item.strip():
                verdict.dropped.append(
                    {"text": item if isinstance(item, str) else repr(item), "reason": "empty"}
                )
                continue
            text = " ".join(item.split())
            if _CROSS_REFERENCE.search(text):
                verdict.dropped.append({"text": text, "reason": "cross-reference"})
            elif not mentions(term, text):
                verdict.dropped.append({"text": text, "reason": "does not contain the term"})
            elif text.lower() not in seen:
                seen.add(text.lower())
                verdict.statements.append(text)
        if not verdict.statements:
            reasons = sorted({d["reason"] for d in verdict.dropped}) or ["no statements"]
            verdict.error = "no valid statement (" + ", ".join(reasons) + ")"
    return verdicts


# -- the chat endpoint ---------------------------------------------------------------------------------
class BadAnswer(Exception):
    """The endpoint answered, but not with a usable chat completion (retried like an invalid answer)."""


@dataclass
class ChatStats:
    requests: int = 0
    http_retries: int = 0


class ChatClient:
    """An OpenAI-compatible ``POST /chat/completions`` client with a rate limit, on leaf-hub's HTTP layer
    (:class:`~leaf_hub.http.JsonClient`: retries with backoff on 429, 5xx and connection errors)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        rate_limit: float | None = None,
        max_retries: int = 5,
        retry_wait: float = 2.0,
        timeout: float = 120.0,
        json_mode: bool = True,
        temperature: float | None = 0.0,
    ):
        url = base_url.rstrip("/")
        url = url if url.endswith("/chat/completions") else f"{url}/chat/completions"
        self.model = model
        self.max_retries = max_retries
        self.json_mode = json_mode
        self.temperature = temperature
        self._http = JsonClient(
            url,
            api_key=api_key,
            timeout=timeout,
            retry=RetryPolicy(
                max_retries=max_retries, backoff=retry_wait, max_backoff=120.0, max_retry_after=300.0
            ),
            min_interval=1.0 / rate_limit if rate_limit else 0.0,
            what="the chat endpoint",
        )
        self.url = self._http.shown_url

    @property
    def stats(self) -> ChatStats:
        return ChatStats(requests=self._http.stats.requests, http_retries=self._http.stats.retries)

    def close(self) -> None:
        self._http.close()

    def complete(self, messages: list[dict]) -> str:
        """The assistant's message for ``messages``; raises LeafHubError when the endpoint keeps failing."""
        payload: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.temperature is not None:
            payload["temperature"] = self.temperature
        if self.json_mode:
            payload["response_format"] = {"type": "json_object"}
        try:
            return self._content(self._http.post(payload))
        except HttpStatusError as exc:
            last = f"HTTP {exc.status}: {exc.message}"
            if exc.status in (401, 403):
                raise LeafHubError(
                    f"the chat endpoint {self.url} rejected the API key ({last}); give a valid key with "
                    "--api-key or OPENAI_API_KEY"
                ) from None
            if exc.status == 404:
                raise LeafHubError(
                    f"the chat endpoint {self.url} answered 404 ({last}); check --base-url (it should end "
                    f"in /v1 for most servers) and --model {self.model!r}"
                ) from None
            hint = " (if it does not support JSON mode, add --no-json-mode)" if self.json_mode else ""
            raise LeafHubError(f"the chat endpoint {self.url} refused the request ({last}){hint}") from None
        except RetriesExhausted as exc:
            raise LeafHubError(
                f"the chat endpoint {self.url} kept failing after {exc.attempts} attempts ({exc.last}); "
                "progress is saved: rerun the same command later to resume (or check --base-url / --rate-limit)"
            ) from None

    @staticmethod
    def _content(payload: Any) -> str:
        try:
            message = payload["choices"][0]["message"]
            content = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BadAnswer(
                f"the endpoint's response is not a chat completion ({exc.__class__.__name__})"
            ) from exc
        if not isinstance(content, str) or not content.strip():
            raise BadAnswer("the chat completion is empty")
        return content


def build_messages(terms: list[str], max_statements: int = 10) -> list[dict]:
    user = USER_PROMPT.format(terms=json.dumps(terms, ensure_ascii=False), max_statements=max_statements)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


# -- WordNet -------------------------------------------------------------------------------------------
_POS_NAMES = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
_WNDB_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
_MORPHY = {
    "n": [
        ("s", ""),
        ("ses", "s"),
        ("xes", "x"),
        ("zes", "z"),
        ("ches", "ch"),
        ("shes", "sh"),
        ("men", "man"),
        ("ies", "y"),
    ],
    "v": [
        ("s", ""),
        ("ies", "y"),
        ("es", "e"),
        ("es", ""),
        ("ed", "e"),
        ("ed", ""),
        ("ing", "e"),
        ("ing", ""),
    ],
    "a": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    "r": [],
}
# Where Debian's wordnet-base puts the WordNet 3.0 database, used when nltk has no WordNet.
WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_HELP = (
    "install WordNet: `pip install nltk && python -m nltk.downloader wordnet` (needs internet once), or the "
    "WordNet 3.0 database files (Debian/Ubuntu: `apt-get install wordnet-base`, then --wordnet-dir "
    "/usr/share/wordnet)"
)


class WndbReader:
    """Reads a WordNet 3.0 database folder (``index.noun``, ``data.noun``, ... as shipped by Princeton and
    Debian's wordnet-base) without nltk: lemma lookup with WordNet's morphological rules and exception lists."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.index: dict[str, dict[str, list[int]]] = {}  # pos -> lemma -> synset offsets, in sense order
        self.exceptions: dict[str, dict[str, list[str]]] = {}
        for pos, name in _WNDB_FILES.items():
            index_path, data_path = self.folder / f"index.{name}", self.folder / f"data.{name}"
            if not index_path.is_file() or not data_path.is_file():
                continue
            lemmas: dict[str, list[int]] = {}
            with index_path.open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.startswith("  ") or not line.strip():
                        continue  # license header
                    fields = line.split()
                    n_synsets, n_pointers = int(fields[2]), int(fields[3])
                    offsets = fields[4 + n_pointers + 2 :]
                    lemmas[fields[0]] = [int(o) for o in offsets[:n_synsets]]
            self.index[pos] = lemmas
            exc_path = self.folder / f"{name}.exc"
            table: dict[str, list[str]] = {}
            if exc_path.is_file():
                for line in exc_path.read_text(encoding="utf-8", errors="replace").splitlines():
                    fields = line.split()
                    if len(fields) >= 2:
                        table[fields[0]] = fields[1:]
            self.exceptions[pos] = table
        if not self.index:
            raise LeafHubError(
                f"{self.folder} holds no WordNet database (index.noun, data.noun, ...); {WORDNET_HELP}"
            )
        self._data = {
            pos: (self.folder / f"data.{name}").open("rb")
            for pos, name in _WNDB_FILES.items()
            if pos in self.index
        }

    def close(self) -> None:
        for fh in self._data.values():
            fh.close()

    def lemmas(self, word: str, pos: str) -> list[str]:
        """Base forms of ``word`` in WordNet for ``pos`` (the word itself first when it is one)."""
        key = word.lower().replace(" ", "_")
        index = self.index.get(pos, {})
        found = [key] if key in index else []
        found += [b for b in self.exceptions.get(pos, {}).get(key, []) if b in index and b not in found]
        for suffix, replacement in _MORPHY[pos]:
            if key.endswith(suffix):
                base = key[: len(key) - len(suffix)] + replacement
                if base in index and base not in found:
                    found.append(base)
        return found

    def synsets(self, word: str) -> list[tuple[str, str, str, list[str]]]:
        """(part of speech, lemma, definition, examples) for each sense of ``word``."""
        out = []
        for pos in self.index:
            for lemma in self.lemmas(word, pos):
                for offset in self.index[pos][lemma]:
                    fh = self._data[pos]
                    fh.seek(offset)
                    line = fh.readline().decode("utf-8", errors="replace")
                    fields, _, gloss = line.partition(" | ")
                    ss_type = fields.split()[2] if len(fields.split()) > 2 else pos
                    definition, examples = _split_gloss(gloss.strip())
                    out.append((ss_type, lemma.replace("_", " "), definition, examples))
        return out


def _split_gloss(gloss: str) -> tuple[str, list[str]]:
    """WordNet glosses are 'definition; "example one"; "example two"'."""
    examples = re.findall(r'"([^"]+)"', gloss)
    definition = re.split(r';\s*"', gloss, maxsplit=1)[0].strip().rstrip(";").strip()
    return definition, examples


class WordNetSource:
    """Statements from WordNet: "word (noun): definition." per sense, plus examples that contain the word."""

    def __init__(self, wordnet_dir: str | Path | None = None):
        self.reader_name = ""
        self._nltk = None
        self._wndb: WndbReader | None = None
        if wordnet_dir:
            self._wndb = WndbReader(wordnet_dir)
            self.reader_name = f"leaf-hub's WordNet reader ({wordnet_dir})"
            return
        try:
            from nltk.corpus import wordnet

            wordnet.ensure_loaded()
            self._nltk = wordnet
            self.reader_name = "nltk"
            return
        except ImportError:
            problem = "nltk is not installed"
        except LookupError:
            problem = "nltk's WordNet data is not installed"
        default = WORDNET_DIR
        if (default / "index.noun").is_file():
            self._wndb = WndbReader(default)
            self.reader_name = f"leaf-hub's WordNet reader ({default})"
            return
        raise LeafHubError(f"--source wordnet needs WordNet, but {problem}; {WORDNET_HELP}")

    def close(self) -> None:
        if self._wndb is not None:
            self._wndb.close()

    def statements(self, word: str) -> list[str]:
        senses: list[tuple[str, str, str, list[str]]] = []
        if self._nltk is not None:
            for synset in self._nltk.synsets(word):
                lemma = next(
                    (n for n in synset.lemma_names() if n.lower() == word.lower()), synset.lemma_names()[0]
                )
                senses.append((synset.pos(), lemma.replace("_", " "), synset.definition(), synset.examples()))
        elif self._wndb is not None:
            senses = self._wndb.synsets(word)
        out: list[str] = []
        for pos, lemma, definition, examples in senses:
            if not definition:
                continue
            form = "" if lemma.lower() == word.lower() else f", a form of {lemma}"
            statement = f"{word} ({_POS_NAMES.get(pos, pos)}{form}): {definition.rstrip('.')}."
            if statement not in out:
                out.append(statement)
            for example in examples:
                sentence = example.strip()
                if sentence and mentions(word, sentence) and sentence not in out:
                    out.append(sentence[0].upper() + sentence[1:] + ("" if sentence[-1] in ".!?" else "."))
        return out


# -- the journal ---------------------------------------------------------------------------------------
class Journal:
    """Append-only JSON lines, one record per word, synced to disk after every batch.

    A kill can only cut the last line short: such a line is ignored on read and trimmed before the next
    append, so the file stays valid JSON lines.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> dict[str, dict]:
        """The latest record of each word (keyed by lower-cased word)."""
        records: dict[str, dict] = {}
        if not self.path.is_file():
            return records
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            logger.warning("%s: ignoring a line cut short by an interrupted run", self.path)
            with self.path.open("r+b") as fh:
                fh.truncate(end)
        for number, line in enumerate(data[:end].decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                records[str(record["word"]).lower()] = record
            except (ValueError, KeyError, TypeError):
                logger.warning("%s: skipping unreadable line %d", self.path, number)
        return records

    def append(self, records: Iterable[dict]) -> None:
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if not lines:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())


# -- the build -----------------------------------------------------------------------------------------
@dataclass
class BuildSummary:
    words: int = 0
    already_done: int = 0
    asked_now: int = 0
    answered: int = 0
    failed: int = 0
    statements: int = 0
    dropped_statements: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    http_retries: int = 0
    reasked_terms: int = 0
    total_answered: int = 0
    total_failed: int = 0
    rows: int = 0

    def line(self) -> str:
        dropped = ", ".join(f"{n} {r}" for r, n in sorted(self.dropped_by_reason.items()))
        return (
            f"{self.words} words ({self.already_done} done before, {self.asked_now} asked now): "
            f"{self.answered} answered, {self.failed} failed; {self.statements} statements kept"
            f"{f', {self.dropped_statements} dropped ({dropped})' if self.dropped_statements else ''}; "
            f"{self.requests} requests, {self.http_retries} retried after errors, "
            f"{self.reasked_terms} terms re-asked after invalid answers. Dataset: {self.rows} rows from "
            f"{self.total_answered} words, {self.total_failed} failures"
        )


def read_words(path: str | Path, limit: int | None = None) -> list[str]:
    """One word per line; blank lines and #-comments skipped, case-insensitive duplicates dropped."""
    path = Path(path)
    if not path.is_file():
        raise LeafHubError(f"--words {path} does not exist; give a text file with one word per line")
    words, seen = [], set()
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            word = line.strip()
            if not word or word.startswith("#") or word.lower() in seen:
                continue
            seen.add(word.lower())
            words.append(word)
            if limit is not None and len(words) >= limit:
                break
    if not words:
        raise LeafHubError(f"--words {path} holds no words; give a text file with one word per line")
    return words


def _ask_llm_batch(
    client: ChatClient, terms: list[str], max_retries: int, max_statements: int, summary: BuildSummary
) -> list[dict]:
    """Ask for ``terms``, re-asking only the invalid ones; one journal record per term."""
    pending = list(terms)
    verdicts: dict[str, Verdict] = {}
    reasons: dict[str, str] = {}
    attempts: dict[str, int] = dict.fromkeys(terms, 0)
    for round_ in range(max_retries + 1):
        if not pending:
            break
        if round_:
            summary.reasked_terms += len(pending)
        for term in pending:
            attempts[term] += 1
        try:
            data = parse_answer(client.complete(build_messages(pending, max_statements)))
        except (BadAnswer, ValueError) as exc:
            for term in pending:
                reasons[term] = str(exc)
            continue
        judged = validate_answer(data, pending)
        still = []
        for term, verdict in judged.items():
            if verdict.error is None:
                verdicts[term] = verdict
            else:
                reasons[term] = verdict.error
                still.append(term)
        pending = still
    records = []
    for term in terms:
        if term in verdicts:
            v = verdicts[term]
            records.append({"word": term, "status": "ok", "statements": v.statements, "dropped": v.dropped})
        else:
            records.append(
                {
                    "word": term,
                    "status": "failed",
                    "reason": reasons.get(term, "unknown"),
                    "attempts": attempts[term],
                }
            )
    return records


def _wordnet_batch(source: WordNetSource, terms: list[str]) -> list[dict]:
    records = []
    for term in terms:
        statements = source.statements(term)
        if statements:
            records.append({"word": term, "status": "ok", "statements": statements, "dropped": []})
        else:
            records.append({"word": term, "status": "failed", "reason": "no WordNet entry", "attempts": 1})
    return records


def build_vocabulary(
    words_file: str | Path,
    output: str | Path,
    *,
    source: str = "llm",
    client: ChatClient | None = None,
    wordnet_dir: str | Path | None = None,
    batch_size: int = 20,
    limit: int | None = None,
    max_retries: int = 3,
    max_statements: int = 10,
    retry_failed: bool = False,
    stop_after_batches: int | None = None,
    progress: bool = True,
) -> BuildSummary:
    """Build (or resume) the Vocabulary dataset in ``output``; returns the counts."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise LeafHubError(f"--batch-size {batch_size} must be at least 1")
    words = read_words(words_file, limit)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    journal = Journal(output / JOURNAL)
    done = journal.load()
    todo = [
        w for w in words if w.lower() not in done or (retry_failed and done[w.lower()].get("status") != "ok")
    ]
    summary = BuildSummary(words=len(words), already_done=len(words) - len(todo), asked_now=0)
    if summary.already_done:
        logger.info(
            "%s: %d of %d words already done; resuming", journal.path, summary.already_done, len(words)
        )

    answer: Callable[[list[str]], list[dict]]
    wordnet: WordNetSource | None = None
    if source == "wordnet":
        wordnet = WordNetSource(wordnet_dir)
        reader = wordnet
        answer = lambda batch: _wordnet_batch(reader, batch)  # noqa: E731
    elif source == "llm":
        if client is None:
            raise LeafHubError("--source llm needs a chat endpoint: give --base-url, --model and --api-key")
        answer = lambda batch: _ask_llm_batch(client, batch, max_retries, max_statements, summary)  # noqa: E731
    else:
        raise LeafHubError(f"--source {source!r} is not one of llm, wordnet")

    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    with tqdm(total=len(todo), desc="vocabulary", unit="word", disable=not progress or not todo) as bar:
        for number, batch in enumerate(batches):
            if stop_after_batches is not None and number >= stop_after_batches:
                break
            records = answer(batch)
            journal.append(records)
            summary.asked_now += len(batch)
            for record in records:
                done[record["word"].lower()] = record
                if record["status"] == "ok":
                    summary.answered += 1
                    summary.statements += len(record["statements"])
                    for dropped in record.get("dropped") or []:
                        summary.dropped_statements += 1
                        reason = dropped.get("reason", "?")
                        summary.dropped_by_reason[reason] = summary.dropped_by_reason.get(reason, 0) + 1
                else:
                    summary.failed += 1
                    logger.warning("no statements for %r: %s", record["word"], record.get("reason"))
            bar.update(len(batch))
    if client is not None:
        summary.requests, summary.http_retries = client.stats.requests, client.stats.http_retries
    if wordnet is not None:
        wordnet.close()
    write_outputs(output, words, done, summary, source, client, words_file, max_statements, wordnet)
    return summary


def write_outputs(
    output: Path,
    words: list[str],
    done: dict[str, dict],
    summary: BuildSummary,
    source: str,
    client: ChatClient | None,
    words_file: str | Path,
    max_statements: int,
    wordnet: WordNetSource | None,
) -> None:
    """Write the dataset files from the journal's records, in word-list order (words outside the list last)."""
    order = [w.lower() for w in words]
    listed = set(order)
    order += [k for k in done if k not in listed]
    rows, failures = [], []
    for key in order:
        record = done.get(key)
        if record is None:
            continue
        if record.get("status") == "ok":
            rows.extend({"word": record["word"], "text": text} for text in record.get("statements", []))
        else:
            failures.append({k: record.get(k) for k in ("word", "reason", "attempts")})
    summary.rows = len(rows)
    summary.total_answered = sum(1 for r in done.values() if r.get("status") == "ok")
    summary.total_failed = len(failures)
    _write_jsonl(output / "vocabulary.jsonl", rows)
    _write_parquet(output / "vocabulary.parquet", rows)
    _write_jsonl(output / "failures.jsonl", failures)
    build = {
        "rows": summary.rows,
        "words": summary.total_answered,
        "failed": summary.total_failed,
        "source": source,
        "model": client.model if client is not None else None,
        "prompt": USER_PROMPT.replace("{max_statements}", str(max_statements)) if source == "llm" else None,
        "system_prompt": SYSTEM_PROMPT if source == "llm" else None,
        "words_file": Path(words_file).name,
        "built": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "examples": rows[:: max(1, len(rows) // 5)][:5],
        "counts": {**asdict(summary), "wordnet_reader": wordnet.reader_name if wordnet else None},
    }
    _write_text(output / "build.json", json.dumps(build, indent=2, ensure_ascii=False) + "\n")
    from leaf_hub.hub.card import is_generated_card, render_dataset_card, vocabulary_facts

    readme = output / "README.md"
    if readme.is_file() and not is_generated_card(readme.read_text(encoding="utf-8", errors="replace")):
        logger.info("%s was edited by hand: not replacing it", readme)
    else:
        _write_text(readme, render_dataset_card(output, "vocabulary", facts=vocabulary_facts(output)))


def _write_text(path: Path, text: str) -> None:
    from leaf_hub.hub.card import write_text_atomic

    write_text_atomic(path, text)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    _write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from leaf_hub.hub.card import replace_atomic

    table = pa.table(
        {"word": [r["word"] for r in rows], "text": [r["text"] for r in rows]},
        schema=pa.schema([("word", pa.string()), ("text", pa.string())]),
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        replace_atomic(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- CLI -----------------------------------------------------------------------------------------------
@dataclass
class VocabularyConfig:
    """``leaf-hub vocab build``: the word list, where the statements come from, and how to ask."""

    words: Path = field(metadata={"help": "text file, one word per line", "metavar": "FILE"})
    output: Path = field(
        metadata={
            "help": "dataset folder (also holds the journal that makes reruns resume)",
            "metavar": "DIR",
        }
    )
    source: str = field(
        default="llm", metadata={"help": "where statements come from", "choices": ("llm", "wordnet")}
    )
    base_url: str = field(
        default_factory=lambda: os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL),
        metadata={
            "help": "OpenAI-compatible API base URL (default: $OPENAI_BASE_URL or the OpenAI API)",
            "metavar": "URL",
        },
    )
    model: str | None = field(
        default_factory=lambda: os.environ.get("LEAF_HUB_VOCAB_MODEL"),
        metadata={"help": "chat model name (default: $LEAF_HUB_VOCAB_MODEL)", "metavar": "NAME"},
    )
    api_key: str | None = field(
        default=None,
        metadata={"help": "API key (default: $OPENAI_API_KEY)", "secret": True, "metavar": "KEY"},
    )
    batch_size: int = field(default=20, metadata={"help": "terms per request"})
    limit: int | None = field(default=None, metadata={"help": "only the first N words of the list"})
    rate_limit: float | None = field(
        default=None, metadata={"help": "at most this many requests per second", "metavar": "RPS"}
    )
    max_retries: int = field(
        default=3, metadata={"help": "re-asks of invalid terms, and retries of failed requests"}
    )
    retry_wait: float = field(
        default=2.0, metadata={"help": "first backoff delay in seconds", "metavar": "S"}
    )
    max_statements: int = field(default=10, metadata={"help": "most statements asked per term"})
    timeout: float = field(default=120.0, metadata={"help": "seconds to wait for one answer", "metavar": "S"})
    json_mode: bool = field(
        default=True,
        metadata={
            "help": "send response_format=json_object",
            "no_help": "do not send response_format (for servers without it)",
        },
    )
    retry_failed: bool = field(default=False, metadata={"help": "ask again the words recorded as failed"})
    wordnet_dir: Path | None = field(
        default=None, metadata={"help": "WordNet 3.0 database folder (for source wordnet)", "metavar": "DIR"}
    )

    def validate(self) -> None:
        for name in ("limit", "rate_limit", "max_statements"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(name, f"{{option}} {value} must be positive")
        if self.batch_size <= 0:
            raise ConfigError("batch_size", f"{{option}} {self.batch_size} must be positive")
        if self.max_retries < 0:
            raise ConfigError("max_retries", f"{{option}} {self.max_retries} must be 0 or more")
        if self.source == "llm" and not self.model:
            raise ConfigError(
                "model", "source llm needs {option} NAME (the chat model to ask), or $LEAF_HUB_VOCAB_MODEL"
            )


def build_vocabulary_dataset(config: VocabularyConfig) -> BuildSummary:
    """Build (or resume) the Vocabulary dataset that ``config`` describes: asks the chat model (or reads
    WordNet), writes ``vocabulary.parquet`` / ``.jsonl``, ``failures.jsonl`` and a dataset card."""
    config.validate()
    client = None
    if config.source == "llm":
        api_key = config.api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key and config.base_url.rstrip("/") == DEFAULT_BASE_URL:
            raise ConfigError("api_key", "no API key for api.openai.com: give {option} or set OPENAI_API_KEY")
        client = ChatClient(
            config.base_url,
            config.model or "",
            api_key=api_key,
            rate_limit=config.rate_limit,
            max_retries=config.max_retries,
            retry_wait=config.retry_wait,
            timeout=config.timeout,
            json_mode=config.json_mode,
        )
    try:
        return build_vocabulary(
            config.words,
            config.output,
            source=config.source,
            client=client,
            wordnet_dir=config.wordnet_dir,
            batch_size=config.batch_size,
            limit=config.limit,
            max_retries=config.max_retries,
            max_statements=config.max_statements,
            retry_failed=config.retry_failed,
        )
    finally:
        if client is not None:
            client.close()

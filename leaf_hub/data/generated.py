"""Generated training sets that need no download: BERT tokens, English words and a built-in corpus.

``bert-tokens`` is the paper's set of every vocabulary entry of the student's tokenizer. ``builtin`` and
``words`` need nothing but Python: they are built from the documentation that every CPython carries
(``pydoc_data.topics`` and the standard library's docstrings), so the README's quick-start runs on a fresh
machine without the Hub. They are deterministic for a given Python version.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import random
import re
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from leaf_hub.data.specs import Kind
from leaf_hub.errors import LeafHubError

_UNUSED_TOKEN = re.compile(r"^[\[<]unused\d+[\]>]$")


def _load_tokenizer(name: str):
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise LeafHubError(
            f"could not load the tokenizer {name!r} for bert-tokens ({type(exc).__name__}); give a Hub id or a "
            "folder with tokenizer files"
        ) from None


def _vocab_pieces(tokenizer: Any) -> list[str]:
    """Every vocabulary entry as text, in id order, not de-duplicated (so the duplicates are counted)."""
    if not hasattr(tokenizer, "get_vocab") and hasattr(tokenizer, "tokenizer"):
        tokenizer = tokenizer.tokenizer  # a SentenceTransformer
    if not hasattr(tokenizer, "get_vocab"):
        raise LeafHubError(f"bert-tokens needs a transformers tokenizer, got {type(tokenizer).__name__}")
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(added, "special", False):
            special.add(str(added.content))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    wordpiece = backend is not None and type(backend.model).__name__ == "WordPiece"
    pieces = []
    for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        if token in special or _UNUSED_TOKEN.match(token):
            continue
        if token.startswith("##") and len(token) > 2:
            text = token[2:]
        elif wordpiece:
            text = token
        else:  # SentencePiece "▁word", byte-level BPE "Ġword": let the tokenizer turn it into text
            text = tokenizer.convert_tokens_to_string([token])
        text = text.strip()
        if text and "\ufffd" not in text:  # partial UTF-8 bytes of byte-level vocabularies are not text
            pieces.append(text)
    return pieces


def bert_tokens(tokenizer: Any) -> list[str]:
    """The paper's BERT-tokens set: every vocabulary entry of ``tokenizer`` as a text, de-duplicated.

    Special tokens and ``[unusedN]`` placeholders are skipped; ``##`` continuation pieces lose the ``##``.
    """
    return list(dict.fromkeys(_vocab_pieces(tokenizer)))


# Modules whose docstrings are tests, demos or generated tables rather than English prose.
_SKIP_MODULES = {
    "test", "idlelib", "lib2to3", "turtledemo", "ensurepip", "encodings", "pydoc_data", "tkinter", "this",
    "antigravity", "turtle", "sre_constants", "sre_parse", "sre_compile", "pydoc", "venv", "msilib",
}  # fmt: skip
# Summaries that start with one of these verbs read as "how do I <summary>?" queries.
_HOWTO_VERBS = {
    "return", "create", "convert", "read", "write", "open", "close", "get", "set", "remove", "delete", "add",
    "compute", "calculate", "check", "test", "find", "parse", "format", "encode", "decode", "split", "join",
    "copy", "move", "make", "build", "send", "receive", "start", "stop", "wait", "run", "load", "save",
    "register", "change", "compare", "construct", "extract", "generate", "insert", "list", "print", "raise",
    "rename", "replace", "reset", "search", "sort", "translate", "update", "validate", "wrap", "flush",
    "acquire", "release", "execute", "call", "fetch", "install", "lock", "match", "merge", "normalize",
    "quote", "unquote", "escape", "serialize", "clear", "append", "extend", "count", "determine",
}  # fmt: skip
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"(])")
_RST_ROLE = re.compile(r":[a-z:]+:`~?([^`<]+?)(?:\s*<[^>]+>)?`")


def _clean(text: str) -> str:
    text = _RST_ROLE.sub(r"\1", text)
    text = text.replace("``", '"').replace("`", "")
    text = re.sub(r"(?<![\w*])\*{1,2}([^*\s][^*]*?)\*{1,2}(?![\w*])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def _is_prose(text: str, min_words: int = 6) -> bool:
    words = text.split()
    if len(words) < min_words or len(words) > 400:
        return False
    if ">>>" in text or "::=" in text or text.count("|") > 2 or text.count("=") > 3:
        return False
    alpha = sum(1 for w in words if re.fullmatch(r"[A-Za-z][a-z'-]*[.,;:!?)]*", w))
    return alpha / len(words) >= 0.7 and text[0].isupper()


def _topic_blocks(topic: str) -> Iterator[tuple[str, str]]:
    """('heading' | 'para', text) for one pydoc topic: headings, and prose paragraphs (code skipped)."""
    lines = topic.splitlines()
    block: list[str] = []

    def flush() -> Iterator[tuple[str, str]]:
        if not block:
            return
        first = block[0]
        indent = len(first) - len(first.lstrip())
        if first.lstrip().startswith(("+", "|", ">>>", "...")) or (
            indent >= 3 and not first.lstrip().startswith("*")
        ):
            return  # tables, doctests, grammar and code examples
        text = _clean(" ".join(line.strip().removeprefix("* ") for line in block))
        yield "para", text

    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if (
            line.strip()
            and len(set(line.strip())) == 1
            and line.strip()[0] in "*=-~^"
            and len(line.strip()) >= 3
        ):
            continue  # the underline of a heading (handled with the heading)
        if (
            line.strip()
            and nxt.strip()
            and len(set(nxt.strip())) == 1
            and nxt.strip()[0] in "*=-~^"
            and (len(nxt.strip()) >= max(3, len(line.strip()) - 2))
        ):
            yield from flush()
            block = []
            yield "heading", _clean(line)
            continue
        if not line.strip():
            yield from flush()
            block = []
            continue
        if block and line.lstrip().startswith("* ") and not block[0].lstrip().startswith("* "):
            yield from flush()  # a list starts: each item is its own paragraph
            block = []
        elif block and line.lstrip().startswith("* "):
            yield from flush()
            block = []
        block.append(line)
    yield from flush()


def _heading_queries(heading: str) -> list[str]:
    h = heading.strip().rstrip(":").replace('"', "")
    if not h or len(h.split()) > 8:
        return []
    h = re.sub(r"\s*\(.*?\)\s*", " ", h).strip()
    lower = h[0].lower() + h[1:] if not h[:2].isupper() else h
    templates = (
        f"What is {lower}?",
        f"How do {lower} work in Python?",
        f"python {lower.lower()}",
        f"Explain {lower} with an example",
        f"{lower.lower()} documentation",
    )
    i = zlib.crc32(h.encode()) % len(templates)
    return [templates[i], templates[(i + 2) % len(templates)]]


def _stdlib_files() -> list[Path]:
    """The standard library's pure-Python top-level modules (a package by its __init__), in a fixed order.

    Submodules of packages are left out: they double the parse time (about 2 s more) for texts much like
    the ones already there.
    """
    files: list[Path] = []
    for name in sorted(getattr(sys, "stdlib_module_names", ())):
        if name in _SKIP_MODULES or name.startswith("_"):
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            files.append(Path(spec.origin))
    return files


def _docstring_texts(path: Path) -> Iterator[tuple[str, Kind]]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
        return
    module = path.stem if path.stem != "__init__" else path.parent.name
    doc = ast.get_docstring(tree)
    if doc:
        for para in doc.split("\n\n"):
            text = _clean(para)
            if _is_prose(text, 8):
                yield text, "document"
    for node in tree.body:
        nodes = [(node, None)]
        if isinstance(node, ast.ClassDef):
            nodes += [(child, node.name) for child in node.body]
        for item, owner in nodes:
            if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if item.name.startswith("_"):
                continue
            doc = ast.get_docstring(item)
            if not doc:
                continue
            paras = [_clean(p) for p in doc.split("\n\n")]
            summary = paras[0]
            qualname = ".".join(p for p in (module, owner, item.name) if p)
            if _is_prose(summary, 5):
                yield summary, "document"
                yield from ((q, "query") for q in _docstring_queries(summary, qualname, item))
            for para in paras[1:3]:
                if _is_prose(para, 12):
                    yield para, "document"


def _docstring_queries(summary: str, qualname: str, node: ast.AST) -> list[str]:
    first = re.split(r"(?<=[.;:])\s", summary, maxsplit=1)[0].rstrip(".;:")
    words = first.split()
    pick = zlib.crc32(qualname.encode()) % 4
    out = []
    if words and words[0].lower().rstrip("s") in _HOWTO_VERBS and 3 <= len(words) <= 16:
        verb = words[0].lower()
        verb = verb[:-1] if verb.endswith("s") and verb[:-1] in _HOWTO_VERBS else verb
        out.append(
            f"how do I {verb} {' '.join(words[1:])} in python?"
            if pick % 2
            else f"how to {verb} {' '.join(words[1:])}"
        )
    if isinstance(node, ast.ClassDef):
        out.append(f"What is {qualname} used for?")
    elif pick == 0:
        out.append(f"What does {qualname}() do?")
    elif pick == 1:
        out.append(f"python {qualname.replace('.', ' ')}")
    return out


def _section_document(heading: str, paragraphs: list[str]) -> list[tuple[str, Kind]]:
    """A long document: a section's heading and its first paragraphs, up to about 350 words."""
    if len(paragraphs) < 2:
        return []
    parts = [heading + "."] if heading else []
    words = 0
    for para in paragraphs:
        if words > 350:
            break
        parts.append(para)
        words += len(para.split())
    return [(" ".join(parts), "document")]


@functools.lru_cache(maxsize=1)
def builtin_corpus() -> tuple[tuple[str, Kind], ...]:
    """An English corpus of queries and documents built only from what every CPython install carries.

    Documents: paragraphs of the language reference topics in ``pydoc_data.topics``, longer sections made
    of several paragraphs, single sentences, and the summaries and paragraphs of the standard library's
    docstrings. Queries: questions and keyword searches derived from section headings and from
    docstring summaries ("how to join two or more pathname components", "What does os.path.join() do?").
    Deterministic for a given Python version; texts are not de-duplicated here (``load_texts`` does it).
    """
    out: list[tuple[str, Kind]] = []
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions split the docs out of the standard library
        topics = {}
    for name in sorted(topics):
        heading = ""
        section: list[str] = []
        for kind, text in _topic_blocks(topics[name]):
            if kind == "heading":
                out.extend(_section_document(heading, section))
                heading, section = text, []
                out.extend((q, "query") for q in _heading_queries(text))
            elif _is_prose(text):
                out.append((text, "document"))
                section.append(text)
                sentences = _SENTENCE_END.split(text)
                if len(sentences) > 1:
                    out.extend((s, "document") for s in sentences if _is_prose(s, 5) and len(s.split()) <= 40)
        out.extend(_section_document(heading, section))
    for path in _stdlib_files():
        out.extend(_docstring_texts(path))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def builtin_words() -> tuple[str, ...]:
    """English words (lowercase, alphabetic, 2+ letters, seen twice or more) in the built-in corpus's prose, sorted."""
    counts: dict[str, int] = {}
    for text, kind in builtin_corpus():
        if kind == "document":
            for w in re.findall(r"(?<![\w.])[A-Za-z]{2,}(?![\w.(])", text):
                counts[w.lower()] = counts.get(w.lower(), 0) + 1
    # A word seen once is often a fragment of an identifier or an abbreviation; twice is a word.
    return tuple(sorted(w for w, n in counts.items() if n >= 2))


def generated_items(
    source_type: str, options: dict[str, str], tokenizer: Any, seed: int
) -> list[tuple[str, Kind]]:
    """The (text, kind) rows of a generated set (``builtin``, ``bert-tokens`` or ``words``), sampled by ``limit``.

    ``limit=N`` keeps a random sample (by ``seed``) of N rows, in their original order.
    """
    kind: Kind = options.get("kind", "document")  # type: ignore[assignment]
    if source_type == "builtin":
        items = list(builtin_corpus())
    elif source_type == "bert-tokens":
        tokenizer = _load_tokenizer(options["tokenizer"]) if "tokenizer" in options else tokenizer
        items = [(t, kind) for t in _vocab_pieces(tokenizer)]
    else:
        items = [(w, kind) for w in builtin_words()]
    limit = options.get("limit", "all")
    if limit != "all" and int(limit) < len(items):
        keep = sorted(random.Random(seed).sample(range(len(items)), int(limit)))
        items = [items[i] for i in keep]
    return items

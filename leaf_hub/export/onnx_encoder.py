"""A torch-free encoder for exported models: ONNX Runtime + the ``tokenizers`` library + numpy.

``leaf-hub export`` writes ``onnx/model.onnx`` (and ``onnx/model_quantized.onnx``) whose graph holds the
whole model, pooling, projection and normalization included, so serving needs no PyTorch and no
sentence-transformers: only tokenization, batching and prompts, which this module reproduces from the
model folder's own files, the same ones sentence-transformers reads:

- ``modules.json`` -> the folder of the Transformer module (usually the model folder itself);
- there, ``tokenizer.json`` (the fast tokenizer), ``tokenizer_config.json`` (pad token, padding and
  truncation side, ``model_max_length``), ``sentence_bert_config.json`` (``max_seq_length``,
  ``do_lower_case``) and ``config.json`` (``max_position_embeddings``);
- ``config_sentence_transformers.json`` -> prompts and the default prompt name.

Texts are sorted by length before batching (as sentence-transformers does) so that little padding is
computed, and results come back in input order. Embeddings equal the PyTorch model's within the export
tolerance (max abs difference 1e-4 for fp32), which ``leaf-hub export`` checks on every export.

Only numpy, onnxruntime, tokenizers and the standard library are imported here (huggingface_hub only to
resolve a Hub id); a test checks that using this module never imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leaf_hub.errors import LeafHubError
from leaf_hub.files import read_json

ONNX_SUBFOLDER = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model_quantized.onnx"
# sentence-transformers' encode_document looks for these prompt names, in this order.
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")


def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path) or {}


def _token_content(token: Any) -> str | None:
    """A special token from tokenizer_config.json: a string or an AddedToken dict."""
    if isinstance(token, dict):
        return token.get("content")
    return token


def resolve_model_dir(model: str | os.PathLike, onnx_file: str = f"{ONNX_SUBFOLDER}/{FP32_FILE}") -> Path:
    """A local model folder, or the local snapshot of a Hub model repository (downloaded when needed).

    From the Hub only the configs, the tokenizer and ``onnx_file`` are fetched, not the PyTorch weights
    or the other ONNX variants a repository may carry.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    name = str(model)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise LeafHubError(
            f"model folder {name!r} does not exist; give a folder written by `leaf-hub export`"
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                name,
                allow_patterns=["*.json", "*.txt", "*.model", "*/*.json", onnx_file],
            )
        )
    except Exception as exc:  # huggingface_hub raises many types: offline, 404, gated, ...
        raise LeafHubError(
            f"model {name!r} is neither a local folder nor a Hub model that could be downloaded ({exc}); "
            "give a local folder with onnx/model.onnx, or check the id and your connection"
        ) from exc


def transformer_folder(model_dir: Path) -> Path:
    """The folder of the model's Transformer module (holds tokenizer and configs), per modules.json."""
    modules = _read_json(model_dir / "modules.json")
    if isinstance(modules, list) and modules:
        first = sorted(modules, key=lambda m: m.get("idx", 0))[0]
        sub = first.get("path", "") or ""
        if not (model_dir / sub).is_dir():
            raise LeafHubError(
                f"{model_dir}/modules.json names a missing module folder {sub!r}; re-save the model"
            )
        return model_dir / sub
    return model_dir


class OnnxEncoder:
    """Encode texts with an exported model folder using ONNX Runtime only.

    ``model_dir`` is a model folder containing ``onnx/model.onnx`` (see ``leaf-hub export``) or a Hub id.
    ``quantized`` picks ``onnx/model_quantized.onnx``; ``onnx_file`` names another graph file (relative to
    ``model_dir`` or absolute). ``max_seq_length`` overrides the model's (benchmarks run teacher and leaf
    at the same length). ``allow_spinning=False`` stops ONNX Runtime's idle worker threads from spin-waiting
    for the next call: leave it on for one model serving alone (the next call starts a little sooner), turn
    it off when several sessions share the cores, as the benchmark's alternating teacher and leaf do (with
    2 threads each, spinning made both 2.2-2.5x slower on short queries here: each session's idle workers
    kept a core busy while the other ran).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        quantized: bool = False,
        providers: Sequence[str] | None = None,
        intra_op_threads: int | None = None,
        onnx_file: str | os.PathLike | None = None,
        max_seq_length: int | None = None,
        allow_spinning: bool = True,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer, normalizers

        default_file = f"{ONNX_SUBFOLDER}/{INT8_FILE if quantized else FP32_FILE}"
        self.model_dir = resolve_model_dir(model_dir, default_file if onnx_file is None else str(onnx_file))
        if onnx_file is None:
            onnx_path = self.model_dir / default_file
        else:
            onnx_path = Path(onnx_file)
            onnx_path = onnx_path if onnx_path.is_absolute() else self.model_dir / onnx_path
        if not onnx_path.is_file():
            raise LeafHubError(
                f"{onnx_path} does not exist; run `leaf-hub export --model {self.model_dir}` first"
            )
        self.onnx_path = onnx_path

        tdir = transformer_folder(self.model_dir)
        if not (tdir / "tokenizer.json").is_file():
            raise LeafHubError(
                f"{tdir} has no tokenizer.json (a fast tokenizer is needed without PyTorch); "
                "re-save the model with sentence-transformers, which writes one"
            )
        sbert = _read_json(tdir / "sentence_bert_config.json")
        tok_config = _read_json(tdir / "tokenizer_config.json")
        config = _read_json(tdir / "config.json")
        st_config = _read_json(self.model_dir / "config_sentence_transformers.json")

        modules = _read_json(self.model_dir / "modules.json")
        # The graph normalizes when the model ends with a Normalize module (export puts the whole stack in it).
        self.normalized = isinstance(modules, list) and any(
            str(m.get("type", "")).endswith("Normalize") for m in modules if isinstance(m, dict)
        )
        self.prompts: dict[str, str] = {k: v or "" for k, v in (st_config.get("prompts") or {}).items()}
        self.default_prompt_name: str | None = st_config.get("default_prompt_name")

        tokenizer = Tokenizer.from_file(str(tdir / "tokenizer.json"))
        if sbert.get("do_lower_case"):
            # As sentence-transformers does: a Lowercase step in front of the tokenizer's own normalizer.
            steps = [normalizers.Lowercase()]
            if tokenizer.normalizer is not None:
                steps.append(tokenizer.normalizer)
            tokenizer.normalizer = normalizers.Sequence(steps)
        self._tokenizer = tokenizer
        self._truncation_side = "left" if tok_config.get("truncation_side") == "left" else "right"
        # The pad token as transformers uses it: tokenizer_config.json first, then tokenizer.json's padding.
        file_padding = tokenizer.padding or {}
        pad_token = _token_content(tok_config.get("pad_token")) or file_padding.get("pad_token") or "[PAD]"
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            pad_id = int(file_padding.get("pad_id", 0))
        tokenizer.enable_padding(
            direction="left" if tok_config.get("padding_side") == "left" else "right",
            pad_id=pad_id,
            pad_type_id=int(tok_config.get("pad_token_type_id", 0) or 0),
            pad_token=pad_token,
        )

        # sentence-transformers: an explicit max_seq_length wins; otherwise the tokenizer's model_max_length
        # capped at the position embeddings.
        if sbert.get("max_seq_length"):
            model_max = int(sbert["max_seq_length"])
        else:
            model_max = int(min(float(tok_config.get("model_max_length") or 1e30), 1e9))
            positions = config.get("max_position_embeddings")
            if positions and positions > 0:
                model_max = min(model_max, int(positions))
        self.model_max_seq_length = model_max
        self.max_seq_length = max_seq_length or model_max

        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = int(intra_op_threads)
            options.inter_op_num_threads = 1
        if not allow_spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=list(providers or ["CPUExecutionProvider"])
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        outputs = {o.name: o for o in self.session.get_outputs()}
        if "sentence_embedding" not in outputs:
            raise LeafHubError(
                f"{onnx_path} has no 'sentence_embedding' output (outputs: {sorted(outputs)}): it holds only the "
                "transformer; re-export it with `leaf-hub export`"
            )
        dim = outputs["sentence_embedding"].shape[-1]
        self._dimension = dim if isinstance(dim, int) else None
        self._tokenizer_file = tdir / "tokenizer.json"
        self._file_digest: str | None = None

    # -- properties -----------------------------------------------------------------------------------

    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self._max_seq_length = int(value)
        self._tokenizer.enable_truncation(
            max_length=self._max_seq_length, strategy="longest_first", direction=self._truncation_side
        )

    @property
    def dimension(self) -> int:
        """The embedding dimension."""
        if self._dimension is None:
            self._dimension = int(self.encode(["dimension probe"]).shape[1])
        return self._dimension

    def get_embedding_dimension(self) -> int:
        """Same as :attr:`dimension` (the sentence-transformers method name)."""
        return self.dimension

    def fingerprint(self) -> str:
        """A short hash of what determines the embeddings: graph file, tokenizer, max_seq_length.

        Embedding caches key on it, so an int8 graph's embeddings are never served for the fp32 graph's.
        """
        import hashlib

        if self._file_digest is None:
            digest = hashlib.sha256()
            for path in (self.onnx_path, self._tokenizer_file):
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        digest.update(block)
            self._file_digest = digest.hexdigest()
        key = f"onnx {self._file_digest} {self.max_seq_length} {self._truncation_side}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    # -- encoding -------------------------------------------------------------------------------------

    def _resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str:
        if prompt is not None:
            return prompt
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        if name is None:
            return ""
        if name not in self.prompts:
            raise LeafHubError(
                f"prompt name {name!r} is not one of this model's prompts {sorted(self.prompts)}; "
                "use one of those or pass prompt=..."
            )
        return self.prompts[name]

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Token ids, attention mask (and token type ids when the graph takes them), padded to the longest."""
        encodings = self._tokenizer.encode_batch(list(texts))
        feed = {
            "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
        }
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        return feed

    def encode(
        self,
        texts: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        output_value: str = "sentence_embedding",
        normalize_embeddings: bool = False,
        convert_to_numpy: bool = True,
        show_progress_bar: bool | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Embed ``texts``: an ``(n, dimension)`` float32 array (1-D for a single string).

        ``prompt_name`` / ``prompt`` and the default prompt behave as in sentence-transformers.
        ``output_value="token_embeddings"`` returns one ``(tokens, hidden)`` array per text instead.
        ``convert_to_numpy`` and ``show_progress_bar`` are accepted so that code written for
        sentence-transformers runs unchanged: results are numpy arrays either way, and there is no bar.
        """
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        if batch_size < 1:
            raise LeafHubError(f"batch_size must be >= 1, got {batch_size}")
        if output_value not in ("sentence_embedding", "token_embeddings"):
            raise LeafHubError(
                f"output_value must be 'sentence_embedding' or 'token_embeddings', not {output_value!r}"
            )
        prefix = self._resolve_prompt(prompt, prompt_name)
        if prefix:
            items = [prefix + t for t in items]
        # Longest first, as sentence-transformers does: batches of similar length need little padding.
        order = np.argsort([-len(t) for t in items], kind="stable")
        graph_output = "sentence_embedding" if output_value == "sentence_embedding" else "last_hidden_state"
        results: list[Any] = [None] * len(items)
        for start in range(0, len(items), batch_size):
            idx = order[start : start + batch_size]
            feed = self.tokenize([items[i] for i in idx])
            (out,) = self.session.run([graph_output], feed)
            for row, i in enumerate(idx):
                if graph_output == "sentence_embedding":
                    results[i] = out[row]
                else:
                    results[i] = out[row][feed["attention_mask"][row].astype(bool)]
        if output_value == "token_embeddings":
            return results[0] if single else results
        dim = self._dimension or (results[0].shape[-1] if results else 0)
        embeddings = np.stack(results).astype(np.float32) if results else np.zeros((0, dim), np.float32)
        if normalize_embeddings and len(embeddings):
            embeddings = embeddings / np.clip(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12, None)
        return embeddings[0] if single else embeddings

    def encode_query(self, texts: str | Sequence[str], batch_size: int = 32, **kwargs) -> np.ndarray:
        """Embed queries with the model's "query" prompt (when it has one)."""
        if kwargs.get("prompt_name") is None and kwargs.get("prompt") is None and "query" in self.prompts:
            kwargs["prompt_name"] = "query"
        return self.encode(texts, batch_size=batch_size, **kwargs)

    def encode_document(self, texts: str | Sequence[str], batch_size: int = 32, **kwargs) -> np.ndarray:
        """Embed documents with the model's "document" (or "passage", "corpus") prompt when it has one."""
        if kwargs.get("prompt_name") is None and kwargs.get("prompt") is None:
            for name in DOCUMENT_PROMPT_NAMES:
                if name in self.prompts:
                    kwargs["prompt_name"] = name
                    break
        return self.encode(texts, batch_size=batch_size, **kwargs)

    def __repr__(self) -> str:
        return f"OnnxEncoder({str(self.onnx_path)!r}, max_seq_length={self.max_seq_length})"

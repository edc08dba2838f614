"""Tiny, random, real sentence-transformers models built in-process for fast offline tests.

They are real BERT models with real WordPiece tokenizers, only small: every code path (tokenization,
padding, pooling, saving, loading, ONNX export) runs as it does for a full-size model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

_WORDS = (
    "the a an of to and in is was for on with as by at from that this it be are or not have has which "
    "what who how why when where query document search retrieval embedding model teacher student leaf "
    "cat dog house car tree water fire city music science history language computer data network "
    "information library book paper study result method system user text word sentence vector space "
    "red blue green big small fast slow good bad new old first last one two three many"
).split()


def build_tokenizer(folder: Path, lowercase: bool = True) -> PreTrainedTokenizerFast:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += (
        _WORDS
        + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
        + list("abcdefghijklmnopqrstuvwxyz0123456789.,?!'-")
    )
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(dict.fromkeys(vocab))}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    fast.save_pretrained(folder)
    return fast


def build_tiny_model(
    folder: str | Path,
    hidden: int = 32,
    layers: int = 2,
    normalize: bool = False,
    seed: int = 0,
    max_position: int = 128,
    max_seq_length: int = 64,
    prompts: dict[str, str] | None = None,
    lowercase: bool = True,
) -> SentenceTransformer:
    """Build and save a random BERT sentence-transformer (Transformer + mean Pooling [+ Normalize])."""
    folder = Path(folder)
    backbone = folder / "backbone"
    backbone.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(backbone, lowercase=lowercase)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden * 2,
        max_position_embeddings=max_position,
    )
    BertModel(config).save_pretrained(backbone)
    transformer = Transformer(str(backbone), max_seq_length=max_seq_length)
    modules = [transformer, Pooling(hidden, pooling_mode="mean")]
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, prompts=prompts, device="cpu")
    model.save(str(folder))
    return SentenceTransformer(str(folder), device="cpu")

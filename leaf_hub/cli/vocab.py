"""``leaf-hub vocab build``: flags -> :class:`~leaf_hub.data.vocabulary.VocabularyConfig` -> the dataset."""

from __future__ import annotations

import argparse

from leaf_hub.cli.options import add_config_arguments, config_from_args
from leaf_hub.data.vocabulary import VocabularyConfig

CONFIGS = (VocabularyConfig,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="vocab_action", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="build (or resume) the Vocabulary dataset from a word list",
        description="Ask an OpenAI-compatible chat endpoint (or WordNet) for definitions and facts of each word.",
    )
    add_config_arguments(build, VocabularyConfig)


def run(args: argparse.Namespace) -> int:
    from leaf_hub.data.vocabulary import build_vocabulary_dataset
    from leaf_hub.hub.publish import quiet_http_logs

    quiet_http_logs()
    config = config_from_args(VocabularyConfig, args)
    summary = build_vocabulary_dataset(config)
    print(f"vocabulary: {summary.line()}")
    print(f"wrote {config.output / 'vocabulary.parquet'} (+ vocabulary.jsonl, failures.jsonl, README.md)")
    return 0

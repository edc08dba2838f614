"""``leaf-hub pair``: flags -> :func:`~leaf_hub.export.pair.write_pair` -> one asymmetric model folder."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--leaf", required=True, help="the leaf model folder (queries)")
    parser.add_argument(
        "--teacher", required=True, help="the teacher it was distilled from: Hub id or folder (documents)"
    )
    parser.add_argument("--output", required=True, help="folder to write the asymmetric model into")
    parser.add_argument(
        "--force", action="store_true", help="pair even if leaf_run.json names a teacher with other weights"
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip loading the written pair back to check it"
    )


def run(args: argparse.Namespace) -> int:
    from leaf_hub.export.pair import write_pair

    out = write_pair(args.leaf, args.teacher, args.output, force=args.force, verify=not args.no_check)
    print(f"wrote {out}: encode_query -> leaf ({args.leaf}), encode_document -> teacher ({args.teacher})")
    return 0

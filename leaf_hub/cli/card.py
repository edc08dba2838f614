"""``leaf-hub card``: flags -> :func:`~leaf_hub.hub.card.render_card` -> README.md in the folder (or --output)."""

from __future__ import annotations

import argparse
from pathlib import Path

from leaf_hub.errors import LeafHubError


def add_model_identity_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The options that name, on a public card, what the leaf's run knows only as local files."""
    parser.add_argument(
        "--teacher-repo-id",
        metavar="OWNER/NAME",
        help="the teacher's Hub id, when the leaf was distilled from a local folder (default: as recorded)",
    )
    parser.add_argument(
        "--student-repo-id",
        metavar="OWNER/NAME",
        help="the student backbone's Hub id, when it was loaded from a local folder (default: as recorded)",
    )
    parser.add_argument(
        "--bench",
        metavar="FILE",
        help="the JSON report of `leaf-hub bench --output FILE` (default: bench_report.json in the folder)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from leaf_hub.hub.card import DATASET_KINDS, MODEL_KINDS

    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--model", metavar="DIR", help="a leaf folder (OUTPUT/leaf) or an asymmetric pair folder"
    )
    where.add_argument(
        "--dataset", metavar="DIR", help="a Vocabulary dataset folder or a teacher-embedding cache"
    )
    parser.add_argument(
        "--kind",
        choices=("auto", *MODEL_KINDS, *DATASET_KINDS),
        default="auto",
        help="what the folder holds (default: detected from its files)",
    )
    parser.add_argument(
        "--repo-id", help="the Hub id the card's usage examples load (default: a placeholder)"
    )
    add_model_identity_arguments(parser)
    parser.add_argument("--output", help="where to write the card (default: README.md inside the folder)")


def run(args: argparse.Namespace) -> int:
    from leaf_hub.files import atomic_write_text
    from leaf_hub.hub.card import DATASET_KINDS, MODEL_KINDS, detect_kind, render_card

    folder = Path(args.model or args.dataset)
    if not folder.is_dir():
        raise LeafHubError(f"{folder} does not exist or is not a folder; give the folder the card describes")
    kind = detect_kind(folder) if args.kind == "auto" else args.kind
    if args.model and kind not in MODEL_KINDS:
        raise LeafHubError(f"--model {folder} holds a {kind} dataset; use --dataset for it")
    if args.dataset and kind not in DATASET_KINDS:
        raise LeafHubError(f"--dataset {folder} holds a {kind} model; use --model for it")
    text = render_card(
        folder,
        kind,
        args.repo_id,
        teacher_repo_id=args.teacher_repo_id,
        student_repo_id=args.student_repo_id,
        bench=args.bench,
    )
    output = Path(args.output) if args.output else folder / "README.md"
    atomic_write_text(output, text)
    print(f"wrote the {kind} card to {output}")
    return 0

"""``leaf-hub publish``: flags -> :func:`~leaf_hub.hub.publish.plan_publish` -> the plan (``--dry-run``) or
:func:`~leaf_hub.hub.publish.publish` -> the commit."""

from __future__ import annotations

import argparse
import logging

from leaf_hub.cli.card import add_model_identity_arguments

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        metavar="PATH",
        help="a leaf folder (OUTPUT/leaf), a pair, a dataset folder, or a Space folder (leaf-hub space --export)",
    )
    parser.add_argument("--repo-id", required=True, help="USER/NAME or ORG/NAME on the Hub")
    parser.add_argument(
        "--repo-type",
        choices=("auto", "model", "dataset", "space"),
        default="auto",
        help="default: space for a Space folder, dataset for the Vocabulary or a teacher cache, model otherwise",
    )
    parser.add_argument("--private", action="store_true", help="create the repo private (if it is created)")
    parser.add_argument(
        "--revision", metavar="BRANCH", help="commit to this branch (created from main if missing)"
    )
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--dry-run", action="store_true", help="print the files and the commit; send nothing")
    parser.add_argument("--token", help="Hub token with write access (default: HF_TOKEN or `hf auth login`)")
    parser.add_argument("--commit-message", help="default: 'Upload <kind> with leaf-hub <version>'")
    parser.add_argument(
        "--include", action="append", metavar="PATH", help="also upload this file or folder (e.g. eval plots)"
    )
    parser.add_argument("--keep-readme", action="store_true", help="upload the folder's README.md as it is")
    add_model_identity_arguments(parser.add_argument_group("the card of a leaf or pair"))


def run(args: argparse.Namespace) -> int:
    from leaf_hub.hub.publish import human_size, plan_publish, publish, quiet_http_logs

    quiet_http_logs()
    plan = plan_publish(
        args.path,
        args.repo_id,
        repo_type=args.repo_type,
        private=args.private,
        revision=args.revision,
        create_pr=args.create_pr,
        commit_message=args.commit_message,
        keep_readme=args.keep_readme,
        include=args.include,
        teacher_repo_id=args.teacher_repo_id,
        student_repo_id=args.student_repo_id,
        bench=args.bench,
    )
    if args.dry_run:
        print("leaf-hub publish --dry-run: nothing is sent; this publish would make one commit:")
        print(plan.describe())
        return 0
    logger.info("publishing %d files (%s) to %s", len(plan.files), human_size(plan.total_size), plan.repo_id)
    result = publish(plan, token=args.token)
    if result.changed == 0:
        print(
            f"{plan.repo_id} is up to date: all {result.unchanged} files are already there ({result.commit_url})"
        )
    elif result.pr_url:
        print(f"opened {result.pr_url} with {result.changed} changed files ({result.unchanged} unchanged)")
    else:
        print(
            f"published {result.changed} changed files ({result.unchanged} unchanged) to {plan.repo_id}: "
            f"{result.commit_url}"
        )
    return 0

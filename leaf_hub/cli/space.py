"""``leaf-hub space``: flags -> :func:`~leaf_hub.space.app.build_app` -> a running Gradio app, or
``--export DIR`` -> :func:`~leaf_hub.space.export.export_space` -> a Space folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from leaf_hub.errors import LeafHubError

EXTRAS = ("space",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--leaf", required=True, help="leaf model: a local folder or a Hub id")
    parser.add_argument(
        "--teacher",
        help="its teacher: a Hub id or folder (default: the teacher recorded in the leaf's leaf_run.json)",
    )
    parser.add_argument(
        "--report-dir",
        help="folder with eval_report.json / bench_report.json (default: the leaf folder or its Hub repo)",
    )
    parser.add_argument(
        "--host",
        default=None,
        help="address to listen on, 0.0.0.0 for all (default: GRADIO_SERVER_NAME, else 127.0.0.1)",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port to listen on (default: GRADIO_SERVER_PORT, else 7860)"
    )
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    export = parser.add_argument_group("export a Space folder instead of running the app")
    export.add_argument(
        "--export",
        metavar="DIR",
        help="write a self-contained Hugging Face Space to DIR (app.py, README.md, requirements.txt, leaf_hub/); "
        "publish it with `leaf-hub publish DIR --repo-id USER/SPACE`",
    )
    export.add_argument(
        "--leaf-repo-id",
        metavar="USER/NAME",
        help="with --export and a local --leaf folder: the Hub repo the leaf is (or will be) published to",
    )
    export.add_argument("--title", help="with --export: the Space's title (default: Leaf vs Teacher)")


def teacher_from_run(leaf: str) -> str | None:
    """The teacher the leaf's ``leaf_run.json`` names (its Hub id when distill recorded one), or None."""
    from leaf_hub.training.distill import DistillResult

    facts = DistillResult.find(leaf)
    return (facts.teacher_repo_id or facts.teacher) if facts else None


def _export(args: argparse.Namespace, teacher: str) -> int:
    from leaf_hub.space.export import export_space

    if args.report_dir:
        raise LeafHubError(
            "--report-dir does not apply to --export: the Space reads reports from the leaf's repo"
        )
    done = export_space(args.export, args.leaf, teacher, leaf_repo_id=args.leaf_repo_id, title=args.title)
    print(f"wrote a Space for {done.leaf_id} (teacher {done.teacher_id}) to {done.folder}:")
    for name in done.files:
        print(f"  {name}")
    if Path(args.leaf).expanduser().exists():
        print(f"publish the leaf first: leaf-hub publish {args.leaf} --repo-id {done.leaf_id}")
    print(f"then the Space: leaf-hub publish {done.folder} --repo-id USER/SPACE")
    print(f"(try it here first: cd {done.folder} && python app.py)")
    return 0


def run(args: argparse.Namespace) -> int:
    teacher = args.teacher or teacher_from_run(args.leaf)
    if not teacher:
        raise LeafHubError(
            f"no teacher given and {args.leaf!r} has no leaf_run.json naming one; pass --teacher ID"
        )
    if args.export:
        return _export(args, teacher)
    if args.leaf_repo_id or args.title:
        raise LeafHubError("--leaf-repo-id and --title only apply with --export DIR")
    if args.report_dir and not Path(args.report_dir).is_dir():
        raise LeafHubError(f"--report-dir {args.report_dir!r} is not a folder")
    if args.port is not None and not 0 < args.port < 65536:
        raise LeafHubError(f"--port {args.port} is not a port number; use 1-65535")
    from leaf_hub.space.app import build_app, launch_kwargs, serving_threads

    demo = build_app(args.leaf, teacher, args.report_dir)
    serving_threads()
    # None lets gradio read GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (a Space sets them), as `gradio` and
    # the exported app.py do.
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_kwargs())
    except OSError as exc:
        where = f"{args.host or 'GRADIO_SERVER_NAME'}:{args.port or 'GRADIO_SERVER_PORT'}"
        raise LeafHubError(f"cannot listen on {where} ({exc}); pick another --port") from exc
    return 0

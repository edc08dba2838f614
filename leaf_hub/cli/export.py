"""``leaf-hub export``: flags -> :func:`~leaf_hub.export.onnx.export_model` -> what was written and checked."""

from __future__ import annotations

import argparse
from pathlib import Path

EXTRAS = ("onnx",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder (leaf, teacher, ...) or Hub id")
    parser.add_argument(
        "--output",
        default=None,
        help="folder to write (default: the model folder); the model is saved there too, with onnx/ inside",
    )
    parser.add_argument("--no-quantize", action="store_true", help="write only the fp32 model.onnx")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; dynamo uses >= 18)")
    parser.add_argument(
        "--exporter",
        choices=["torchscript", "dynamo"],
        default="torchscript",
        help="torch.onnx exporter (default torchscript: faster export, same graph quality here)",
    )


def run(args: argparse.Namespace) -> int:
    from leaf_hub.export.onnx import export_model

    report = export_model(
        args.model,
        output_dir=args.output,
        quantize_int8=not args.no_quantize,
        opset=args.opset,
        exporter=args.exporter,
    )
    root = Path(args.output or args.model)
    print(f"wrote {root / report.fp32_file}: max abs difference to PyTorch {report.fp32_max_abs_diff:.1e}")
    if report.int8_file:
        print(
            f"wrote {root / report.int8_file}: mean cosine to PyTorch {report.int8_mean_cosine:.4f} "
            f"(min {report.int8_min_cosine:.4f})"
        )
    print(f"inputs {report.inputs}, outputs {report.outputs}, {report.seconds:.0f} s")
    return 0

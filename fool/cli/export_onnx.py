"""`fool export-onnx`: the onboard graphs, tables and manifest for ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import click

from fool.shared import zoo


@click.command("export-onnx")
@click.option("--model", default=zoo.DEFAULT_MODEL, show_default=True)
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Flight export folder.")
@click.option(
    "--int8",
    "calibration",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Run the analysis's middle convolutions in int8, calibrated on the images in this folder "
    "(e.g. ../shared/data/ucmerced/train): faster on CPUs with VNNI, about 1-2 % more bytes.",
)
def export_onnx(model, out_dir, calibration) -> None:
    """Export the onboard graph, entropy tables and a manifest for ONNX Runtime."""
    from fool.shared import zoo
    from fool.shared.nn.export import export_flight
    from fool.shared.nn.quantise import calibration_tiles

    tiles = calibration_tiles(calibration) if calibration is not None else None
    m = export_flight(zoo.find(model), out_dir, tiles)
    precision = "int8 middle convolutions" if tiles is not None else "float32"
    click.echo(f"exported {m['model_id']} (opset {m['opset']}, {precision}) to {out_dir}")

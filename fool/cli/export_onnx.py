"""`fool export-onnx`: the onboard graphs, tables and manifest for ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export-onnx")
@click.option("--model", default="fool-m", show_default=True)
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Flight export folder.")
def export_onnx(model, out_dir) -> None:
    """Export the onboard graph, entropy tables and a manifest for ONNX Runtime."""
    from fool.shared import zoo
    from fool.shared.nn.export import export_flight

    m = export_flight(zoo.find(model), out_dir)
    click.echo(f"exported {m['model_id']} (opset {m['opset']}) to {out_dir}")

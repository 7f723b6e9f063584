"""`fool demo`: the whole pipeline on one scene, with its numbers."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("scene", required=False, type=click.Path(path_type=Path))
@click.option("-q", "--quality", type=float, default=None, help="1..L, as for compress [default: the model's default]")
@click.option("--model", default=None)
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True)
@click.option("--workdir", type=click.Path(path_type=Path), help="Keep the container and decoded scene here.")
def demo(scene, quality, model, runtime, workdir) -> None:
    """Run the whole pipeline (tile, compress, decode) on a scene and print the numbers."""
    from fool.demo import run_demo
    from fool.shared import zoo

    r = run_demo(scene, quality, model or zoo.DEFAULT_MODEL, workdir, runtime)
    if r.synthetic:
        click.echo("team data not found (set FOOL_DATA): using a generated 768x768 4-band scene")
    click.echo(f"scene        {r.scene}")
    click.echo(f"container    {r.container_bytes} bytes, {r.tiles} tiles")
    click.echo(f"rate         {r.bpp:.3f} bpp ({r.bpp_per_band:.3f} per band), ratio {r.ratio:.1f}:1")
    click.echo(f"quality      PSNR {r.psnr:.2f} dB (per band: {', '.join(f'{p:.2f}' for p in r.psnr_per_band)})")
    click.echo(f"time         compress {r.compress_s:.2f} s, decode {r.decode_s:.2f} s (incl. model load)")

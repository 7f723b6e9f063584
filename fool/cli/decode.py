"""`fool decode`: a .fool container -> a GeoTIFF (the ground side)."""

from __future__ import annotations

from pathlib import Path

import click

from fool.cli.options import progress


@click.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="GeoTIFF to write [default: SRC.decoded.tif].")
@click.option("--threads", type=int, help="Intra-op threads of the synthesis.")
@click.option("--skip-damaged", is_flag=True, help="Leave tiles that fail their CRC empty instead of stopping.")
def decode(src, output, threads, skip_damaged) -> None:
    """Decode a .fool container into a GeoTIFF with the source's georeferencing."""
    from fool.ground.decode import decode_container

    output = output or src.with_suffix(".decoded.tif")  # never the source scene's own name
    r = decode_container(src, output, threads, skip_damaged, progress("decode"))
    click.echo(f"{output}: {r.tiles} tiles in {r.seconds:.2f} s")
    if r.failed:
        click.echo(f"warning: {len(r.failed)} damaged tiles left empty: {r.failed}", err=True)
        raise SystemExit(3)

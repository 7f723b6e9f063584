"""`fool release`: a training checkpoint -> shipped weights and entropy tables."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default="fool-m", show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help="[default: models/]")
@click.option(
    "--synthesis",
    "variant",
    metavar="VARIANT",
    help="Release only the checkpoint's ground synthesis, as <name>.<VARIANT>.pt: another decoder for "
    "model NAME's containers (from fool train --init models/NAME.pt --train-only synthesis).",
)
def release(checkpoint, name, out_dir, variant) -> None:
    """Turn a training checkpoint into a shipped model (weights + entropy tables)."""
    from fool.shared import zoo
    from fool.shared.nn.release import release as run
    from fool.shared.nn.release import release_synthesis

    if variant:
        path = release_synthesis(checkpoint, zoo.find(name).weights, variant, out_dir or zoo.models_dir())
        click.echo(f"released {path} (synthesis {variant!r} for {name})")
        return
    codec = run(checkpoint, name, out_dir or zoo.models_dir())
    click.echo(f"released {codec.model_id}")

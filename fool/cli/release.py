"""`fool release`: a training checkpoint -> shipped weights and entropy tables."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default="fool-m", show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help="[default: models/]")
def release(checkpoint, name, out_dir) -> None:
    """Turn a training checkpoint into a shipped model (weights + entropy tables)."""
    from fool.shared import zoo
    from fool.shared.nn.release import release as run

    codec = run(checkpoint, name, out_dir or zoo.models_dir())
    click.echo(f"released {codec.model_id}")

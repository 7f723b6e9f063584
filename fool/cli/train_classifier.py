"""`fool train-classifier`: train the Task A scene classifier (and its feature-mode decoder)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("train-classifier")
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Checkpoint to write."
)
@click.option("--epochs", default=40, show_default=True)
@click.option("--batch", default=32, show_default=True)
@click.option("--lr", default=2e-3, show_default=True)
@click.option(
    "--val", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder to report accuracy on."
)
@click.option("--seed", default=0, show_default=True)
def train_classifier(data: Path, out: Path, epochs: int, batch: int, lr: float, val: Path | None, seed: int) -> None:
    """Train a scene classifier on DATA/<class>/ images (UC Merced train); CPU, about 1 min per epoch."""
    from fool.tasks.classifier import ClassifierOptions
    from fool.tasks.classifier import train_classifier as run

    last = run(data, out, ClassifierOptions(epochs=epochs, batch=batch, lr=lr, seed=seed), val, click.echo)
    click.echo(f"wrote {out}: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, float)))


@click.command("train-feature-mode")
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--classifier",
    "classifier_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The frozen classifier whose backbone is distilled.",
)
@click.option(
    "-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Checkpoint to write."
)
@click.option("--model", default="fool-m", show_default=True, help="The FOOL model whose latents are decoded.")
@click.option("--steps", default=2000, show_default=True)
@click.option("--batch", default=32, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--variants",
    type=click.Choice(["1", "2", "8"]),
    default="2",
    show_default=True,
    help="Training images per original: 1 as is, 2 with its mirror image, 8 with all rotations and mirrors.",
)
@click.option("--jitter/--no-jitter", default=False, show_default=True, help="Random gain and offset per variant.")
@click.option(
    "--dropout",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.0,
    show_default=True,
    help="Channel dropout between the decoder's blocks.",
)
@click.option("--weight-decay", default=1e-4, show_default=True)
@click.option("--lr", default=1e-3, show_default=True, help="Peak learning rate (warm-up, then cosine).")
@click.option(
    "--init",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Start from this feature-mode decoder (e.g. the one of the model MODEL was fine-tuned from).",
)
@click.option(
    "--val",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Class folders whose accuracy is logged every 500 steps (it does not pick the checkpoint).",
)
def train_feature_mode(
    data: Path,
    classifier_path: Path,
    out: Path,
    model: str,
    steps: int,
    batch: int,
    seed: int,
    variants: str,
    jitter: bool,
    dropout: float,
    weight_decay: float,
    lr: float,
    init: Path | None,
    val: Path | None,
) -> None:
    """Train FOOL's feature mode: a ground decoder from MODEL's latents to the classifier's backbone features."""
    from fool.tasks.feature_mode import FeatureModeOptions
    from fool.tasks.feature_mode import train_feature_mode as run

    opts = FeatureModeOptions(
        steps=steps,
        batch=batch,
        seed=seed,
        variants=int(variants),
        jitter=jitter,
        dropout=dropout,
        weight_decay=weight_decay,
        lr=lr,
        init=str(init) if init is not None else None,
    )
    last = run(data, classifier_path, model, out, opts, click.echo, val)
    click.echo(f"wrote {out}: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, float)))

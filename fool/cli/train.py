"""`fool train`: train or resume the variable-rate codec."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Run folder (checkpoint, CSV log).")
@click.option("--exclude", multiple=True, help="Skip files whose path contains this text (held-out data).")
@click.option("--steps", default=100_000, show_default=True, help="Total steps of the LR schedule.")
@click.option("--max-minutes", type=float, default=None, help="Stop (and checkpoint) after this long.")
@click.option("--batch", default=8, show_default=True)
@click.option(
    "--crop",
    type=click.IntRange(min=16),
    multiple=True,
    default=(128,),
    show_default=True,
    help="Crop size; repeat for mixed sizes (steps cycle through them; --batch is the smallest's, "
    "larger crops get fewer per step at about equal pixels), e.g. --crop 128 --crop 256.",
)
@click.option("--lr", default=3e-4, show_default=True)
@click.option("--lr-min", default=3e-5, show_default=True, help="Floor of the cosine schedule.")
@click.option("--warmup", default=500, show_default=True, help="Steps of linear LR warm-up at the start of a run.")
@click.option("--gray-prob", default=0.15, show_default=True, help="Share of crops from 8-bit single bands.")
@click.option(
    "--deep-prob", default=0.3, show_default=True, help="Share of crops from >8-bit single bands (own pool when > 0)."
)
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda:0.")
@click.option(
    "--autocast/--no-autocast",
    default=None,
    help="bf16 autocast on the transforms [default: on where the CPU has native bf16 (AVX512-BF16/AMX), else fp32].",
)
@click.option(
    "--init",
    type=click.Path(exists=True, path_type=Path),
    help="Start from shipped weights, e.g. models/fool-m.pt (used only when OUT has no checkpoint yet).",
)
@click.option(
    "--dec-blocks",
    type=click.IntRange(0, 8),
    default=None,
    help="Residual blocks per synthesis stage of a new or --init model; a trained decoder can only grow.",
)
@click.option(
    "--latent",
    type=click.IntRange(16, 512),
    default=None,
    help="Latent channels of a new model, or widen an --init model to this many (it can only grow).",
)
@click.option(
    "--latent-ramp",
    default=3000,
    show_default=True,
    help="Steps over which the bits of channels added by --latent enter the loss (they start free).",
)
@click.option(
    "--enc-width",
    type=click.IntRange(min=8),
    help="Hidden channels of the onboard analysis: narrow an --init model (fewer multiply-adds on board).",
)
@click.option(
    "--train-only",
    type=click.Choice(["all", "encoder", "synthesis"]),
    default="all",
    show_default=True,
    help="encoder: only the onboard analysis learns; the --init model's ground decoder stays as it is. "
    "synthesis: only the ground synthesis learns; every coded byte stays the --init model's.",
)
@click.option(
    "--last-stage",
    type=(click.IntRange(8, 512), click.IntRange(0, 8)),
    default=None,
    metavar="WIDTH BLOCKS",
    help="With --train-only synthesis: a new half-resolution synthesis stage of this width and "
    "residual blocks (a fast ground decoder).",
)
@click.option(
    "--low-levels",
    type=click.IntRange(0, 8),
    default=0,
    show_default=True,
    help="Quality levels to add below an --init model's lowest (lower rates; qualities renumber from 1).",
)
@click.option(
    "--feature-loss",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A scene classifier (fool train-classifier): its frozen backbone's features of the "
    "reconstruction join the distortion (FOOL's feature distillation).",
)
@click.option(
    "--feature-weight",
    default=0.0,
    show_default=True,
    help="Weight of the feature distortion against 255² × MSE (both scaled by the level's lambda).",
)
def train(
    data,
    out,
    exclude,
    steps,
    max_minutes,
    batch,
    crop,
    lr,
    lr_min,
    warmup,
    gray_prob,
    deep_prob,
    device,
    autocast,
    init,
    dec_blocks,
    latent,
    latent_ramp,
    enc_width,
    train_only,
    last_stage,
    low_levels,
    feature_loss,
    feature_weight,
) -> None:
    """Train or resume the variable-rate codec on folders of images/scenes."""
    from fool.train import TrainOptions
    from fool.train import train as run

    opts = TrainOptions(
        data=list(data),
        out=out,
        exclude=tuple(exclude),
        steps=steps,
        max_minutes=max_minutes,
        batch=batch,
        crop=min(crop),
        more_crops=tuple(sorted(set(crop) - {min(crop)})),
        lr=lr,
        lr_min=lr_min,
        warmup=warmup,
        gray_prob=gray_prob,
        deep_prob=deep_prob,
        device=device,
        autocast=autocast,
        init=init,
        dec_blocks=dec_blocks,
        latent=latent,
        latent_ramp=latent_ramp,
        enc_width=enc_width,
        train_only=train_only,
        last_stage=last_stage,
        low_levels=low_levels,
        feature_loss=feature_loss,
        feature_weight=feature_weight,
    )
    run(opts, log=click.echo)

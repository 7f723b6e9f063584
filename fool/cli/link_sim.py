"""`fool link-sim`: send packet files through a seeded lossy link (for tests and planning)."""

from __future__ import annotations

from pathlib import Path

import click

RATE = click.FloatRange(0.0, 1.0)


@click.command("link-sim")
@click.argument("packets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--drop", type=RATE, default=0.0, show_default=True, help="Fraction of packets lost.")
@click.option("--burst", type=click.IntRange(min=1), default=1, show_default=True, help="Packets per loss burst.")
@click.option("--flip", type=RATE, default=0.0, show_default=True, help="Fraction of packets with a bit flipped.")
@click.option("--truncate", type=RATE, default=0.0, show_default=True, help="Fraction of packets cut short.")
@click.option("--duplicate", type=RATE, default=0.0, show_default=True, help="Fraction of packets sent twice.")
@click.option("--reorder", type=RATE, default=0.0, show_default=True, help="Fraction of packets moved later.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same damage.")
def link_sim(packets, out_dir, drop, burst, flip, truncate, duplicate, reorder, seed) -> None:
    """Write damaged copies of PACKETS files (same names) and link_sim.json to the output folder."""
    from fool.linksim import LinkModel
    from fool.linksim import link_sim as simulate

    model = LinkModel(drop, burst, flip, duplicate, reorder, truncate, seed)
    log = simulate(packets, out_dir, model)
    for f in log["files"]:
        click.echo(
            f"{out_dir / f['file']}: {len(f['fates'])} packets, {f['dropped']} dropped, {f['flipped']} flipped, "
            f"{f['truncated']} truncated, {f['duplicated']} duplicated, {f['reordered']} reordered"
        )

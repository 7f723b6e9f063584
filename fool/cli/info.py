"""`fool info`: what a container holds and where its bytes go."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(src, as_json) -> None:
    """Print a container's header and tile table summary."""
    import json

    from fool.ground.inspect import describe

    d = describe(src)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    s, t, lay = d["scene"], d["tiles"], d["layout"]
    click.echo(f"{src}: FOOL container v{d['version']}, {d['bytes']} bytes")
    click.echo(f"  model     {d['model']['name']}@{d['model']['sha256'][:16]}")
    click.echo(
        f"  scene     {s['width']}x{s['height']}, {len(s['ranges'])} bands {s['dtype']} "
        f"(bits {s['bits']}), nodata {s['nodata']}, mask {s['mask']}"
    )
    click.echo(f"  groups    {s['groups']}  source bands {s['source_bands']}")
    ranges = ", ".join(f"{lo:g}..{hi:g}" for lo, hi in s["ranges"])
    click.echo(f"  ranges    {ranges}  inter-tile halo {s.get('halo', 0)} px")
    crs = s["crs"] or "none"
    if crs.startswith(("PROJCS", "GEOGCS", "PROJCRS", "GEOGCRS")):
        crs = crs.split(",")[0] + "] (WKT)"
    click.echo(f"  crs       {crs}  transform {s['transform']}")
    click.echo(
        f"  tiles     {t['coded']} coded ({t.get('intra', 0)} intra), {t['skipped']} skipped, {t['lost']} lost, "
        f"of {t['grid']} ({t['rows']}x{t['cols']} of {s['tile_size']} px), {t['masked']} with masks; "
        f"bytes min/mean/max {t['min_bytes']}/{t['mean_bytes']:.0f}/{t['max_bytes']}"
    )
    click.echo(
        f"  bytes     header {lay['header']}, tile payloads {lay['payloads']}, table {lay['table']}, "
        f"footer {lay['footer']}"
    )
    click.echo(
        f"  rate      {d['bpp']:.4f} bpp ({d['bpp_per_band']:.4f} per band), the whole file; "
        f"tile payloads alone {d['payload_bpp']:.4f} bpp"
    )

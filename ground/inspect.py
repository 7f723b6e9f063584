"""Summaries of containers for `fool info` (reads the header and the tile table, no decoding)."""

from __future__ import annotations

from pathlib import Path

from fool.shared.format import FLAG_MASK, MODE_INTRA, MODE_LOST, MODE_SKIPPED, Container

MODE_NAMES = {MODE_SKIPPED: "skipped", MODE_LOST: "lost", MODE_INTRA: "intra"}


def describe(path: Path) -> dict:
    """Header fields, the tile table, and where the file's bytes go (every byte is counted)."""
    with Container.open(path) as c:
        scene = c.scene
        coded = c.coded_tiles
        sizes = [e.length for e in coded] or [0]
        pixels = scene.width * scene.height
        payloads = sum(e.length for e in c.tiles)
        d = {
            "path": str(path),
            "version": c.version,
            "bytes": c.size,
            "model": {"name": scene.model_name, "sha256": scene.model_sha256},
            "scene": scene.to_dict(),
            "tiles": {
                "grid": len(scene.grid),
                "rows": scene.grid.rows,
                "cols": scene.grid.cols,
                "coded": len(coded),
                "skipped": sum(e.mode == MODE_SKIPPED for e in c.tiles),
                "lost": sum(e.mode == MODE_LOST for e in c.tiles),
                "intra": sum(e.mode == MODE_INTRA for e in c.tiles),
                "masked": sum(bool(e.flags & FLAG_MASK) for e in c.tiles),
                "min_bytes": min(sizes),
                "max_bytes": max(sizes),
                "mean_bytes": sum(sizes) / len(sizes),
                "table": [
                    {
                        "row": e.row,
                        "col": e.col,
                        "offset": e.offset,
                        "length": e.length,
                        "check": f"{e.check:x}",
                        "quality": e.quality / 256,
                        "mode": MODE_NAMES.get(e.mode, "codec"),
                    }
                    for e in c.tiles
                ],
            },
            "layout": {
                "header": c.payload_start,
                "payloads": payloads,
                "table": c.table_bytes,
                "footer": c.footer_bytes,
            },
            "bpp": 8 * c.size / pixels,
            "bpp_per_band": 8 * c.size / pixels / scene.count,
            "payload_bpp": 8 * payloads / pixels,
        }
    return d

"""Summaries of containers for `fool info` (reads headers and the tile table, no decoding)."""

from __future__ import annotations

from pathlib import Path

from fool.ground.decode import read_header
from fool.shared.format import FLAG_MASK, FOOTER, Container


def describe(path: Path) -> dict:
    with Container.open(path) as c:
        scene = read_header(c)
        sizes = [e.length for e in c.tiles] or [0]
        d = {
            "path": str(path),
            "version": c.version,
            "bytes": c.size,
            "model": c.header.get("model", {}),
            "quality": c.header.get("quality"),
            "runtime": c.header.get("runtime"),
            "scene": scene.to_dict(),
            "tiles": {
                "grid": len(scene.grid),
                "rows": scene.grid.rows,
                "cols": scene.grid.cols,
                "coded": len(c.tiles),
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
                        "crc32": f"{e.crc32:08x}",
                        "quality": e.quality / 256,
                    }
                    for e in c.tiles
                ],
            },
        }
        payloads = sum(e.length for e in c.tiles)
        d["layout"] = {"header": c.payload_start, "payloads": payloads, "table": c.table_bytes, "footer": FOOTER.size}
        pixels = scene.width * scene.height
        d["bpp"] = 8 * c.size / pixels
        d["bpp_per_band"] = d["bpp"] / scene.count
        # what `fool eval` counts: the bits that grow with the tiles, not the fixed scene metadata
        d["codestream_bpp"] = 8 * (payloads + c.table_bytes) / pixels
    return d

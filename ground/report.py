"""The pass report: one self-contained HTML page over a batch's output folder.

It reads ``summary.json`` (written by every batch run, resumed scenes included) and shows a
table of scenes (tiles received, missing, damaged, bytes, bpp, MP/s, status), their quicklooks
(relative links, so the folder can be copied or served as is) and a map of the footprints:
an inline SVG of lon/lat polygons, equirectangular with the x axis shrunk by cos(latitude).
No scripts, fonts, tiles or other external assets: it opens offline in any browser.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from html import escape
from pathlib import Path

from fool.shared.errors import InputError

REPORT_NAME = "report.html"
MAP_WIDTH, MAP_HEIGHT = 640, 400
STATUS_COLOUR = {"decoded": "#2e7d32", "partial": "#ef6c00", "failed": "#c62828"}
CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 20px; margin: 0 0 .3em; } h2 { font-size: 16px; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; } th, td { padding: 3px 8px; border-bottom: 1px solid #ddd; }
th { text-align: left; background: #f3f3f3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.decoded { color: #2e7d32; } .partial { color: #ef6c00; font-weight: 600; }
.failed { color: #c62828; font-weight: 600; }
.totals span { margin-right: 1.2em; } .err { color: #c62828; font-size: 12px; }
.looks { display: flex; flex-wrap: wrap; gap: 12px; } figure { margin: 0; } figcaption { font-size: 12px; }
figure img { max-width: 240px; max-height: 240px; border: 1px solid #ccc; display: block; }
svg.map { border: 1px solid #ccc; background: #f7fbff; }
"""


def load_summary(outdir: Path) -> dict:
    try:
        return json.loads((outdir / "summary.json").read_text())
    except FileNotFoundError:
        raise InputError(f"{outdir}: no summary.json; run `fool decode ... -o {outdir}` first") from None
    except ValueError as exc:
        raise InputError(f"{outdir}/summary.json is not valid JSON: {exc}") from None


def write_report(outdir: Path, dst: Path | None = None) -> Path:
    """Render the report of the batch in ``outdir`` to ``dst`` (default ``outdir/report.html``), atomically."""
    outdir = Path(outdir)
    dst = Path(dst) if dst else outdir / REPORT_NAME
    html = render(load_summary(outdir), outdir, dst.parent)
    tmp = dst.with_name(f".{dst.name}.partial")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, dst)
    return dst


def render(summary: dict, outdir: Path, page_dir: Path) -> str:
    results = summary.get("results", [])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>FOOL pass report: {escape(str(outdir.name))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>FOOL pass report: {escape(str(outdir.name))}</h1>",
        _totals(summary),
        "<h2>Scenes</h2>",
        _table(results),
        "<h2>Footprints</h2>",
        map_svg(results),
        "<h2>Quicklooks</h2>",
        _quicklooks(results, outdir, page_dir),
        "</body></html>",
    ]
    return "\n".join(parts)


def _totals(s: dict) -> str:
    items = [
        f"{s.get('scenes', 0)} scenes",
        f"{s.get('decoded', 0)} decoded",
        f"{s.get('partial', 0)} partial",
        f"{s.get('failed', 0)} failed",
        f"{s.get('tiles', 0)} tiles received",
        f"{s.get('missing_tiles', 0)} missing",
        f"{s.get('damaged_tiles', 0)} damaged",
        f"{s.get('mp_per_s', 0):.2f} MP/s",
    ]
    return '<p class="totals">' + "".join(f"<span>{escape(i)}</span>" for i in items) + "</p>"


def _table(results: list[dict]) -> str:
    head = ["Scene", "Status", "Tiles received", "Missing", "Damaged", "Bytes", "bpp", "MP/s"]
    rows = ["<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in results:
        rows.append(_row(r))
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _row(r: dict) -> str:
    status = r.get("status", "failed")
    label = status + (" (resumed)" if r.get("resumed") else "")
    error = f'<div class="err">{escape(r["error"])}</div>' if r.get("error") else ""
    head = [f"<td>{escape(r.get('stem', '?'))}{error}</td>", f'<td class="{escape(status)}">{escape(label)}</td>']
    if status == "failed":
        return "<tr>" + "".join(head) + '<td class="n">&ndash;</td>' * 6 + "</tr>"
    numbers = [
        f"{r.get('received', 0)} / {r.get('tiles', 0)}",
        str(len(r.get("missing", []))),
        str(len(r.get("damaged", []))),
        f"{r.get('bytes', 0):,}",
        f"{r.get('bpp', 0):.3f}",
        f"{r.get('mp_per_s', 0):.2f}",
    ]
    return "<tr>" + "".join(head) + "".join(f'<td class="n">{n}</td>' for n in numbers) + "</tr>"


def _quicklooks(results: list[dict], outdir: Path, page_dir: Path) -> str:
    figures = []
    for r in results:
        name = r.get("outputs", {}).get("quicklook")
        if not name or not (outdir / name).exists():
            continue
        src = Path(os.path.relpath(outdir / name, page_dir)).as_posix()
        alt = f"quicklook of {r['stem']}"
        figures.append(
            f'<figure><img src="{escape(src)}" alt="{escape(alt)}">'
            f"<figcaption>{escape(r['stem'])}</figcaption></figure>"
        )
    if not figures:
        return "<p>No quicklooks (decode with --quicklook).</p>"
    return '<div class="looks">' + "".join(figures) + "</div>"


def _rings(results: list[dict]) -> list[tuple[dict, list[list[float]]]]:
    out = []
    for r in results:
        geom = r.get("footprint")
        if geom and geom.get("type") == "Polygon" and geom.get("coordinates"):
            out.append((r, geom["coordinates"][0]))
    return out


def map_svg(results: list[dict]) -> str:
    """Inline SVG of every footprint; scenes with the same footprint share one label. Scenes
    decoded without a CRS are listed below it."""
    rings = _rings(results)
    unplaced = [r["stem"] for r in results if not r.get("footprint") and r.get("status") != "failed"]
    note = f"<p>Not georeferenced: {escape(', '.join(unplaced))}</p>" if unplaced else ""
    if not rings:
        return "<p>No footprints to draw.</p>" + note
    project = MapProjection.fit([pt for _, ring in rings for pt in ring])
    shapes = [_polygon(r, ring, project) for r, ring in rings]
    labels = [_label(names, ring, project) for names, ring in _label_groups(rings)]
    svg = (
        f'<svg class="map" xmlns="http://www.w3.org/2000/svg" width="{MAP_WIDTH}" height="{MAP_HEIGHT}"'
        f' viewBox="0 0 {MAP_WIDTH} {MAP_HEIGHT}" role="img" aria-label="scene footprints">'
        + "".join(shapes + labels)
        + _scale_note(rings)
        + "</svg>"
    )
    return svg + note


@dataclass(frozen=True)
class MapProjection:
    """lon/lat -> SVG pixels: equirectangular about the mean latitude, fitted with a margin."""

    k: float  # cos(mean latitude): x shrink
    cx: float
    cy: float
    scale: float

    @classmethod
    def fit(cls, points: list[list[float]], margin: int = 40) -> MapProjection:
        lons, lats = [p[0] for p in points], [p[1] for p in points]
        k = math.cos(math.radians(sum(lats) / len(lats)))
        x0, x1, y0, y1 = min(lons) * k, max(lons) * k, min(lats), max(lats)
        floor = max(x1 - x0, y1 - y0, 1e-9) * 1e-3  # a single point or line still gets a finite scale
        sx = (MAP_WIDTH - 2 * margin) / max(x1 - x0, floor)
        sy = (MAP_HEIGHT - 2 * margin) / max(y1 - y0, floor)
        return cls(k, (x0 + x1) / 2, (y0 + y1) / 2, min(sx, sy))

    def __call__(self, lon: float, lat: float) -> tuple[float, float]:
        return MAP_WIDTH / 2 + (lon * self.k - self.cx) * self.scale, MAP_HEIGHT / 2 - (lat - self.cy) * self.scale


def _polygon(r: dict, ring: list[list[float]], project: MapProjection) -> str:
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (project(lon, lat) for lon, lat in ring))
    colour = STATUS_COLOUR.get(r.get("status", ""), "#555")
    name = escape(r.get("stem", "?"))
    return (
        f'<polygon data-scene="{name}" points="{path}" fill="{colour}" fill-opacity="0.25"'
        f' stroke="{colour}" stroke-width="1.5"><title>{name}</title></polygon>'
    )


def _label_groups(rings: list[tuple[dict, list]]) -> list[tuple[list[str], list]]:
    groups: dict[tuple, tuple[list[str], list]] = {}
    for r, ring in rings:
        key = tuple((round(lon, 6), round(lat, 6)) for lon, lat in ring)
        groups.setdefault(key, ([], ring))[0].append(r.get("stem", "?"))
    return list(groups.values())


def _label(names: list[str], ring: list[list[float]], project: MapProjection) -> str:
    pts = [project(lon, lat) for lon, lat in ring[:-1]]
    cx, cy = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    text = escape(", ".join(names))
    return f'<text x="{cx:.1f}" y="{cy:.1f}" font-size="12" text-anchor="middle" fill="#111">{text}</text>'


def _scale_note(rings: list) -> str:
    lats = [pt[1] for _, ring in rings for pt in ring]
    lons = [pt[0] for _, ring in rings for pt in ring]
    text = f"lon {min(lons):.4f} .. {max(lons):.4f}, lat {min(lats):.4f} .. {max(lats):.4f}"
    return f'<text x="6" y="{MAP_HEIGHT - 6}" font-size="11" fill="#555">{escape(text)}</text>'

"""A STAC Item per decoded scene, so catalogues and STAC tools find the pass's products.

- id: the scene's stem; geometry and bbox: the scene's footprint in lon/lat (WGS 84), its edges
  densified before reprojection; both null for a scene without a CRS.
- datetime: the container carries no acquisition time, so the Item's ``datetime`` is the
  container file's mtime and ``fool:datetime_source`` says so; a caller that knows the
  acquisition passes ``start``/``end`` (then ``datetime`` is null, as STAC wants for a range).
- assets: ``image`` (GeoTIFF or COG), ``features`` (tiles.json), ``quicklook`` (PNG) and
  ``source`` (the .fool container), hrefs relative to the Item file where possible.
- projection extension v1.1.0: ``proj:epsg`` (null when the CRS has no EPSG code, then
  ``proj:wkt2``), ``proj:shape``, ``proj:transform``.

:func:`validate_item` checks an Item against the STAC core Item schema offline, with the
schema copies pystac ships (no network).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

PROJECTION_V1 = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
EDGE_POINTS = 16  # points per footprint edge before reprojection: a UTM square is not a lon/lat square
MEDIA = {
    "image": "image/tiff; application=geotiff",
    "cog": "image/tiff; application=geotiff; profile=cloud-optimized",
    "features": "application/json",
    "quicklook": "image/png",
    "source": "application/octet-stream",
}


def footprint(scene) -> tuple[dict | None, list[float] | None]:
    """(GeoJSON Polygon, bbox) of the scene in lon/lat; (None, None) without a CRS."""
    if not scene.crs_wkt:
        return None, None
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom

    t = Affine(*scene.transform)
    ring = [t @ xy for xy in _pixel_ring(scene.width, scene.height)]
    geom = transform_geom(CRS.from_wkt(scene.crs_wkt), "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    coords = [[round(x, 8), round(y, 8)] for x, y in geom["coordinates"][0]]
    lons, lats = [c[0] for c in coords], [c[1] for c in coords]
    return {"type": "Polygon", "coordinates": [coords]}, [min(lons), min(lats), max(lons), max(lats)]


def _pixel_ring(width: int, height: int) -> list[tuple[float, float]]:
    """The scene outline in pixel coordinates, counter-clockwise on the map, closed."""
    n = EDGE_POINTS
    left = [(0.0, height * i / n) for i in range(n)]
    bottom = [(width * i / n, float(height)) for i in range(n)]
    right = [(float(width), height * (n - i) / n) for i in range(n)]
    top = [(width * (n - i) / n, 0.0) for i in range(n)]
    ring = left + bottom + right + top
    return ring + [ring[0]]


def _projection(scene) -> dict:
    if not scene.crs_wkt:
        return {"proj:epsg": None}
    from rasterio.crs import CRS

    epsg = CRS.from_wkt(scene.crs_wkt).to_epsg()
    props = {"proj:epsg": epsg, "proj:shape": [scene.height, scene.width], "proj:transform": list(scene.transform)}
    return props if epsg else props | {"proj:wkt2": scene.crs_wkt}


def _href(target: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(target, base)).as_posix()
    except ValueError:  # another drive on Windows
        return target.resolve().as_uri()


def build_item(
    result, scene, outdir: Path, cog: bool = False, start: datetime | None = None, end: datetime | None = None
):
    """The pystac Item of one decoded scene (``result``: a batch SceneResult, ``scene``: its SceneHeader)."""
    import pystac

    geometry, bbox = footprint(scene)
    source = Path(result.source)
    props = {
        "fool:tiles": result.tiles,
        "fool:tiles_received": result.received,
        "fool:missing_tiles": len(result.missing),
        "fool:damaged_tiles": len(result.damaged),
        "fool:model": f"{scene.model_name}@{scene.model_sha256[:16]}",
        "fool:container_bytes": result.bytes,
    } | _projection(scene)
    when = None
    if not (start and end):
        when = datetime.fromtimestamp(source.stat().st_mtime, UTC)
        props["fool:datetime_source"] = "container file mtime (acquisition time unknown)"
    item = pystac.Item(
        id=result.stem,
        geometry=geometry,
        bbox=bbox,
        datetime=when,
        properties=props,
        start_datetime=start if when is None else None,
        end_datetime=end if when is None else None,
        stac_extensions=[PROJECTION_V1],
    )
    for key, asset in _assets(result, outdir, source, cog).items():
        item.add_asset(key, asset)
    return item


def _assets(result, outdir: Path, source: Path, cog: bool) -> dict:
    import pystac

    out = {}
    names = dict(result.outputs)
    if "image" in names:
        media = MEDIA["cog" if cog else "image"]
        out["image"] = pystac.Asset(f"./{names['image']}", "decoded image", media_type=media, roles=["data"])
    if "features" in names:
        href = f"./{names['features']}/tiles.json"
        out["features"] = pystac.Asset(href, "decoded latents (index)", media_type=MEDIA["features"], roles=["data"])
    if "quicklook" in names:
        href = f"./{names['quicklook']}"
        out["quicklook"] = pystac.Asset(href, "quicklook", media_type=MEDIA["quicklook"], roles=["overview"])
    href = _href(source, outdir)
    out["source"] = pystac.Asset(href, "FOOL container", media_type=MEDIA["source"], roles=["source"])
    return out


def write_item(item, dst: Path) -> Path:
    """Write the Item JSON atomically, hrefs as built (relative to the Item's folder)."""
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    tmp = dst.with_name(f".{dst.name}.partial")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, dst)
    return dst


def validate_item(data: dict) -> None:
    """Validate an Item dict against the STAC core Item schema, offline; raises jsonschema.ValidationError."""
    from jsonschema import Draft7Validator
    from pystac.validation.local_validator import get_local_schema_cache
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    cache = get_local_schema_cache()
    registry = Registry().with_resources(
        (uri, Resource.from_contents(schema, default_specification=DRAFT7)) for uri, schema in cache.items()
    )
    version = data.get("stac_version", "1.1.0")
    uri = f"https://schemas.stacspec.org/v{version}/item-spec/json-schema/item.json"
    if uri not in cache:
        raise ValueError(f"no local schema for STAC {version}")
    Draft7Validator(cache[uri], registry=registry).validate(data)

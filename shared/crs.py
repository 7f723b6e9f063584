"""The container's CRS field: an EPSG code, or WKT deflated against a fixed dictionary.

A scene whose CRS is no EPSG code (GeoTIFFs with a user-defined datum, as GDAL reads many
vendor products) carries its whole WKT, which zlib alone shrinks only to 330-380 bytes: on a
400x400 RGB scene at 0.1 bpp that is a fifth of the file. Deflating it against
:data:`WKT_DICTIONARY`, WKT1 text of common CRSs as GDAL writes it, lets zlib copy the
shared keywords, datums and parameter names instead (23 bytes on the team's misc scenes,
whose user-defined UTM datum is close to one of the entries; 70-170 for CRSs unlike any). The
dictionary is part of the container format: changing one byte of it would misread every
container written with it, so it is frozen here and pinned by a test, never generated from
the installed PROJ.
"""

from __future__ import annotations

import zlib

from fool.shared.deflate import inflate_exact

#: WKT1 of EPSG 3035, 3857, 4326, 26914 and 32633 and of a UTM zone on a user-defined WGS 84
#: datum, as GDAL 3 writes them; the most common kinds last (zlib's nearest copies are cheapest).
WKT_DICTIONARY = (
    b'PROJCS["ETRS89-extended / LAEA Europe",GEOGCS["ETRS89",DATUM["European_Terrestrial_Reference_System_1989",'
    b'SPHEROID["GRS 1980",6378137,298.257222101,AUTHORITY["EPSG","7019"]],AUTHORITY["EPSG","6258"]],'
    b'PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],'
    b'AUTHORITY["EPSG","4258"]],PROJECTION["Lambert_Azimuthal_Equal_Area"],PARAMETER["latitude_of_center",52],'
    b'PARAMETER["longitude_of_center",10],PARAMETER["false_easting",4321000],PARAMETER["false_northing",3210000],'
    b'UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Northing",NORTH],AXIS["Easting",EAST],AUTHORITY["EPSG","3035"]]'
    b'PROJCS["WGS 84 / Pseudo-Mercator",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,'
    b'AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],'
    b'UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AUTHORITY["EPSG","4326"]],'
    b'PROJECTION["Mercator_1SP"],PARAMETER["central_meridian",0],PARAMETER["scale_factor",1],'
    b'PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1,AUTHORITY["EPSG","9001"]],'
    b'AXIS["Easting",EAST],AXIS["Northing",NORTH],EXTENSION["PROJ4","+proj=merc +a=6378137 +b=6378137 +lat_ts=0 '
    b'+lon_0=0 +x_0=0 +y_0=0 +k=1 +units=m +nadgrids=@null +wktext +no_defs"],AUTHORITY["EPSG","3857"]]'
    b'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],'
    b'AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],'
    b'UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],'
    b'AUTHORITY["EPSG","4326"]]'
    b'PROJCS["NAD83 / UTM zone 14N",GEOGCS["NAD83",DATUM["North_American_Datum_1983",SPHEROID["GRS 1980",6378137,'
    b'298.257222101,AUTHORITY["EPSG","7019"]],AUTHORITY["EPSG","6269"]],PRIMEM["Greenwich",0,'
    b'AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],'
    b'AUTHORITY["EPSG","4269"]],PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],'
    b'PARAMETER["central_meridian",-99],PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",500000],'
    b'PARAMETER["false_northing",0],UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],'
    b'AXIS["Northing",NORTH],AUTHORITY["EPSG","26914"]]'
    b'PROJCS["UTM Zone 33, Southern Hemisphere",GEOGCS["Unknown datum based upon the WGS 84 ellipsoid",'
    b'DATUM["Not_specified_based_on_WGS_84_spheroid",SPHEROID["WGS 84",6378137,298.257223563,'
    b'AUTHORITY["EPSG","7030"]]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]]],'
    b'PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",15],'
    b'PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",500000],PARAMETER["false_northing",10000000],'
    b'UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    b'PROJCS["WGS 84 / UTM zone 33N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,'
    b'AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],'
    b'UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AUTHORITY["EPSG","4326"]],'
    b'PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",15],'
    b'PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",500000],PARAMETER["false_northing",0],'
    b'UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],AXIS["Northing",NORTH],'
    b'AUTHORITY["EPSG","32633"]]'
)


def deflate_wkt(wkt: str) -> bytes:
    """WKT -> raw deflate against :data:`WKT_DICTIONARY` (what the header stores)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=WKT_DICTIONARY)
    return c.compress(wkt.encode()) + c.flush()


def inflate_wkt(data: bytes, limit: int) -> str:
    """The inverse of :func:`deflate_wkt`, at most ``limit`` bytes out; ValueError on any
    corrupt, truncated, trailing or oversized input (the bytes are untrusted)."""
    out = inflate_exact(zlib.decompressobj(-15, zdict=WKT_DICTIONARY), data, limit)
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise ValueError("WKT is not UTF-8") from None

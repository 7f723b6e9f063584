"""The CRS field of the scene header: WKT deflated against a frozen dictionary."""

import hashlib
import zlib

import pytest
from fool.shared.crs import WKT_DICTIONARY, deflate_wkt, inflate_wkt
from fool.shared.errors import ContainerError
from fool.shared.header import decode_header, encode_header
from fool.shared.varint import varint

from tests.test_format import scene

#: a user-defined datum on the WGS 84 ellipsoid, as GDAL reads it from many vendor GeoTIFFs
USER_DATUM_UTM = (
    'PROJCS["UTM Zone 18, Northern Hemisphere",GEOGCS["Unknown datum based upon the WGS 84 ellipsoid",'
    'DATUM["Not_specified_based_on_WGS_84_spheroid",SPHEROID["WGS 84",6378137,298.257223563,'
    'AUTHORITY["EPSG","7030"]]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]]],'
    'PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",-75],'
    'PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",500000],PARAMETER["false_northing",0],'
    'UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
)


def test_the_dictionary_is_frozen():
    """It is part of the format: containers written against it need these exact bytes."""
    digest = hashlib.sha256(WKT_DICTIONARY).hexdigest()
    assert digest == "709da4cc182b8c2b9006f84b72d87df5cb92ffbe334e4facbe3dd9769069ac53"


def test_a_user_defined_crs_costs_a_few_dozen_bytes():
    assert len(zlib.compress(USER_DATUM_UTM.encode(), 9)) > 300  # what the header used to spend
    assert len(deflate_wkt(USER_DATUM_UTM)) < 60
    plain, georef = scene(), scene(crs=USER_DATUM_UTM)
    assert len(encode_header(georef)) - len(encode_header(plain)) < 64
    assert decode_header(encode_header(georef)).crs == USER_DATUM_UTM


#: a CRS unlike every dictionary entry (its own datum, ellipsoid and parameters)
BRITISH_GRID = (
    'PROJCS["OSGB36 / British National Grid",GEOGCS["OSGB36",DATUM["Ordnance_Survey_of_Great_Britain_1936",'
    'SPHEROID["Airy 1830",6377563.396,299.3249646,AUTHORITY["EPSG","7001"]],AUTHORITY["EPSG","6277"]],'
    'PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],'
    'AUTHORITY["EPSG","4277"]],PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",49],'
    'PARAMETER["central_meridian",-2],PARAMETER["scale_factor",0.9996012717],PARAMETER["false_easting",400000],'
    'PARAMETER["false_northing",-100000],UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],'
    'AXIS["Northing",NORTH]]'
)


def test_a_crs_unlike_the_dictionary_still_halves():
    plain = len(zlib.compress(BRITISH_GRID.encode(), 9))
    assert len(deflate_wkt(BRITISH_GRID)) < 0.5 * plain
    assert decode_header(encode_header(scene(crs=BRITISH_GRID))).crs == BRITISH_GRID


def test_a_wkt_too_long_to_read_back_is_refused_on_encoding():
    with pytest.raises(ContainerError, match="longer than"):
        encode_header(scene(crs='LOCAL_CS["' + "x" * 70_000 + '"]'))


def test_unlike_text_round_trips():
    wkt = 'LOCAL_CS["ünïcode \\" site grid",UNIT["metre",1]]' * 20
    assert inflate_wkt(deflate_wkt(wkt), 1 << 16) == wkt


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_hostile_wkt_bytes_are_refused(cut):
    data = deflate_wkt(USER_DATUM_UTM)
    for bad in (data[:-cut], data + b"\x00", bytes(b ^ 0x5A for b in data)):
        with pytest.raises(ValueError):
            inflate_wkt(bad, 1 << 16)
    with pytest.raises(ValueError):
        inflate_wkt(data, 100)  # longer than the limit
    with pytest.raises(ValueError):
        inflate_wkt(data, 0)


def test_header_with_a_corrupt_crs_is_a_container_error():
    body = bytearray(encode_header(scene(crs=USER_DATUM_UTM)))
    wkt = deflate_wkt(USER_DATUM_UTM)
    at = bytes(body).index(wkt)
    body[at : at + len(wkt)] = bytes(b ^ 0x5A for b in wkt)
    with pytest.raises(ContainerError, match="CRS is corrupt"):
        decode_header(bytes(body))


def test_plain_zlib_wkt_of_earlier_containers_still_reads():
    new = encode_header(scene(crs=USER_DATUM_UTM))
    wkt = deflate_wkt(USER_DATUM_UTM)
    old_field = bytes([2]) + varint(len(z := zlib.compress(USER_DATUM_UTM.encode(), 9))) + z
    old = new.replace(bytes([3]) + varint(len(wkt)) + wkt, old_field)
    assert old != new and decode_header(old).crs == USER_DATUM_UTM
    cut = bytes([2]) + varint(len(z) - 4) + z[:-4]  # its Adler-32 missing: refused, not shortened
    with pytest.raises(ContainerError, match="CRS is corrupt"):
        decode_header(new.replace(bytes([3]) + varint(len(wkt)) + wkt, cut))

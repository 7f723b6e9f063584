"""FOOL: onboard neural compression for Earth-observation satellites.

Importing ``fool`` stays cheap (no torch, no rasterio); the public helpers import what they need.
"""

from __future__ import annotations


def open_features(path):
    """Open a ``<stem>.features`` folder written by ``fool decode --output features``.

    ``for tile in fool.open_features(path): tile.row, tile.col, tile.window, tile.bounds, tile.crs, tile.array``
    (see :mod:`fool.ground.features`).
    """
    from fool.ground.features import open_features as _open

    return _open(path)

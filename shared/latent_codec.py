"""Latents <-> bytes for one tile and band group, in numpy only (shared by both sides).

Everything that decides a symbol or a CDF index lives here and uses only exact arithmetic
on the shipped tables, so the ground reproduces the encoder's decisions bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared import intnet
from shared.entropy import CdfTable, scale_indexes
from shared.errors import ContainerError, ModelError

#: Quality is carried as a uint16 code in 1/256 steps, so both sides interpolate gains from
#: the same exactly representable number.
QUALITY_STEP = 256


def quality_code(quality: float, levels: int) -> int:
    if not 1.0 <= quality <= levels:
        raise ValueError(f"quality must be between 1 and {levels}, got {quality}")
    return int(round(quality * QUALITY_STEP))


@dataclass
class LatentCodec:
    """The numpy half of a released model: entropy tables, gains, integer hyper-synthesis."""

    name: str
    weights_sha256: str
    config: dict
    z_table: CdfTable
    z_medians: np.ndarray  # (nz,) float32
    y_table: CdfTable
    scale_table: np.ndarray  # float64
    gains: np.ndarray  # (L, M) float64
    inv_gains: np.ndarray  # (L, M) float64
    hyper: list[intnet.IntConv]
    context: intnet.IntConv | None = None  # checkerboard context, reduced by intnet.cross_taps

    @property
    def levels(self) -> int:
        return self.gains.shape[0]

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.weights_sha256[:16]}"

    @classmethod
    def load(cls, path: Path) -> LatentCodec:
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read model tables {path}: {exc}") from exc
        meta = json.loads(bytes(a["meta"]).decode())
        return cls(
            name=meta["name"],
            weights_sha256=meta["weights_sha256"],
            config=meta["config"],
            z_table=CdfTable(a["z_cdf"], a["z_len"], a["z_off"]),
            z_medians=a["z_medians"].astype(np.float32),
            y_table=CdfTable(a["y_cdf"], a["y_len"], a["y_off"]),
            scale_table=a["scale_table"].astype(np.float64),
            gains=a["gains"].astype(np.float64),
            inv_gains=a["inv_gains"].astype(np.float64),
            hyper=intnet.unpack(a),
            context=next((intnet.cross_taps(c) for c in intnet.unpack(a, "ctx")), None),
        )

    def gain_vectors(self, code: int) -> tuple[np.ndarray, np.ndarray]:
        """Gain and inverse gain for a quality code: linear interpolation, exact in IEEE."""
        q = min(max(code / QUALITY_STEP, 1.0), float(self.levels)) - 1.0
        lo = min(int(np.floor(q)), self.levels - 2)
        t = q - lo
        gain = (1.0 - t) * self.gains[lo] + t * self.gains[lo + 1]
        inv = (1.0 - t) * self.inv_gains[lo] + t * self.inv_gains[lo + 1]
        return gain[:, None, None], inv[:, None, None]

    def _z_indexes(self, shape: tuple[int, int]) -> np.ndarray:
        nz = self.z_medians.shape[0]
        return np.broadcast_to(np.arange(nz, dtype=np.int32)[:, None, None], (nz, *shape))

    def _y_params(self, z_hat: np.ndarray, code: int):
        """Hyperprior scales and means of y in the gained domain, their CDF indexes, the gains."""
        scales, means = intnet.hyper_params(z_hat[None], self.hyper)
        shift, m = self.hyper[-1].shift, scales.shape[1]
        scales, means = intnet.snap(scales, shift[:m]), intnet.snap(means, shift[m:])
        gain, inv = self.gain_vectors(code)
        scales_g = scales[0] * gain
        return scales_g, scale_indexes(scales_g, self.scale_table), means[0] * gain, gain, inv

    def _z_hat(self, z_sym: np.ndarray) -> np.ndarray:
        """Dequantised hyper-latent: one float32 add, identical on every IEEE machine."""
        return (z_sym.astype(np.float32) + self.z_medians[:, None, None]).astype(np.float32)

    def _context(self, anchors: np.ndarray, scales_g: np.ndarray, means_g: np.ndarray):
        """Entropy parameters of the second checkerboard half, given the decoded first half."""
        rest = ~intnet.anchor_mask(*anchors.shape[1:])
        d_scales, d_means = intnet.context_params(anchors, self.context, rest)
        scales_g, means_g = scales_g.copy(), means_g.copy()
        scales_g[:, rest] = np.abs(scales_g[:, rest] + d_scales)
        means_g[:, rest] = means_g[:, rest] + d_means
        return rest, scale_indexes(scales_g[:, rest], self.scale_table), means_g

    def quantise(
        self, y: np.ndarray, z: np.ndarray, code: int, coded: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Analysis outputs -> integer symbols (z_sym, y_sym) and the y CDF indexes.

        ``coded`` (h, w) marks the latents that are sent (:func:`shared.geometry.coded_latents`);
        the others get symbol 0, i.e. their predicted mean, on both sides.
        """
        z_sym = np.rint(z.astype(np.float32) - self.z_medians[:, None, None]).astype(np.int32)
        scales_g, indexes, means_g, gain, _ = self._y_params(self._z_hat(z_sym), code)
        y_g = y.astype(np.float64) * gain
        y_sym = np.rint(y_g - means_g).astype(np.int32)
        if coded is not None:
            y_sym[:, ~coded] = 0
        if self.context is not None:
            anchors = np.where(intnet.anchor_mask(*y.shape[1:]), y_sym + means_g, 0.0)
            rest, rest_indexes, means_g = self._context(anchors, scales_g, means_g)
            y_sym[:, rest] = np.rint(y_g[:, rest] - means_g[:, rest]).astype(np.int32)
            if coded is not None:
                y_sym[:, ~coded] = 0
            indexes = indexes.copy()
            indexes[:, rest] = rest_indexes
        return z_sym, y_sym, indexes

    def encode(self, y: np.ndarray, z: np.ndarray, code: int, coded: np.ndarray | None = None) -> bytes:
        """y (M, h, w) and z (nz, h/4, w/4) from the analysis -> one tile-group payload.

        Layout: u32 length of the hyper-latent stream, that stream, then the y stream of the
        ``coded`` latents (all when None, as in version-1 containers); with a context model the
        y stream is split in two (u32 length of the anchor stream, anchors, the rest), because
        the rest can only be indexed once the anchors are decoded.
        """
        z_sym, y_sym, indexes = self.quantise(y, z, code, coded)
        z_bytes = self.z_table.encode(z_sym, self._z_indexes(z.shape[1:]))
        sent = np.ones(y.shape[1:], bool) if coded is None else coded
        if self.context is None:
            y_bytes = self.y_table.encode(y_sym[:, sent], indexes[:, sent])
        else:
            first = intnet.anchor_mask(*y.shape[1:])
            a_bytes = self.y_table.encode(y_sym[:, first & sent], indexes[:, first & sent])
            rest = ~first & sent
            y_bytes = struct.pack("<I", len(a_bytes)) + a_bytes + self.y_table.encode(y_sym[:, rest], indexes[:, rest])
        return struct.pack("<I", len(z_bytes)) + z_bytes + y_bytes

    def decode_symbols(self, payload: bytes, latent_shape: tuple[int, int], code: int, coded: np.ndarray | None = None):
        """Payload -> (y symbols, means * gain, inverse gain): the bit-exact part of decoding."""
        z_len, pos = _length(payload, 0, "hyper-latent")
        h, w = latent_shape
        if h % 4 or w % 4 or h <= 0 or w <= 0:
            raise ContainerError(f"latent shape {latent_shape} is not a multiple of 4")
        sent = np.ones((h, w), bool) if coded is None else coded
        if sent.shape != (h, w):
            raise ContainerError(f"coded-latent mask {sent.shape} does not match the latent shape {latent_shape}")
        z_sym = self.z_table.decode(payload[pos : pos + z_len], self._z_indexes((h // 4, w // 4)))
        scales_g, indexes, means_g, _, inv = self._y_params(self._z_hat(z_sym), code)
        pos += z_len
        y_sym = np.zeros(indexes.shape, dtype=np.int32)
        if self.context is None:
            y_sym[:, sent] = self.y_table.decode(payload[pos:], indexes[:, sent])
            return y_sym, means_g, inv
        a_len, pos = _length(payload, pos, "anchor")
        first = intnet.anchor_mask(h, w)
        y_sym[:, first & sent] = self.y_table.decode(payload[pos : pos + a_len], indexes[:, first & sent])
        anchors = np.where(first, y_sym + means_g, 0.0)
        rest, rest_indexes, means_g = self._context(anchors, scales_g, means_g)
        y_sym[:, rest & sent] = self.y_table.decode(payload[pos + a_len :], rest_indexes[:, sent[rest]])
        return y_sym, means_g, inv

    def decode(
        self, payload: bytes, latent_shape: tuple[int, int], code: int, coded: np.ndarray | None = None
    ) -> np.ndarray:
        """Payload -> y_hat (M, h, w) float32 ready for the synthesis."""
        y_sym, means_g, inv = self.decode_symbols(payload, latent_shape, code, coded)
        return ((y_sym + means_g) * inv).astype(np.float32)


def _length(payload: bytes, pos: int, what: str) -> tuple[int, int]:
    """A u32 stream length at ``pos``, checked against what the payload holds."""
    if len(payload) < pos + 4:
        raise ContainerError("tile payload is truncated")
    (n,) = struct.unpack_from("<I", payload, pos)
    if n > len(payload) - pos - 4:
        raise ContainerError(f"tile payload declares more {what} bytes than it holds")
    return n, pos + 4


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

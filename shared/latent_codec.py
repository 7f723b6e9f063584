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
        scales, means = intnet.hyper_params(z_hat[None], self.hyper)
        shift, m = self.hyper[-1].shift, scales.shape[1]
        scales, means = intnet.snap(scales, shift[:m]), intnet.snap(means, shift[m:])
        gain, inv = self.gain_vectors(code)
        indexes = scale_indexes(scales[0] * gain, self.scale_table)
        return indexes, means[0] * gain, gain, inv

    def _z_hat(self, z_sym: np.ndarray) -> np.ndarray:
        """Dequantised hyper-latent: one float32 add, identical on every IEEE machine."""
        return (z_sym.astype(np.float32) + self.z_medians[:, None, None]).astype(np.float32)

    def quantise(self, y: np.ndarray, z: np.ndarray, code: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Analysis outputs -> integer symbols (z_sym, y_sym) and the y CDF indexes."""
        z_sym = np.rint(z.astype(np.float32) - self.z_medians[:, None, None]).astype(np.int32)
        indexes, means_g, gain, _ = self._y_params(self._z_hat(z_sym), code)
        y_sym = np.rint(y.astype(np.float64) * gain - means_g).astype(np.int32)
        return z_sym, y_sym, indexes

    def encode(self, y: np.ndarray, z: np.ndarray, code: int) -> bytes:
        """y (M, h, w) and z (nz, h/4, w/4) from the analysis -> one tile-group payload."""
        z_sym, y_sym, indexes = self.quantise(y, z, code)
        z_bytes = self.z_table.encode(z_sym, self._z_indexes(z.shape[1:]))
        y_bytes = self.y_table.encode(y_sym, indexes)
        return struct.pack("<I", len(z_bytes)) + z_bytes + y_bytes

    def decode_symbols(self, payload: bytes, latent_shape: tuple[int, int], code: int):
        """Payload -> (y symbols, means * gain, inverse gain): the bit-exact part of decoding."""
        if len(payload) < 4:
            raise ContainerError("tile payload is truncated")
        (z_len,) = struct.unpack_from("<I", payload)
        if z_len > len(payload) - 4:
            raise ContainerError("tile payload declares more hyper-latent bytes than it holds")
        h, w = latent_shape
        if h % 4 or w % 4 or h <= 0 or w <= 0:
            raise ContainerError(f"latent shape {latent_shape} is not a multiple of 4")
        z_sym = self.z_table.decode(payload[4 : 4 + z_len], self._z_indexes((h // 4, w // 4)))
        indexes, means_g, _, inv = self._y_params(self._z_hat(z_sym), code)
        return self.y_table.decode(payload[4 + z_len :], indexes), means_g, inv

    def decode(self, payload: bytes, latent_shape: tuple[int, int], code: int) -> np.ndarray:
        """Payload -> y_hat (M, h, w) float32 ready for the synthesis."""
        y_sym, means_g, inv = self.decode_symbols(payload, latent_shape, code)
        return ((y_sym + means_g) * inv).astype(np.float32)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

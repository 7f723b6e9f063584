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
from fool.shared import intnet
from fool.shared.entropy import CdfTable, StreamDecoder, encode_stream, scale_indexes
from fool.shared.errors import ContainerError, ModelError

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

    def _chunks(self, y: np.ndarray, z: np.ndarray, code: int, coded: np.ndarray | None):
        """-> the (table, symbols, indexes) runs of one band group, in the order they are decoded:
        the hyper-latent, then the sent latents (with a context model: anchors, then the rest,
        which can only be indexed once the anchors are decoded)."""
        z_sym, y_sym, indexes = self.quantise(y, z, code, coded)
        chunks = [(self.z_table, z_sym, self._z_indexes(z.shape[1:]))]
        sent = np.ones(y.shape[1:], bool) if coded is None else coded
        if self.context is None:
            return chunks + [(self.y_table, y_sym[:, sent], indexes[:, sent])]
        first = intnet.anchor_mask(*y.shape[1:])
        rest = ~first & sent
        return chunks + [
            (self.y_table, y_sym[:, first & sent], indexes[:, first & sent]),
            (self.y_table, y_sym[:, rest], indexes[:, rest]),
        ]

    def encode(self, y: np.ndarray, z: np.ndarray, code: int, coded: np.ndarray | None = None) -> bytes:
        """y (M, h, w) and z (nz, h/4, w/4) from the analysis -> one group payload of container
        versions 1 and 2: one rANS stream per run of :meth:`_chunks`, each but the last preceded
        by its u32 length. Version 3 codes a whole tile as one stream (:meth:`encode_tile`)."""
        streams = [table.encode(symbols, indexes) for table, symbols, indexes in self._chunks(y, z, code, coded)]
        return b"".join(struct.pack("<I", len(b)) + b for b in streams[:-1]) + streams[-1]

    def encode_tile(
        self, latents: list[tuple[np.ndarray, np.ndarray]], code: int, coded: np.ndarray | None = None
    ) -> bytes:
        """Every band group's (y, z) of one tile -> one rANS stream (container version 3)."""
        return encode_stream([c for y, z in latents for c in self._chunks(y, z, code, coded)])

    def _sent(self, latent_shape: tuple[int, int], coded: np.ndarray | None) -> np.ndarray:
        h, w = latent_shape
        if h % 4 or w % 4 or h <= 0 or w <= 0:
            raise ContainerError(f"latent shape {latent_shape} is not a multiple of 4")
        sent = np.ones((h, w), bool) if coded is None else coded
        if sent.shape != (h, w):
            raise ContainerError(f"coded-latent mask {sent.shape} does not match the latent shape {latent_shape}")
        return sent

    def _decode_group(self, read, latent_shape: tuple[int, int], code: int, sent: np.ndarray):
        """Symbols of one band group, read run by run as :meth:`_chunks` wrote them."""
        h, w = latent_shape
        z_sym = read(self.z_table, self._z_indexes((h // 4, w // 4)))
        scales_g, indexes, means_g, _, inv = self._y_params(self._z_hat(z_sym), code)
        y_sym = np.zeros(indexes.shape, dtype=np.int32)
        if self.context is None:
            y_sym[:, sent] = read(self.y_table, indexes[:, sent])
            return y_sym, means_g, inv
        first = intnet.anchor_mask(h, w)
        y_sym[:, first & sent] = read(self.y_table, indexes[:, first & sent])
        anchors = np.where(first, y_sym + means_g, 0.0)
        rest, rest_indexes, means_g = self._context(anchors, scales_g, means_g)
        y_sym[:, rest & sent] = read(self.y_table, rest_indexes[:, sent[rest]])
        return y_sym, means_g, inv

    def decode_symbols(self, payload: bytes, latent_shape: tuple[int, int], code: int, coded: np.ndarray | None = None):
        """Group payload (versions 1-2) -> (y symbols, means * gain, inverse gain): the bit-exact part."""
        sent = self._sent(latent_shape, coded)
        runs = 2 if self.context is None else 3
        pos, done = 0, 0

        def read(table: CdfTable, indexes: np.ndarray) -> np.ndarray:
            nonlocal pos, done
            done += 1
            if done == runs:  # the last run takes the rest of the payload
                return table.decode(payload[pos:], indexes)
            n, pos = _length(payload, pos, "hyper-latent" if done == 1 else "anchor")
            pos += n
            return table.decode(payload[pos - n : pos], indexes)

        return self._decode_group(read, latent_shape, code, sent)

    def decode_tile_symbols(
        self, stream: bytes, groups: int, latent_shape: tuple[int, int], code: int, coded: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """One tile's stream (version 3) -> per group (y symbols, means * gain, inverse gain)."""
        sent = self._sent(latent_shape, coded)
        h, w = latent_shape
        per_group = self.z_medians.shape[0] * (h // 4) * (w // 4) + int(self.gains.shape[1]) * int(sent.sum())
        reader = StreamDecoder(stream, groups * per_group)
        return [self._decode_group(reader.decode, latent_shape, code, sent) for _ in range(groups)]

    def decode(
        self, payload: bytes, latent_shape: tuple[int, int], code: int, coded: np.ndarray | None = None
    ) -> np.ndarray:
        """Group payload (versions 1-2) -> y_hat (M, h, w) float32 ready for the synthesis."""
        return dequantise(*self.decode_symbols(payload, latent_shape, code, coded))

    def decode_tile(
        self, stream: bytes, groups: int, latent_shape: tuple[int, int], code: int, coded: np.ndarray | None = None
    ) -> list[np.ndarray]:
        """One tile's stream (version 3) -> y_hat (M, h, w) float32 per band group."""
        return [dequantise(*s) for s in self.decode_tile_symbols(stream, groups, latent_shape, code, coded)]


def dequantise(y_sym: np.ndarray, means_g: np.ndarray, inv: np.ndarray) -> np.ndarray:
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

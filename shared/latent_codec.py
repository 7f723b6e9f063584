"""Latents <-> bytes for one tile (one rANS stream, all band groups), in numpy only (shared by both sides).

Everything that decides a symbol or a CDF index lives here and uses only exact arithmetic
on the shipped tables, so the ground reproduces the encoder's decisions bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
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
    #: hyper-latents whose integer-network output is kept (rate control codes each tile many times)
    memo_size: int = 0
    _hyper_memo: dict = field(default_factory=dict, repr=False)

    @property
    def levels(self) -> int:
        return self.gains.shape[0]

    @property
    def lambdas(self) -> tuple[float, ...]:
        """The training λ of each level (empty for tables that do not list them)."""
        return tuple(float(v) for v in self.config.get("lambdas", ()))

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.weights_sha256[:16]}"

    @classmethod
    def load(cls, path: Path) -> LatentCodec:
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read model tables {path}: {exc}") from exc
        return cls.from_arrays(a, str(path))

    @classmethod
    def from_arrays(cls, a, source: str = "model tables") -> LatentCodec:
        """Tables as :func:`shared.nn.release.table_arrays` writes them (an ``.npz`` or a dict).

        Tables with a checkerboard context (``ctx`` layers, ``config.context`` true) are refused:
        their payloads interleave a second run of latents that this decoder does not read. An
        empty ``ctx`` entry or ``context: false``, as in the shipped tables, is ignored.
        """
        meta = json.loads(bytes(a["meta"]).decode())
        if meta["config"].get("context") or ("ctx_count" in a and int(a["ctx_count"]) > 0):
            raise ModelError(f"{source} has a checkerboard context, which FOOL no longer codes; release it without")
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
        """Gain and inverse gain for a quality code.

        The gain is interpolated linearly between adjacent levels (exact in IEEE arithmetic, so
        both sides derive the same quantisation and CDF indexes). The inverse gain is the one
        that keeps the product gain x inverse gain on the line between the levels' products:
        interpolating the inverse gains themselves inflated the latents by 2-4 % between levels,
        and quality 5.5 decoded 0.2 dB below quality 5 with 10 % more bytes. The inverse gain
        only scales the decoded latents for the synthesis; it never reaches the entropy coder.
        """
        q = min(max(code / QUALITY_STEP, 1.0), float(self.levels)) - 1.0
        lo = min(int(np.floor(q)), self.levels - 2)
        t = q - lo
        gain = (1.0 - t) * self.gains[lo] + t * self.gains[lo + 1]
        if t == 0.0 or t == 1.0:
            inv = self.inv_gains[lo + int(t)]
        else:
            product = (1.0 - t) * self.gains[lo] * self.inv_gains[lo] + t * self.gains[lo + 1] * self.inv_gains[lo + 1]
            inv = product / gain
        return gain[:, None, None], inv[:, None, None]

    def _z_indexes(self, shape: tuple[int, int]) -> np.ndarray:
        nz = self.z_medians.shape[0]
        return np.broadcast_to(np.arange(nz, dtype=np.int32)[:, None, None], (nz, *shape))

    def hyper_params(self, z_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hyperprior scales and means of y before the gains: the integer network, the costly
        and quality-independent part, so rate control computes it once per tile."""
        return self.hyper_params_many([z_hat])[0]

    #: most latent positions (y) one integer-network call works on: 16 hyper-latents of a 128-px
    #: tile. Larger calls were slower per latent on the 8-bit kernel (its im2col buffers outgrow
    #: the caches: 0.65 against 0.47 ms a 2x2 hyper-latent at 4096) and no faster on BLAS
    #: (bench/hyper_batch.py)
    HYPER_BATCH = 1024

    def hyper_params_many(self, z_hats: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`hyper_params` of many hyper-latents (band groups, tiles), computed in batches
        of equal shape: one BLAS call per layer for many small latents instead of one each.
        The integer network's values do not depend on the batch (see :mod:`shared.intnet`)."""
        out: list = [None] * len(z_hats)
        todo: dict[tuple, list[int]] = {}
        # the memo (rate control only) is keyed on the bytes; the streaming path skips the copies
        keys = [z.tobytes() for z in z_hats] if self.memo_size else [b""] * len(z_hats)
        for i, z in enumerate(z_hats):
            hit = self._hyper_memo.get(keys[i]) if self.memo_size else None
            if hit is not None:
                out[i] = hit
            else:
                todo.setdefault((z.shape, z.dtype.str), []).append(i)
        shift = self.hyper[-1].shift
        for (shape, _), idx in todo.items():
            step = max(1, self.HYPER_BATCH // max(1, 16 * shape[-1] * shape[-2]))
            for s in range(0, len(idx), step):
                part = idx[s : s + step]
                scales, means = intnet.hyper_params(np.stack([z_hats[i] for i in part]), self.hyper)
                m = scales.shape[1]
                scales, means = intnet.snap(scales, shift[:m]), intnet.snap(means, shift[m:])
                for j, i in enumerate(part):
                    out[i] = scales[j : j + 1], means[j : j + 1]
        if self.memo_size:
            for i in (i for idx in todo.values() for i in idx):
                if keys[i] in self._hyper_memo:
                    continue
                if len(self._hyper_memo) >= self.memo_size:
                    self._hyper_memo.pop(next(iter(self._hyper_memo)))
                self._hyper_memo[keys[i]] = out[i]
        return out

    def _y_params(self, z_hat: np.ndarray, code: int, params=None):
        """Hyperprior scales and means of y in the gained domain, their CDF indexes, the gains."""
        scales, means = self.hyper_params(z_hat) if params is None else params
        gain, inv = self.gain_vectors(code)
        scales_g = scales[0] * gain
        return scales_g, scale_indexes(scales_g, self.scale_table), means[0] * gain, gain, inv

    def _z_hat(self, z_sym: np.ndarray) -> np.ndarray:
        """Dequantised hyper-latent: one float32 add, identical on every IEEE machine."""
        return (z_sym.astype(np.float32) + self.z_medians[:, None, None]).astype(np.float32)

    def _z_sym(self, z: np.ndarray) -> np.ndarray:
        return np.rint(z.astype(np.float32) - self.z_medians[:, None, None]).astype(np.int32)

    def quantise(
        self, y: np.ndarray, z: np.ndarray, code: int, coded: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Analysis outputs -> integer symbols (z_sym, y_sym) and the y CDF indexes.

        ``coded`` (h, w) marks the latents that are sent (:func:`shared.geometry.coded_latents`);
        the others get symbol 0, i.e. their predicted mean, on both sides.
        """
        return self._quantise(y, self._z_sym(z), code, coded)

    def _quantise(self, y: np.ndarray, z_sym: np.ndarray, code: int, coded: np.ndarray | None, params=None):
        _, indexes, means_g, gain, _ = self._y_params(self._z_hat(z_sym), code, params)
        y_g = y.astype(np.float64) * gain
        y_sym = np.rint(y_g - means_g).astype(np.int32)
        if coded is not None:
            y_sym[:, ~coded] = 0
        return z_sym, y_sym, indexes

    def _chunks(self, y: np.ndarray, z: np.ndarray, code: int, coded: np.ndarray | None, z_sym=None, params=None):
        """-> the (table, symbols, indexes) runs of one band group, in the order they are decoded:
        the hyper-latent, then the sent latents (whose indexes need the decoded hyper-latent)."""
        z_sym, y_sym, indexes = self._quantise(y, self._z_sym(z) if z_sym is None else z_sym, code, coded, params)
        sent = np.ones(y.shape[1:], bool) if coded is None else coded
        return [
            (self.z_table, z_sym, self._z_indexes((z.shape[1], z.shape[2]))),
            (self.y_table, y_sym[:, sent], indexes[:, sent]),
        ]

    def encode_tile(
        self, latents: list[tuple[np.ndarray, np.ndarray]], code: int, coded: np.ndarray | None = None
    ) -> bytes:
        """Every band group's (y, z) of one tile -> the tile's one rANS stream, run after run."""
        return self.encode_tiles([(latents, code, coded)])[0]

    def encode_tiles(
        self, tiles: list[tuple[list[tuple[np.ndarray, np.ndarray]], int, np.ndarray | None]]
    ) -> list[bytes]:
        """Many tiles' :meth:`encode_tile` (latents, code, coded) at once -> their streams, each
        the bytes encode_tile writes."""
        return [encode_stream(chunks) for chunks in self.tile_chunks(tiles)]

    def tile_chunks(
        self, tiles: list[tuple[list[tuple[np.ndarray, np.ndarray]], int, np.ndarray | None]]
    ) -> list[list[tuple[CdfTable, np.ndarray, np.ndarray]]]:
        """Every tile's (table, symbols, indexes) runs, ready for :func:`encode_stream`: the
        quantisation and the integer hyper-synthesis of all their band groups, which runs in
        batches (:meth:`hyper_params_many`). Kept apart from the rANS coder so that the
        onboard encoder can run it beside the analysis, on another core."""
        z_syms = [[self._z_sym(z) for _, z in latents] for latents, _, _ in tiles]
        params = iter(self.hyper_params_many([self._z_hat(s) for zs in z_syms for s in zs]))
        return [
            [
                c
                for (y, z), z_sym in zip(latents, zs, strict=True)
                for c in self._chunks(y, z, code, coded, z_sym, next(params))
            ]
            for (latents, code, coded), zs in zip(tiles, z_syms, strict=True)
        ]

    def _sent(self, latent_shape: tuple[int, int], coded: np.ndarray | None) -> np.ndarray:
        h, w = latent_shape
        if h % 4 or w % 4 or h <= 0 or w <= 0:
            raise ContainerError(f"latent shape {latent_shape} is not a multiple of 4")
        sent = np.ones((h, w), bool) if coded is None else coded
        if sent.shape != (h, w):
            raise ContainerError(f"coded-latent mask {sent.shape} does not match the latent shape {latent_shape}")
        return sent

    def _tile_reader(self, stream: bytes, groups: int, latent_shape: tuple[int, int], coded: np.ndarray | None):
        """-> (the stream's reader, bounded by the symbols its latents can hold; the sent latents)."""
        sent = self._sent(latent_shape, coded)
        h, w = latent_shape
        per_group = self.z_medians.shape[0] * (h // 4) * (w // 4) + int(self.gains.shape[1]) * int(sent.sum())
        return StreamDecoder(stream, groups * per_group), sent

    def _read_z_hat(self, read, latent_shape: tuple[int, int]) -> np.ndarray:
        """A band group's first run: its hyper-latent."""
        h, w = latent_shape
        return self._z_hat(read(self.z_table, self._z_indexes((h // 4, w // 4))))

    def _read_y(self, read, z_hat: np.ndarray, code: int, sent: np.ndarray, params=None):
        """A band group's second run, whose CDF indexes need the hyper-latent's output ``params``."""
        _, indexes, means_g, _, inv = self._y_params(z_hat, code, params)
        y_sym = np.zeros(indexes.shape, dtype=np.int32)
        y_sym[:, sent] = read(self.y_table, indexes[:, sent])
        return y_sym, means_g, inv

    def decode_tile_symbols(
        self, stream: bytes, groups: int, latent_shape: tuple[int, int], code: int, coded: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """One tile's stream -> per group (y symbols, means * gain, inverse gain): the bit-exact
        part, read run by run as :meth:`_chunks` wrote them."""
        reader, sent = self._tile_reader(stream, groups, latent_shape, coded)
        read = reader.decode
        return [self._read_y(read, self._read_z_hat(read, latent_shape), code, sent) for _ in range(groups)]

    def decode_tiles_symbols(
        self, tiles: list[tuple[bytes, int, tuple[int, int], int, np.ndarray | None]]
    ) -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]] | ContainerError]:
        """:meth:`decode_tile_symbols` of many tiles (stream, groups, latent shape, code, coded),
        band group by band group across them, so that the integer hyper-synthesis runs in
        batches (:meth:`hyper_params_many`): a tile's stream holds its groups one after the
        other, and a group's latents need its hyper-latent's output first. The values are
        those of one tile at a time. A tile whose stream is bad gets its ContainerError in
        its place; the others decode."""
        out: list = [[] for _ in tiles]
        readers: list = [None] * len(tiles)
        for i, (stream, groups, shape, _, coded) in enumerate(tiles):
            try:
                readers[i] = self._tile_reader(stream, groups, shape, coded)
            except ContainerError as exc:
                out[i] = exc
        for g in range(max((t[1] for t in tiles), default=0)):
            z_hats = {}
            for i, (_, groups, shape, _, _) in enumerate(tiles):
                if g < groups and not isinstance(out[i], ContainerError):
                    try:
                        z_hats[i] = self._read_z_hat(readers[i][0].decode, shape)
                    except ContainerError as exc:
                        out[i] = exc
            for i, params in zip(z_hats, self.hyper_params_many(list(z_hats.values())), strict=True):
                reader, sent = readers[i]
                try:
                    out[i].append(self._read_y(reader.decode, z_hats[i], tiles[i][3], sent, params))
                except ContainerError as exc:
                    out[i] = exc
        return out

    def decode_tile(
        self, stream: bytes, groups: int, latent_shape: tuple[int, int], code: int, coded: np.ndarray | None = None
    ) -> list[np.ndarray]:
        """One tile's stream -> y_hat (M, h, w) float32 per band group, ready for the synthesis."""
        return [dequantise(*s) for s in self.decode_tile_symbols(stream, groups, latent_shape, code, coded)]


def fill_unsent(y_hat: np.ndarray, coded: np.ndarray | None) -> np.ndarray:
    """Latents that were not sent take the mean of their sent (or already filled) 4-neighbours,
    spreading outwards: in effect edge padding in latent space.

    They carry no pixel of their own, but the synthesis reads them for the valid pixels next
    to them. Their predicted means cost quality there (Sentinel-2 B11 at quality 8: -0.23 dB
    over the scene); continuing the last sent latents costs 0.06 dB.
    """
    if coded is None or coded.all() or not coded.any():
        return y_hat
    y, filled = y_hat.copy(), coded.copy()
    while not filled.all():
        f = np.pad(filled, 1)
        v = np.pad(np.where(filled, y, 0.0), ((0, 0), (1, 1), (1, 1)))
        count = f[:-2, 1:-1].astype(np.int32) + f[2:, 1:-1] + f[1:-1, :-2] + f[1:-1, 2:]
        total = v[:, :-2, 1:-1] + v[:, 2:, 1:-1] + v[:, 1:-1, :-2] + v[:, 1:-1, 2:]
        new = ~filled & (count > 0)
        y[:, new] = total[:, new] / count[new]
        filled |= new
    return y


def dequantise(y_sym: np.ndarray, means_g: np.ndarray, inv: np.ndarray) -> np.ndarray:
    return ((y_sym + means_g) * inv).astype(np.float32)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

"""Per-tile mode decision on board: the learned codec or a classical intra payload.

Three ways to use the classical modes of :mod:`fool.shared.intra`:

* ``modes="auto"``: each tile is coded by the learned codec and by JPEG 2000 at PSNR targets
  searched from the learned tile's PSNR (:data:`AUTO_STEP`), and the payload of lowest Lagrangian cost
  ``J = λ_q · 255² · MSE + 8 · bytes / pixels`` is kept. MSE is on the codec's unit range
  (per band group, summed over groups) and λ_q is the training λ of the tile's quality (the
  model's levels, interpolated geometrically for fractional qualities), so both candidates are
  judged on the trade-off the learned codec was trained for. The learned distortion needs the
  tile's reconstruction, so ``auto`` runs the synthesis on board (the shared network, without
  neighbours' latents for a halo container: an estimate there).
  JPEG 2000 here, and in the upper range below, uses the wavelet ``wavelet`` names: 9/7 by
  default (about 17 % fewer bytes than 5/3 on 128-px tiles; float inverse DWT, so the ground
  decodes it exactly only up to +-1 grey level across OpenJPEG builds and CPUs, like the learned
  synthesis), or the reversible 5/3 for an integer-exact reconstruction (shared.intra).
  Scenes of several band groups try two JPEG 2000 layouts at the learned tile's PSNR, one
  codestream per group and one of every band (shared.intra ``LAYOUTS``), and search the
  target in the cheaper: the joint codestream halves a Landsat composite tile's bytes, one per
  group with the colour transform saves 20 % on NAIP.
* quality above the model's top level L (``-q L+1`` .. ``L+4``; 9 .. 12 for an 8-level model):
  every tile is JPEG 2000 at a fixed PSNR target (:func:`upper_target`), the range the learned
  codec cannot reach (it stops at about 35.5 dB on UC Merced), in the layout of lower rate at
  equal quality (:meth:`ModeChooser.fixed`).
* ``max_error=N``: every tile is JPEG-LS with ``NEAR = N``: no sample decodes more than N raw
  units from its source (JPEG-LS decodes integer-exactly, so the bound holds on every machine).
  The encoder decodes each payload and checks it.

Tiles with a validity mask (nodata) have their invalid pixels filled with the band's valid
mean before classical coding (the decoder writes nodata over them), and every mode judges
them on their valid pixels alone. A valid sample that decodes to the nodata value would be
dropped by readers: the ground moves lossy (learned and JPEG 2000) samples one grey level off
it (:func:`fool.shared.scene.keep_off_nodata`), and the encoder judges tiles with that move
applied. A JPEG-LS tile whose ``NEAR`` would land a sample on nodata falls back to lossless
JPEG-LS instead, because a move could break the ``--max-error`` bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from fool.shared import intra
from fool.shared.bands import BandRange
from fool.shared.errors import InputError
from fool.shared.latent_codec import QUALITY_STEP, LatentCodec, fill_unsent
from fool.shared.scene import keep_off_nodata, unpack_tile

MODE_CHOICES = ("learned", "auto")
#: PSNR targets (dB) of the qualities above a model's top level L: L + 1 .. L + 4 (9 .. 12 for an
#: 8-level model) code every tile with JPEG 2000. OpenJPEG lands below its target on 128-px tiles
#: (UC Merced dev, 10 images: 1.0 dB below at 38 dB, 2.6 below at 50), so the targets are set to
#: reach about 38, 41.5, 44.5 and 47 dB (5/3; 9/7 lands 0.3 to 0.6 dB higher at 12 to 18 % fewer
#: bytes: 22 hard images, 38.6 .. 47.4 dB)
UPPER_TARGETS = (39.0, 42.5, 46.0, 49.5)
#: ``auto``'s search for each tile's JPEG 2000 PSNR target: from the learned tile's PSNR, steps
#: of AUTO_STEP dB in the direction the tile's cost J falls, at most AUTO_MAX_STEPS of them,
#: within AUTO_TARGETS. Each tile so lands near the target where JPEG 2000's rate-distortion
#: slope is the learned quality's λ: equal slopes across tiles, which is how one JPEG 2000
#: codestream allocates its bytes over a whole image (a fixed set of offsets around the learned
#: PSNR could not reach a tile whose JPEG 2000 optimum lies far from it)
AUTO_STEP = 1.5
AUTO_MAX_STEPS = 6
AUTO_TARGETS = (5.0, 100.0)
#: names of the tile modes in reports ("j2k" whichever the wavelet)
LEARNED, J2K, JPEGLS = "learned", "j2k", "jpegls"


def max_quality(levels: int) -> float:
    """The highest quality of a model with ``levels`` learned levels (its JPEG 2000 range included)."""
    return float(levels + len(UPPER_TARGETS))


def upper_target(quality: float, levels: int) -> float:
    """PSNR target (dB) of a quality above the model's ``levels``: 39 dB at ``levels + 1`` and
    3.5 dB a step (:data:`UPPER_TARGETS`), continued linearly down to just above the top level."""
    return UPPER_TARGETS[0] + 3.5 * (quality - (levels + 1))


def lambda_for(codec: LatentCodec, code: int) -> float:
    """The training λ of a quality code: the model's levels, geometric between them."""
    lambdas = codec.lambdas
    if len(lambdas) != codec.levels:
        raise InputError(f"model {codec.name} does not list the λ of its {codec.levels} levels")
    q = min(max(code / QUALITY_STEP, 1.0), float(codec.levels))
    return float(math.exp(np.interp(q, np.arange(1, codec.levels + 1), np.log(lambdas))))


def intra_dtype_ok(dtype: str) -> bool:
    return dtype in intra.INTRA_DTYPES


def filled(values: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """The tile's values with invalid pixels replaced by each band's valid mean (cheap to code).

    A push-pull fill (each invalid pixel the mean of its smallest aligned 2^k block holding
    valid pixels) did not pay: per image vs JPEG 2000 at 256-px tiles, misc/rgb4 +10.5 -> +9.9 %,
    misc/rgb2 +10.3 -> +11.3 % (docs/experiments.md)."""
    if valid is None:
        return values
    out = values.copy()
    for band in out:
        band[~valid] = np.rint(band[valid].mean()) if valid.any() else 0
    return out


def unit_mse(
    original: np.ndarray, decoded: np.ndarray, ranges: Sequence[BandRange], groups, valid: np.ndarray | None
) -> float:
    """Σ over band groups of the group's mean squared error on the codec's unit range (valid pixels)."""
    total = 0.0
    for g in groups:
        errs = []
        for b in g:
            rng = ranges[b - 1]
            e = rng.to_unit(original[b - 1]).astype(np.float64) - rng.to_unit(decoded[b - 1])
            errs.append(e if valid is None else e[valid])
        total += float(np.mean(np.square(errs)))
    return total


def raw_psnr(original: np.ndarray, decoded: np.ndarray, valid: np.ndarray | None) -> float:
    """PSNR (dB) over all bands and valid pixels, peak of the tile's precision over its valid
    pixels (invalid ones are filled before coding): what OpenJPEG's target measures."""
    seen = original if valid is None else original[:, valid]
    top = int(seen.max()) if seen.size else 0
    peak = 255.0 if original.dtype == np.uint8 else float(2 ** max(1, top.bit_length()) - 1)
    d = original.astype(np.float64) - decoded
    mse = float(np.mean(np.square(d if valid is None else d[:, valid])))
    return 10 * math.log10(peak**2 / mse) if mse > 0 else 100.0


def clashes(original: np.ndarray, decoded: np.ndarray, valid: np.ndarray | None, nodata) -> bool:
    """Whether a valid sample decodes to the nodata value where the source did not hold it."""
    if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)):
        return False
    hit = (decoded == nodata) & (original != nodata)
    if valid is not None:
        hit &= valid[None]
    return bool(hit.any())


class ModeChooser:
    """Chooses and codes each tile's payload for the intra options of :class:`CompressOptions`.

    ``synthesis`` (``auto`` only) maps latents (groups, M, h, w) to unit-range pixels;
    ``wavelet`` (53 or 97, :data:`fool.shared.intra.WAVELETS`) is the JPEG 2000 payloads' wavelet.
    """

    def __init__(
        self,
        codec: LatentCodec,
        groups: list[list[int]],
        ranges: Sequence[BandRange],
        dtype: str,
        mask_kind: str,
        nodata,
        code: int,
        mode: str = "learned",
        upper: float | None = None,
        max_error: int | None = None,
        synthesis=None,
        wavelet: int = intra.DEFAULT_WAVELET,
    ) -> None:
        self.codec, self.groups, self.ranges, self.dtype = codec, groups, ranges, dtype
        self.nodata = nodata if mask_kind == "nodata" else None
        self.code, self.mode, self.upper, self.max_error = code, mode, upper, max_error
        self.synthesis, self.wavelet = synthesis, wavelet
        self.lam = lambda_for(codec, code) if mode == "auto" and upper is None and max_error is None else 0.0

    @property
    def needs_latents(self) -> bool:
        """Whether tiles need the analysis (and a learned payload) at all."""
        return self.upper is None and self.max_error is None

    @property
    def layouts(self) -> tuple[str, ...]:
        """The JPEG 2000 layouts worth trying: one codestream per band group, and for scenes of
        several groups one codestream of every band (:data:`fool.shared.intra.LAYOUTS`)."""
        bands = sum(len(g) for g in self.groups)
        if len(self.groups) > 1 and bands <= intra.MAX_PART_COMPONENTS:
            return intra.LAYOUTS
        return (intra.GROUPS,)

    def _decoded(self, values: np.ndarray, valid: np.ndarray | None, payload: bytes, lossy: bool) -> np.ndarray:
        """The tile as the ground decodes ``payload``, invalid pixels set to the source's (they are masked)."""
        decoded = intra.decode(payload, self.groups, (values.shape[1], values.shape[2]), self.dtype)
        if lossy:
            keep_off_nodata(decoded, valid, self.nodata)
        if valid is not None:
            decoded[:, ~valid] = values[:, ~valid]
        return decoded

    def lossless(self, values: np.ndarray, valid: np.ndarray | None) -> bytes:
        return intra.encode_jpegls(filled(values, valid), self.groups, 0)

    def jpegls(self, values: np.ndarray, valid: np.ndarray | None) -> tuple[bytes, str]:
        near = int(self.max_error or 0)
        payload = intra.encode_jpegls(filled(values, valid), self.groups, near)
        decoded = self._decoded(values, valid, payload, lossy=False)
        err = np.abs(decoded.astype(np.int64) - values)
        if int(err.max()) > near:  # JPEG-LS guarantees it; a library that did not would be caught here
            raise RuntimeError(f"JPEG-LS decoded {int(err.max())} units from the source, more than NEAR={near}")
        if near and clashes(values, decoded, valid, self.nodata):
            return self.lossless(values, valid), JPEGLS
        return payload, JPEGLS

    def j2k(
        self, values: np.ndarray, valid: np.ndarray | None, target: float, layout: str = intra.GROUPS
    ) -> tuple[bytes, np.ndarray]:
        payload = intra.encode_j2k(filled(values, valid), self.groups, target, self.wavelet, layout)
        return payload, self._decoded(values, valid, payload, lossy=True)

    def fixed(self, values: np.ndarray, valid: np.ndarray | None) -> tuple[bytes, str]:
        """Upper range or max error: the tile's one classical payload. Of the JPEG 2000 layouts
        the one of lowest ``bits per pixel - bands * PSNR / 6.02`` is kept: at these rates a
        sample costs one bit per 6.02 dB, so that is the rate at equal quality."""
        if self.max_error is not None:
            return self.jpegls(values, valid)
        assert self.upper is not None
        layouts = self.layouts
        if len(layouts) == 1:  # nothing to compare: no decode on board (the ground keeps it off nodata)
            return intra.encode_j2k(filled(values, valid), self.groups, self.upper, self.wavelet), J2K
        pixels = _valid_pixels(values, valid)
        bands = values.shape[0]
        best: tuple[float, bytes] | None = None
        for layout in layouts:
            payload, decoded = self.j2k(values, valid, self.upper, layout)
            cost = 8 * len(payload) / pixels - bands * raw_psnr(values, decoded, valid) / 6.02
            if best is None or cost < best[0]:
                best = (cost, payload)
        assert best is not None
        return best[1], J2K

    def learned_values(self, stream: bytes, shape: tuple[int, int], padded: tuple[int, int], sent) -> np.ndarray:
        """The ground's reconstruction of a learned tile (without a halo's neighbours)."""
        ph, pw = padded
        latents = self.codec.decode_tile(stream, len(self.groups), (ph // 16, pw // 16), self.code, sent)
        y_hat = np.stack([fill_unsent(y, sent) for y in latents])
        x_hat = self.synthesis(y_hat)[:, :, : shape[0], : shape[1]]
        out = np.empty((sum(len(g) for g in self.groups), *shape), self.dtype)
        for gi, g in enumerate(self.groups):
            unit = x_hat[gi] if len(g) == 3 else x_hat[gi].mean(axis=0, keepdims=True)
            for j, band in enumerate(g):
                out[band - 1] = self.ranges[band - 1].from_unit(unit[j], self.dtype)
        return out

    def choose(
        self, values: np.ndarray, valid: np.ndarray | None, learned: bytes, padded: tuple[int, int], sent
    ) -> tuple[bytes, str]:
        """``auto``: the learned payload or a JPEG 2000 one, whichever costs less over the tile's
        valid pixels. ``learned`` is the tile's payload (with its mask, if any); a JPEG 2000
        result is the bare intra payload (the caller adds the mask). The JPEG 2000 layout is
        chosen at the learned tile's PSNR and kept for the target search (:data:`AUTO_STEP`).
        Samples other than uint8/uint16 stay learned."""
        if not intra_dtype_ok(self.dtype):
            return learned, LEARNED
        shape = (values.shape[1], values.shape[2])
        stream = unpack_tile(learned, valid is not None, shape)[0]
        pixels = _valid_pixels(values, valid)
        scale = self.lam * 255**2
        rec = self.learned_values(stream, shape, padded, sent)
        keep_off_nodata(rec, valid, self.nodata)

        def cost(decoded: np.ndarray, payload: bytes) -> float:
            return scale * unit_mse(values, decoded, self.ranges, self.groups, valid) + 8 * len(payload) / pixels

        best, payload, kind = cost(rec, stream), learned, LEARNED
        base = raw_psnr(values, rec, valid)
        tried: list[tuple[float, bytes]] = []

        def j2k_cost(target: float, layout: str) -> float:
            candidate, decoded = self.j2k(values, valid, target, layout)
            tried.append((cost(decoded, candidate), candidate))
            return tried[-1][0]

        at_base = {layout: j2k_cost(base, layout) for layout in self.layouts}
        layout = min(at_base, key=lambda k: at_base[k])
        here = at_base[layout]
        up, down = j2k_cost(base + AUTO_STEP, layout), j2k_cost(base - AUTO_STEP, layout)
        if min(up, down) < here:
            step = AUTO_STEP if up < down else -AUTO_STEP
            target, here = base + step, min(up, down)
            for _ in range(AUTO_MAX_STEPS - 1):
                target += step
                if not AUTO_TARGETS[0] <= target <= AUTO_TARGETS[1] or (c := j2k_cost(target, layout)) >= here:
                    break
                here = c
        c, candidate = min(tried, key=lambda t: t[0])
        if c < best:
            payload, kind = candidate, J2K
        return payload, kind


def _valid_pixels(values: np.ndarray, valid: np.ndarray | None) -> int:
    return int(valid.sum()) if valid is not None else values.shape[1] * values.shape[2]


_SYNTHESES: dict[str, object] = {}


def load_synthesis(weights) -> object:
    """The shared synthesis network of a model's weights, loaded once per process: a callable
    latents (groups, M, h, w) -> unit-range pixels (groups, 3, H, W)."""
    key = str(weights)
    if key not in _SYNTHESES:
        import torch
        from fool.shared.nn.codec import FoolCodec

        model = FoolCodec.load(weights)

        def run(y_hat: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model.synthesise(torch.from_numpy(y_hat)).clamp_(0, 1).numpy()

        _SYNTHESES[key] = run
    return _SYNTHESES[key]

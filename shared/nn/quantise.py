"""int8 static quantisation of the flight analysis graph (ONNX Runtime, QDQ).

Only the two middle 5x5 convolutions of the analysis (``g_a.2`` and ``g_a.4``, 64 -> 64 at a
quarter and a sixteenth of the tile's resolution: 8,000 of the ~12,000 multiply-adds per
pixel) become int8, per output channel, with activation ranges from a percentile calibration
on team tiles. Quantising every convolution ran the graph 2x faster on an AVX-512 VNNI CPU but
cost +14 to +19 % BD-rate (the first layer, the GDN convolutions fed by x**2 and the latent
layer are the sensitive ones); these two cost about 1-2 % (``bench/int8_analysis.py --rd``).
The ground decoder is untouched: an int8 encoder writes containers that every decoder reads,
only its latents (hence its bytes) differ from the float graph's.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

#: the analysis convolutions that run in int8 (node names of the exported graph)
INT8_NODES = ("/g_a/g_a.2/Conv", "/g_a/g_a.4/Conv")
CALIBRATION_METHOD = "Percentile"
TILE = 128


def calibration_tiles(folder: Path, count: int = 96, seed: int = 0) -> np.ndarray:
    """``count`` 128-px unit-range RGB tiles (N, 3, 128, 128) float32, two opposite corners
    of each of ``count / 2`` images drawn from ``folder`` (searched recursively)."""
    from fool.shared.errors import InputError
    from PIL import Image, UnidentifiedImageError

    suffixes = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in suffixes)
    if not files:
        raise InputError(f"no calibration images (png, jpeg, tiff, webp) under {folder}")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(files), min(len(files), -(-count // 2)), replace=False)
    tiles = []
    for i in picks:
        try:
            with Image.open(files[i]) as im:
                a = np.asarray(im.convert("RGB").resize((2 * TILE, 2 * TILE)), np.float32) / 255
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"cannot read calibration image {files[i]}: {exc}") from None
        tiles += [a[:TILE, :TILE].transpose(2, 0, 1), a[TILE:, TILE:].transpose(2, 0, 1)]
    return np.ascontiguousarray(np.stack(tiles[:count]))


def quantise_analysis(src: Path, dst: Path, calibration: np.ndarray, nodes: tuple[str, ...] = INT8_NODES) -> None:
    """Write ``dst``: the float analysis graph ``src`` with ``nodes`` in int8 (QDQ)."""
    feeds = [{"x": calibration[i : i + 8]} for i in range(0, len(calibration), 8)]
    quantise_nodes(src, dst, feeds, lambda name: name in nodes, required=nodes)


def quantise_nodes(
    src: Path,
    dst: Path,
    feeds: list[dict[str, np.ndarray]],
    include,
    op_types: tuple[str, ...] = ("Conv",),
    method: str = CALIBRATION_METHOD,
    required: tuple[str, ...] = (),
) -> list[str]:
    """Write ``dst``: the float graph ``src`` with the nodes of ``op_types`` whose name
    ``include`` accepts in int8 (QDQ, per output channel, uint8 activations calibrated on
    ``feeds``); -> their names. ``required`` nodes must exist in the graph."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    pre = dst.with_name(dst.stem + ".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre))
        candidates = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type in op_types]
        missing = set(required) - set(candidates)
        if missing:
            raise ValueError(f"the graph has no nodes {sorted(missing)}")
        chosen = [n for n in candidates if include(n)]
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its histogram settings
            quantize_static(
                str(pre),
                str(dst),
                Batches(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(op_types),
                nodes_to_exclude=[n for n in candidates if n not in chosen],
                calibrate_method=getattr(CalibrationMethod, method),
            )
    finally:
        pre.unlink(missing_ok=True)
    return chosen

"""What a runtime is: the seams between the container code and the networks that run on each side.

The onboard analysis runs in ONNX Runtime (flight) or PyTorch; the ground synthesis too
(``ground/synthesis.py``: ``fool decode --runtime onnx|torch``).
Code that drives them (``onboard.compress``, ``ground.decode``) depends only on these
protocols, so a new runtime (int8, another accelerator) plugs in without touching it.
"""

from __future__ import annotations

from typing import Protocol, TypedDict

import numpy as np
from fool.shared.latent_codec import LatentCodec


class AnalysisRuntime(Protocol):
    """Pixels (N, 3, H, W) in [0, 1], H and W multiples of 64 -> latents y and hyper-latents z."""

    name: str

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def hyper(self, y: np.ndarray) -> np.ndarray:
        """z from y alone (for a tile cut out of a wider analysis)."""
        ...


class SynthesisRuntime(Protocol):
    """Dequantised latents (G, M, h, w) -> pixels (G, 3, 16h, 16w) in [0, 1]; ``codec`` holds
    the tables of the model it synthesises, whose hash the container must name."""

    codec: LatentCodec

    def __call__(self, y_hat: np.ndarray) -> np.ndarray: ...


#: Version of the ground synthesis export (``synthesis.json``, ``shared/nn/export.py``); bump it
#: when the exported graph changes, so cached exports are redone. Here, not in the export module,
#: because the ground reads it without importing torch.
SYNTHESIS_EXPORT_VERSION = 1


class FlightInput(TypedDict):
    name: str
    layout: str
    dtype: str
    channels: int
    multiple_of: int
    range: list[float]


class FlightManifest(TypedDict, total=False):
    """``manifest.json`` of a flight export (``fool export-onnx``): what the satellite loads."""

    model_id: str
    model_name: str
    weights_sha256: str
    opset: int
    analysis: str
    analysis_sha256: str
    hyper_analysis: str
    hyper_analysis_sha256: str
    tables: str
    input: FlightInput
    outputs: dict[str, str]
    normalisation: str


def ort_session(model: str, threads: int | None = None):
    """An ONNX Runtime CPU session as both sides run them: ``threads`` intra-op threads (ORT's
    choice when None), one inter-op thread, and no spinning. Idle pool threads would otherwise
    spin between runs on the core that the entropy coder, the reader or the GeoTIFF writer
    needs (the onboard profile showed 19 s of system time); results do not depend on it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])

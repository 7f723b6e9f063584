"""What a runtime is: the seams between the container code and the networks that run on each side.

The onboard analysis runs in ONNX Runtime (flight) or PyTorch; the ground synthesis too
(``ground/synthesis.py``: ``fool decode --runtime onnx|torch``).
Code that drives them (``onboard.compress``, ``ground.decode``) depends only on these
protocols, so a new runtime (int8, another accelerator) plugs in without touching it.
"""

from __future__ import annotations

import threading
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


def blas_threads():
    """-> (get, set) of the OpenBLAS thread count numpy uses, or None (another BLAS)."""
    import ctypes

    try:
        with open("/proc/self/maps") as fh:
            libs = {line.split()[-1] for line in fh if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return None
    # numpy's own OpenBLAS first (a wheel's is in numpy.libs), not one that another library bundles
    for lib in sorted(libs, key=lambda p: ("numpy" not in p, p)):
        try:
            so = ctypes.CDLL(lib)
        except OSError:
            continue
        for suffix in ("64_", "", "_64"):
            for prefix in ("scipy_openblas", "openblas"):
                get = getattr(so, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(so, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    return get, set_
    return None


class single_blas_thread:
    """One OpenBLAS thread while a scene is coded or decoded: the integer hyper-synthesis's
    products are small, the runtime has the other cores, and idle OpenBLAS threads spin in
    sched_yield (system time: 15.7 of 65 CPU-s of a 4096-px NAIP mosaic decode, 1.0 with one
    thread). Results do not depend on it (exact integers). Nested and concurrent scenes share
    one count; the last to finish restores the thread count found before the first."""

    _lock = threading.Lock()
    _depth = 0
    _saved: int | None = None
    _api = None

    def __enter__(self):
        cls = type(self)
        with cls._lock:
            if cls._depth == 0:
                cls._api = blas_threads() if cls._api is None else cls._api
                if cls._api:
                    cls._saved = cls._api[0]()
                    cls._api[1](1)
            cls._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        cls = type(self)
        with cls._lock:
            cls._depth -= 1
            if cls._depth == 0 and cls._api and cls._saved:
                cls._api[1](cls._saved)

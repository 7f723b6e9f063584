"""Runtimes for the onboard transforms (analysis + hyper-analysis): PyTorch or ONNX Runtime.

Both take unit-range tiles (B, 3, H, W) float32 and return the latents (y, z) as numpy, so
everything after them (quantisation, integer hyper-synthesis, rANS) is shared code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fool.shared.errors import ModelError
from fool.shared.runtime import ort_session
from fool.shared.zoo import ModelFiles


class TorchAnalysis:
    name = "torch"
    #: oneDNN may pick another kernel for another batch size: one tile per call, as before
    batch_invariant = False

    def __init__(self, files: ModelFiles, threads: int | None = None) -> None:
        import torch
        from fool.shared.nn.codec import FoolCodec

        if not files.weights.exists():
            raise ModelError(f"weights {files.weights} missing; the torch runtime needs them")
        self.model = FoolCodec.load(files.weights)
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.inference_mode():
            y, z = self.model.analyse(self._torch.from_numpy(x))
        return y.numpy(), z.numpy()

    def hyper(self, y: np.ndarray) -> np.ndarray:
        """Hyper-latent of given latents (a tile's own, cropped out of a halo analysis)."""
        with self._torch.inference_mode():
            return self.model.h_a(self._torch.from_numpy(y)).numpy()


class OnnxAnalysis:
    """The flight runtime: onnxruntime + numpy only (no torch import anywhere on this path)."""

    name = "onnx"
    #: ORT's CPU convolution works image by image, so a tile's latents do not depend on the
    #: tiles batched with it (checked bit for bit): the encoder analyses several per call
    batch_invariant = True

    def __init__(self, flight_dir: Path, threads: int | None = None) -> None:
        manifest_path = Path(flight_dir) / "manifest.json"
        if not manifest_path.exists():
            raise ModelError(
                f"no flight export at {flight_dir} (no manifest.json); run `fool export-onnx -o DIR` "
                "and pass --flight DIR"
            )
        self.manifest = json.loads(manifest_path.read_text())
        self.session = ort_session(str(Path(flight_dir) / self.manifest["analysis"]), threads)
        self._hyper = None
        if "hyper_analysis" in self.manifest:
            self._hyper = ort_session(str(Path(flight_dir) / self.manifest["hyper_analysis"]), threads)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y, z = self.session.run(["y", "z"], {"x": x})
        return y, z

    def hyper(self, y: np.ndarray) -> np.ndarray:
        if self._hyper is None:
            raise ModelError("this flight export has no hyper_analysis.onnx (needed for --halo); re-export it")
        (z,) = self._hyper.run(["z"], {"y": np.ascontiguousarray(y, np.float32)})
        return z

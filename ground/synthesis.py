"""Ground-side synthesis runtime: latents back to pixels with the shipped PyTorch weights."""

from __future__ import annotations

import numpy as np
from fool.shared.errors import ModelError
from fool.shared.latent_codec import LatentCodec, file_sha256
from fool.shared.zoo import find


class TorchSynthesis:
    def __init__(self, name: str, sha256: str, threads: int | None = None) -> None:
        import torch
        from fool.shared.nn.codec import FoolCodec

        files = find(name)
        self.codec = LatentCodec.load(files.tables)
        if not self.codec.weights_sha256.startswith(sha256) or len(sha256) < 16:
            raise ModelError(
                f"container was coded with {name}@{sha256[:16]} but the installed {name} is "
                f"{self.codec.model_id}; install the matching model to decode it"
            )
        if not files.weights.exists() or not file_sha256(files.weights).startswith(sha256):
            raise ModelError(f"weights {files.weights} are missing or do not match their tables ({sha256[:16]})")
        self.model = FoolCodec.load(files.weights)
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch

    def __call__(self, y_hat: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model.synthesise(self._torch.from_numpy(y_hat)).clamp_(0, 1).numpy()

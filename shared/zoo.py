"""Shipped models: where their files are and which one is the default."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fool.shared.bands import INTEGER_DTYPES
from fool.shared.errors import ModelError

#: The model for 8-bit imagery: fool-m2 (fool-m grown by three quality levels below its lowest)
#: fine-tuned on mixed 128/256-px crops, so it codes 256-px tiles as well as 128-px ones
#: (models/README.md). fool-m2 and fool-m stay shipped, so containers coded with them still
#: decode (fool-m2's fast synthesis serves fool-m2's containers only).
DEFAULT_MODEL = "fool-m3"
#: The model for high-bit-depth integer scenes (11/12-bit pan, Sentinel-2), coded band by band:
#: fool-m fine-tuned on such bands only (fool-m16), then on mixed 128/256-px crops of them
#: (models/README.md). Used by default when it is shipped; fool-m16 stays for its containers.
DEEP_MODEL = "fool-m16b"
#: Default quality on an 8-level model's 1..8 scale: ~0.54-0.58 bpp on aerial RGB (0.18-0.19 per
#: band, ~43:1), a mid-rate where fool-m is ahead of JPEG 2000 (it loses at qualities 7-8, see
#: models/README.md). A model's default is its level trained at DEFAULT_LAMBDA (:func:`default_quality`).
DEFAULT_QUALITY = 3.0
#: the training λ of the default operating point: quality 3 of the 8-level models, 6 of a model
#: grown by three levels below (``fool train --low-levels 3``), so growing a model's range does
#: not move its default
DEFAULT_LAMBDA = 0.0067


def models_dir() -> Path:
    env = os.environ.get("FOOL_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "models"


@dataclass(frozen=True)
class ModelFiles:
    name: str
    weights: Path  # torch state dict + config (ground synthesis, torch onboard runtime)
    tables: Path  # numpy entropy tables, gains, integer hyper-synthesis (both sides)

    @property
    def onnx_dir(self) -> Path:
        return self.weights.parent / f"{self.name}.onnx"


def available() -> list[str]:
    return sorted(p.stem for p in models_dir().glob("*.npz"))


def find(name: str = DEFAULT_MODEL) -> ModelFiles:
    folder = models_dir()
    files = ModelFiles(name, folder / f"{name}.pt", folder / f"{name}.npz")
    if not files.tables.exists():
        known = ", ".join(available()) or "none"
        raise ModelError(f"model {name!r} not found in {folder} (available: {known})")
    return files


def synthesis_variant(name: str, variant: str) -> Path:
    """The weights of another ground synthesis for model ``name``'s containers (e.g. ``fast``):
    ``<name>.<variant>.pt``, trained with that model's encoder frozen (``fool train --train-only
    synthesis``), so it decodes the same bytes."""
    path = models_dir() / f"{name}.{variant}.pt"
    if not path.is_file():
        known = ", ".join(synthesis_variants(name)) or "none"
        raise ModelError(f"no synthesis {variant!r} for {name} in {models_dir()} (available: {known})")
    return path


def synthesis_variants(name: str) -> list[str]:
    return sorted(p.name[len(name) + 1 : -3] for p in models_dir().glob(f"{name}.*.pt"))


def split_variant(label: str) -> tuple[str, str | None]:
    """``"fool-m2:fast"`` -> ``("fool-m2", "fast")``; a plain model name has no variant."""
    name, _, variant = label.partition(":")
    return name, variant or None


def model_for(dtype: str) -> str:
    """The shipped model that serves a scene of this dtype when the user names none: 8-bit
    imagery and float bands (stretched by their own min/max) go to fool-m, deeper integer
    bands to the high-bit-depth model."""
    if dtype in INTEGER_DTYPES and dtype != "uint8" and (models_dir() / f"{DEEP_MODEL}.npz").exists():
        return DEEP_MODEL
    return DEFAULT_MODEL


def default_quality(lambdas: Sequence[float]) -> float:
    """The quality (1-based level) whose training λ is nearest :data:`DEFAULT_LAMBDA` (in log
    scale); :data:`DEFAULT_QUALITY` for a model that lists no λ."""
    if not lambdas:
        return DEFAULT_QUALITY
    gaps = [abs(math.log(float(v) / DEFAULT_LAMBDA)) for v in lambdas]
    return float(1 + gaps.index(min(gaps)))

"""Ground-side synthesis runtimes: latents back to pixels, in PyTorch or in ONNX Runtime.

Both satisfy :class:`fool.shared.runtime.SynthesisRuntime` and refuse a container coded with
other weights than the installed ones. Either may run a synthesis variant of the model instead
of its own (``variant="fast"``: ``models/<name>.fast.pt``, a narrower synthesis trained on the
model's frozen encoder, so it reads the same containers; models/README.md says what it costs).

They are float paths, so their pixels are not bit identical: on NAIP (4-band uint8) they
differ by at most 1 grey level, on about 1 sample in 10^5 (docs/design.md, "Ground decode").
The entropy decoding before them is the same integer code whichever runs.

:class:`OnnxSynthesis` runs an export of the synthesis (``shared/nn/export.py``) that it keeps
in a cache folder, keyed by the weights' hash; the first use of a model exports it (this one
time needs torch, seconds), every later one imports neither torch nor compressai's Python
package, which is most of the decoder's start-up.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from fool.shared.errors import InputError, ModelError
from fool.shared.latent_codec import LatentCodec, file_sha256
from fool.shared.runtime import SYNTHESIS_EXPORT_VERSION, SynthesisRuntime, ort_session
from fool.shared.zoo import ModelFiles, find, synthesis_variant

RUNTIMES = ("torch", "onnx")


def _checked_model(name: str, sha256: str, need_weights: bool) -> tuple[ModelFiles, LatentCodec]:
    """The installed model ``name`` and its tables, if its weights hash starts with ``sha256``
    (the container's); ModelError otherwise."""
    files = find(name)
    codec = LatentCodec.load(files.tables)
    if not codec.weights_sha256.startswith(sha256) or len(sha256) < 16:
        raise ModelError(
            f"container was coded with {name}@{sha256[:16]} but the installed {name} is "
            f"{codec.model_id}; install the matching model to decode it"
        )
    if need_weights and (not files.weights.exists() or not file_sha256(files.weights).startswith(sha256)):
        raise ModelError(f"weights {files.weights} are missing or do not match their tables ({sha256[:16]})")
    return files, codec


class TorchSynthesis:
    """The synthesis in PyTorch, from the shipped weights."""

    name = "torch"

    def __init__(self, name: str, sha256: str, threads: int | None = None, variant: str | None = None) -> None:
        import torch
        from fool.shared.nn.codec import FoolCodec

        files, self.codec = _checked_model(name, sha256, need_weights=True)
        if variant is None:
            self.model = FoolCodec.load(files.weights)
        else:
            self.model = FoolCodec.load_synthesis(synthesis_variant(name, variant), self.codec.weights_sha256)
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch

    def __call__(self, y_hat: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model.synthesise(self._torch.from_numpy(y_hat)).clamp_(0, 1).numpy()


def cache_dir() -> Path:
    """Where ONNX exports of the synthesis are kept: ``$FOOL_CACHE``, else the XDG cache."""
    env = os.environ.get("FOOL_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fool"


def _export_matches(folder: Path, weights_sha256: str, variant: Path | None = None) -> bool:
    try:
        manifest = json.loads((folder / "synthesis.json").read_text())
    except (OSError, ValueError):
        return False
    variant_sha256 = file_sha256(variant) if variant is not None else None
    return (
        manifest.get("weights_sha256") == weights_sha256
        and manifest.get("variant_sha256") == variant_sha256
        and manifest.get("export_version") == SYNTHESIS_EXPORT_VERSION
        and (folder / manifest.get("synthesis", "synthesis.onnx")).is_file()
    )


def synthesis_export(name: str, sha256: str, root: Path | None = None, variant: str | None = None) -> Path:
    """The folder holding an ONNX export of ``name``'s synthesis for the weights the container
    names, exported now if the cache has none (torch is imported only then).

    The export is written into a temporary folder and renamed into place, so concurrent
    decoders (batch workers) never read half a file; if two export at once, one rename wins and
    the other's copy is dropped."""
    files, codec = _checked_model(name, sha256, need_weights=False)
    return _ensure_export(files, codec, root or cache_dir(), variant)


def _ensure_export(files: ModelFiles, codec: LatentCodec, root: Path, variant: str | None = None) -> Path:
    variant_path = synthesis_variant(files.name, variant) if variant is not None else None
    label = files.name if variant is None else f"{files.name}.{variant}"
    folder = root / f"synthesis-{label}-{codec.weights_sha256[:16]}"
    if _export_matches(folder, codec.weights_sha256, variant_path):
        return folder
    if not files.weights.exists() or file_sha256(files.weights) != codec.weights_sha256:
        raise ModelError(f"weights {files.weights} are missing or do not match their tables ({codec.model_id})")
    from fool.shared.nn.export import export_synthesis

    print(f"exporting the {label} synthesis to ONNX (once) into {folder}", file=sys.stderr)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        export_synthesis(files, tmp, variant_path)
        if folder.exists():  # stale (other weights or export version): replaced
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except OSError:
        if not _export_matches(folder, codec.weights_sha256, variant_path):  # a concurrent export did not win either
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


class OnnxSynthesis:
    """The synthesis in ONNX Runtime (CPU): about 1.5 times PyTorch's speed on one thread here.

    Several tiles' latents of one shape may go in one call (the batch axis); ORT's CPU
    convolutions work image by image, so batching changes no value (checked bit for bit, as
    for the onboard analysis) but it saves no measurable time either, so the decoder does not."""

    name = "onnx"
    #: how many tiles callers may synthesise at once (:func:`ground.decode.decode_container`);
    #: ORT sessions take concurrent runs
    parallel: int

    def __init__(
        self,
        name: str,
        sha256: str,
        threads: int | None = None,
        export_dir: Path | None = None,
        variant: str | None = None,
    ) -> None:
        files, self.codec = _checked_model(name, sha256, need_weights=False)
        if export_dir is None:
            folder = _ensure_export(files, self.codec, cache_dir(), variant)
        else:
            folder = Path(export_dir)
        variant_path = synthesis_variant(name, variant) if variant is not None else None
        if not _export_matches(folder, self.codec.weights_sha256, variant_path):
            what = f"synthesis {variant!r}" if variant else "synthesis"
            raise ModelError(f"{folder} holds no ONNX {what} of {self.codec.model_id}")
        manifest = json.loads((folder / "synthesis.json").read_text())
        # tiles in parallel, one thread each: on 8x8 latents ORT's intra-op threads wait on each
        # other (2 threads on one tile ran 3.3 MP/s here, 2 tiles at once on 1 thread each 5.7)
        self.parallel = threads or os.cpu_count() or 1
        self.session = ort_session(str(folder / manifest["synthesis"]), 1)

    def __call__(self, y_hat: np.ndarray) -> np.ndarray:
        (x_hat,) = self.session.run(["x_hat"], {"y": np.ascontiguousarray(y_hat, np.float32)})
        return x_hat


def load_synthesis(
    runtime: str, name: str, sha256: str, threads: int | None = None, variant: str | None = None
) -> SynthesisRuntime:
    """The synthesis runtime ``runtime`` ("torch" or "onnx") for the model a container names:
    its own synthesis, or the shipped ``variant`` of it."""
    if runtime == "onnx":
        return OnnxSynthesis(name, sha256, threads, variant=variant)
    if runtime == "torch":
        return TorchSynthesis(name, sha256, threads, variant)
    raise InputError(f"unknown synthesis runtime {runtime!r}; use {' or '.join(map(repr, RUNTIMES))}")

"""ONNX exports: the onboard graph (tile in [0, 1] -> latents y, z) and the ground synthesis
(latents -> pixels in [0, 1]).

compressai's GDN re-parametrises its weights through a custom autograd op that ONNX
cannot express (CompressAI issues #247, #299). For export each GDN is replaced by
:class:`FrozenGDN`, which holds the already re-parametrised beta and gamma as constants:
the same function, in plain Conv/Mul/Sqrt ops.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from compressai.layers import GDN
from fool.shared.latent_codec import LatentCodec
from fool.shared.runtime import SYNTHESIS_EXPORT_VERSION
from fool.shared.zoo import ModelFiles
from torch import nn

OPSET = 17


class FrozenGDN(nn.Module):
    beta: torch.Tensor  # buffers, registered in __init__
    gamma: torch.Tensor

    def __init__(self, gdn: GDN) -> None:
        super().__init__()
        c = gdn.beta.shape[0]
        self.register_buffer("beta", gdn.beta_reparam(gdn.beta).detach().clone())
        self.register_buffer("gamma", gdn.gamma_reparam(gdn.gamma).detach().reshape(c, c, 1, 1).clone())
        self.inverse = gdn.inverse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = nn.functional.conv2d(x * x, self.gamma, self.beta)
        return x * torch.sqrt(norm) if self.inverse else x / torch.sqrt(norm)


def freeze(seq: nn.Sequential) -> nn.Sequential:
    """``seq`` with every GDN frozen, nested stages included (the synthesis has them); the
    model's own modules are shared, never changed."""
    return nn.Sequential(
        *[FrozenGDN(m) if isinstance(m, GDN) else freeze(m) if isinstance(m, nn.Sequential) else m for m in seq]
    )


class OnboardGraph(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.g_a = freeze(model.g_a)
        self.h_a = model.h_a

    def forward(self, x: torch.Tensor):
        y = self.g_a(x)
        return y, self.h_a(y)


class SynthesisGraph(nn.Module):
    """The ground synthesis as :class:`ground.synthesis.TorchSynthesis` runs it: y_hat -> x_hat
    clamped to [0, 1]."""

    def __init__(self, model) -> None:
        super().__init__()
        self.g_s = freeze(model.g_s)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.g_s(y).clamp(0, 1)


def _export(graph: nn.Module, example: torch.Tensor, path: Path, inputs: list[str], outputs: list[str]) -> None:
    import onnx

    axes = {"x": ("height", "width"), "y": ("lh", "lw"), "z": ("zh", "zw"), "x_hat": ("height", "width")}
    with torch.no_grad():
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes={n: {0: "batch", 2: axes[n][0], 3: axes[n][1]} for n in inputs + outputs},
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def export_flight(files: ModelFiles, out_dir: Path, int8_calibration: np.ndarray | None = None) -> dict:
    """Write ``analysis.onnx`` (x -> y, z), ``hyper_analysis.onnx`` (y -> z, for tiles analysed
    with a halo, whose hyper-latent must describe the tile's own latents), the model's tables
    and ``manifest.json`` into ``out_dir``. With ``int8_calibration`` (unit-range tiles) the
    analysis graph's middle convolutions run in int8 (:mod:`shared.nn.quantise`)."""
    from fool.shared.nn.codec import FoolCodec
    from fool.shared.nn.quantise import CALIBRATION_METHOD, INT8_NODES, quantise_analysis

    model = FoolCodec.load(files.weights)
    graph = OnboardGraph(model).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "analysis.onnx"
    hyper_path = out_dir / "hyper_analysis.onnx"
    precision: dict = {"default": "float32"}
    if int8_calibration is None:
        _export(graph, torch.zeros(1, model.config.channels, 128, 128), onnx_path, ["x"], ["y", "z"])
    else:
        float_path = out_dir / "analysis.float.onnx"
        try:
            _export(graph, torch.zeros(1, model.config.channels, 128, 128), float_path, ["x"], ["y", "z"])
            quantise_analysis(float_path, onnx_path, int8_calibration)
        finally:
            float_path.unlink(missing_ok=True)
        precision |= {
            "int8": list(INT8_NODES),
            "calibration": f"{CALIBRATION_METHOD}, {len(int8_calibration)} tiles of 128 px",
        }
    _export(model.h_a.eval(), torch.zeros(1, model.config.m, 8, 8), hyper_path, ["y"], ["z"])
    tables = out_dir / files.tables.name
    shutil.copyfile(files.tables, tables)
    codec = LatentCodec.load(tables)
    manifest = {
        "model_id": codec.model_id,
        "model_name": codec.name,
        "weights_sha256": codec.weights_sha256,
        "opset": OPSET,
        "analysis": onnx_path.name,
        "tables": tables.name,
        "analysis_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "analysis_precision": precision,
        "hyper_analysis": hyper_path.name,
        "hyper_analysis_sha256": hashlib.sha256(hyper_path.read_bytes()).hexdigest(),
        "input": {
            "name": "x",
            "layout": "NCHW",
            "dtype": "float32",
            "channels": model.config.channels,
            "multiple_of": 64,
            "range": [0.0, 1.0],
        },
        "outputs": {"y": "latent (N, M, H/16, W/16)", "z": "hyper-latent (N, Nz, H/64, W/64)"},
        "normalisation": "(v - lo) / (hi - lo) with the band's [lo, hi] from the container's scene.ranges "
        "(8-bit: 0..255; deeper integers and floats: scanned min/max); band groups of 3, single bands "
        "repeated to 3 channels (see docs/format.md)",
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def export_synthesis(files: ModelFiles, out_dir: Path, variant: Path | None = None) -> dict:
    """Write ``synthesis.onnx`` (y_hat -> x_hat in [0, 1]) and ``synthesis.json`` into ``out_dir``
    for the ground's ONNX Runtime synthesis. The manifest names the weights' SHA-256, so the
    ground uses an export only for the model a container was coded with; with ``variant`` (a
    ``<name>.<variant>.pt`` of :func:`shared.nn.release.release_synthesis`) it exports that
    synthesis instead, and names the variant file's SHA-256 too."""
    from fool.shared.latent_codec import file_sha256
    from fool.shared.nn.codec import FoolCodec

    weights_sha256 = file_sha256(files.weights)
    if variant is None:
        model = FoolCodec.load(files.weights)
    else:
        model = FoolCodec.load_synthesis(variant, weights_sha256)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "synthesis.onnx"
    _export(SynthesisGraph(model).eval(), torch.zeros(1, model.config.m, 8, 8), onnx_path, ["y"], ["x_hat"])
    manifest = {
        "model_name": files.name,
        "weights_sha256": weights_sha256,
        "opset": OPSET,
        "export_version": SYNTHESIS_EXPORT_VERSION,
        "synthesis": onnx_path.name,
        "synthesis_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "input": {"name": "y", "layout": "NCHW", "dtype": "float32", "channels": model.config.m},
        "output": {"name": "x_hat", "layout": "NCHW", "range": [0.0, 1.0], "scale": 16},
    }
    if variant is not None:
        manifest |= {"variant": variant.name, "variant_sha256": file_sha256(variant)}
    (out_dir / "synthesis.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest

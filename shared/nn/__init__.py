"""PyTorch definitions of FOOL codecs (training, export and the PyTorch runtimes).

Kept apart from the rest of :mod:`shared` so that the flight path, which runs on
onnxruntime + numpy, never imports torch.
"""

from fool.shared.nn import compressai_lean  # noqa: F401  (before any compressai import: see that module)

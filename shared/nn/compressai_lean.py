"""Import compressai's layers and entropy models without its package ``__init__``.

``compressai/__init__.py`` imports every subpackage, and ``compressai.datasets`` pulls in
torch_geometric and torch._dynamo: most of the ground decoder's start-up went there, for
modules FOOL never uses. :func:`install` registers a bare ``compressai`` package (the same
search path, the entropy-coder switches its ``__init__`` defines), so that
``compressai.layers`` and ``compressai.entropy_models`` load on their own. It does nothing when
compressai is already imported.
"""

from __future__ import annotations

import importlib.util
import sys
import types

_CODERS = ["ans"]
_STATE = {"coder": "ans"}


def set_entropy_coder(entropy_coder: str) -> None:
    if entropy_coder not in _CODERS:
        raise ValueError(f'Invalid entropy coder "{entropy_coder}", choose from ({", ".join(_CODERS)}).')
    _STATE["coder"] = entropy_coder


def get_entropy_coder() -> str:
    return _STATE["coder"]


def available_entropy_coders() -> list[str]:
    return list(_CODERS)


def install() -> None:
    if "compressai" in sys.modules:
        return
    spec = importlib.util.find_spec("compressai")
    if spec is None or spec.submodule_search_locations is None:
        return  # not installed: the import that follows says so
    pkg = types.ModuleType("compressai")
    pkg.__spec__, pkg.__path__, pkg.__file__ = spec, list(spec.submodule_search_locations), spec.origin
    pkg.__package__ = "compressai"
    vars(pkg).update(  # the switches compressai's __init__ defines; a module's attributes are dynamic
        set_entropy_coder=set_entropy_coder,
        get_entropy_coder=get_entropy_coder,
        available_entropy_coders=available_entropy_coders,
        _entropy_coder="ans",
        _available_entropy_coders=_CODERS,
    )
    sys.modules["compressai"] = pkg


install()

"""Writes the golden containers of the current version: `python -m tests.golden.make VERSION`.

Each golden file is the same tiny synthetic scene (tests/data.py) coded at quality 2 by the same model;
expected.json holds each tile's decoded-latent SHA-256, which every later decoder must
reproduce bit for bit. Files of older versions are kept as they were written.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

from fool.ground.decode import decode_latents
from fool.onboard.compress import compress_scene
from fool.shared import zoo
from fool.shared.format import Container
from fool.shared.latent_codec import LatentCodec

from tests import data

HERE = Path(__file__).parent
SCENES = {
    "rgb_uint8": {"height": 100, "width": 140},
    "masked_uint16": {"dtype": "uint16", "bands": 2, "bits": 12, "internal_mask": True, "height": 90, "width": 130},
}
#: the models the first golden files were coded with: every version holds the same symbols
MODELS = {"rgb_uint8": "fool-m", "masked_uint16": "fool-m16"}


def tile_hashes(path: Path) -> dict:
    with Container.open(path) as c:
        codec = LatentCodec.load(zoo.find(c.scene.model_name).tables)
        tiles = {
            f"{e.row},{e.col}": hashlib.sha256(
                decode_latents(e, c.payload(e), c.scene, codec).y_hat.tobytes()
            ).hexdigest()
            for e in c.tiles
        }
        return {"version": c.version, "bytes": c.size, "model": c.scene.model_name, "tiles": tiles}


def main(version: int) -> None:
    expected_path = HERE / "expected.json"
    expected = json.loads(expected_path.read_text()) if expected_path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in SCENES.items():
            src = data.write(Path(tmp) / f"{name}.tif", **kw)
            dst = HERE / f"v{version}_{name}.fool"
            compress_scene(src, dst, quality=2.0, model=MODELS[name])
            expected[dst.name] = tile_hashes(dst)
    expected_path.write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(int(sys.argv[1]))

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from tests import data

warnings.filterwarnings("ignore", category=FutureWarning)

DATA = Path(os.environ.get("FOOL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def scenes(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scenes")
    return {name: data.write(folder / f"{name}.tif", **kw) for name, kw in data.SCENES.items()}


@pytest.fixture(scope="session")
def team_data() -> Path:
    if not (DATA / "scenes").is_dir():
        pytest.skip(f"team data not found at {DATA} (set FOOL_DATA)")
    return DATA

"""An installed paperdigest (not a checkout) still finds its templates and its model's vocabulary."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_every_template(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("paperdigest-*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("digest/templates/")}
    expected = {f"digest/templates/{p.name}" for p in (ROOT / "templates").iterdir() if p.is_file()}
    assert expected and shipped == expected
    # The sentence model's WordPiece vocabulary: without it, embeddings fail on an installed copy.
    assert "digest/data/minilm-vocab.txt" in zipfile.ZipFile(wheel).namelist()

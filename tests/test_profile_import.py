"""`digest profile import`: a reference manager's export becomes a profile's liked papers."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from freezegun import freeze_time
from helpers import FIXTURES, MONDAY, write_config

from digest.cli import cli
from digest.store import Store

BIB = FIXTURES / "library" / "zotero_export_synthetic.bib"


def digest(path: Path, *args: str) -> tuple[int, str, str]:
    with freeze_time(MONDAY):
        result = CliRunner().invoke(cli, ["--config", str(path), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_an_import_adds_each_paper_once_and_lists_the_bad_entries(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    code, out, err = digest(path, "profile", "import", "ml", str(BIB))
    assert code == 0, err
    assert out.strip() == (
        "ml: 6 papers in zotero_export_synthetic.bib, 6 new to the profile (0 already in the"
        " store); 2 skipped"
    )
    skipped = err.strip().splitlines()
    assert len(skipped) == 2 and all(line.startswith("skipped: entry ") for line in skipped)
    with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as store:
        keys = store.library(["ml"])["ml"]
        assert "2411.01234" in keys and "1706.03762" in keys
        assert store.feedback(["ml"])["ml"].more == tuple(keys)  # they count as "more" marks
        assert store.count_papers() == 0, "an imported paper is never a new paper of a source"
    code, out, _ = digest(path, "profile", "import", "ml", str(BIB))
    assert code == 0 and ", 0 new to the profile" in out


def test_an_imported_paper_no_source_listed_drives_the_ranking_by_its_own_text(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path)
    assert digest(path, "ingest")[0] == 0
    library = tmp_path / "mine.json"  # CSL-JSON, as Zotero exports it
    library.write_text(
        json.dumps(
            [
                {
                    "id": "agents",
                    "title": "Tool-using language model agents that plan with reinforcement learning",
                    "abstract": "We train language model agents with reinforcement learning to plan,"
                    " call tools and reason over long horizons.",
                    "author": [{"family": "Doe", "given": "Jane"}],
                }
            ]
        ),
        encoding="utf-8",
    )
    code, out, err = digest(path, "profile", "import", "ml", str(library))
    assert code == 0, err
    assert "1 papers in mine.json, 1 new to the profile (0 already in the store)" in out
    code, out, err = digest(path, "rank", "ml", "--date", "2026-11-23", "--json")
    assert code == 0, err
    picks = [json.loads(line) for line in out.splitlines()]
    named = [p["similar_to"] for p in picks if p["similar_to"]]
    assert named and set(named) == {
        "Tool-using language model agents that plan with reinforcement learning"
    }


def test_a_file_that_is_no_library_or_missing_is_one_line_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path)
    binary = tmp_path / "photo.bib"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10)
    code, out, err = digest(path, "profile", "import", "ml", str(binary))
    assert code != 0 and out == ""
    assert err.startswith("error: photo.bib: ") and len(err.strip().splitlines()) == 1
    code, _, err = digest(path, "profile", "import", "ml", str(tmp_path / "absent.ris"))
    assert code != 0 and "absent.ris: cannot read it" in err
    code, _, err = digest(path, "profile", "import", "nobody", str(BIB))
    assert code == 2 and "no profile named 'nobody'" in err
    with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as store:
        assert store.library() == {}

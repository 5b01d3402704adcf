"""A big config.toml is checked once and read back from the user's cache while it is unchanged
(digest.configcache): every way it could have changed makes the next command check it again."""

from pathlib import Path

import pytest

from digest import config as config_module
from digest import configcache
from digest.config import load_config, load_config_head
from digest.errors import ConfigError

HEAD = """
[fetch]
contact = "me@example.org"
[sources.local]
kind = "feed"
path = "listing.xml"
[sources.dated]
kind = "feed"
path = "listings/{date}.xml"
"""


def profiles(count: int, keyword: str = "graphs") -> str:
    return "".join(
        f'[profiles.p{n:05d}]\nkeywords = ["{keyword}", "topic {n}"]\nemail = ["r{n}@example.org"]\n'
        for n in range(count)
    )


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of the test's own; configs from 1 kB on are kept (not 256 kB)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    monkeypatch.setattr(configcache, "CACHE_FROM_BYTES", 1024)
    return folder / "paperdigest"


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    (tmp_path / "listing.xml").write_text("<rss/>")
    (tmp_path / "listings").mkdir()
    path = tmp_path / "config.toml"
    path.write_text(HEAD + profiles(50))
    return path


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Each time config.toml is really read and checked (not taken from the cache)."""
    seen: list[Path] = []
    real = config_module._Reader.config

    def counting(self: config_module._Reader, raw: dict, path: Path) -> config_module.Config:
        seen.append(path)
        return real(self, raw, path)

    monkeypatch.setattr(config_module._Reader, "config", counting)
    return seen


def test_an_unchanged_big_config_is_checked_once_and_read_back_alike(
    cache: Path, config_path: Path, checks: list[Path]
) -> None:
    first = load_config(config_path)
    assert [file.name for file in cache.iterdir()] == [next(cache.iterdir()).name]
    again = load_config(config_path)
    assert checks == [config_path]
    assert again == first
    assert len(again.profiles) == 50
    assert again.profiles[7].keywords == ("graphs", "topic 7")


def test_a_small_config_is_never_kept(
    cache: Path, config_path: Path, checks: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(configcache, "CACHE_FROM_BYTES", 256 * 1024)
    load_config(config_path)
    load_config(config_path)
    assert len(checks) == 2
    assert not cache.exists()


def test_an_edit_is_read(cache: Path, config_path: Path, checks: list[Path]) -> None:
    load_config(config_path)
    config_path.write_text(HEAD + profiles(50, keyword="lattices"))
    edited = load_config(config_path)
    assert len(checks) == 2
    assert edited.profiles[0].keywords == ("lattices", "topic 0")


def test_a_mistake_made_after_it_was_kept_is_still_named(
    cache: Path, config_path: Path
) -> None:
    load_config(config_path)
    config_path.write_text(HEAD + profiles(50) + "[profiles.p00001]\n")
    with pytest.raises(ConfigError, match="config.toml"):
        load_config(config_path)


def test_a_named_file_gone_since_is_found_by_the_next_command(
    cache: Path, config_path: Path, tmp_path: Path
) -> None:
    load_config(config_path)
    (tmp_path / "listing.xml").unlink()
    with pytest.raises(ConfigError, match=r"sources\.local\.path: file not found"):
        load_config(config_path)


def test_a_dated_sources_folder_gone_since_is_found_too(
    cache: Path, config_path: Path, tmp_path: Path
) -> None:
    load_config(config_path)
    (tmp_path / "listings").rmdir()
    with pytest.raises(ConfigError, match=r"sources\.dated\.path: folder not found"):
        load_config(config_path)


def test_the_same_bytes_in_another_folder_are_checked_there(
    cache: Path, config_path: Path, tmp_path: Path, checks: list[Path]
) -> None:
    """Relative paths start at the config's folder: a copy elsewhere is another config."""
    first = load_config(config_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "listing.xml").write_text("<rss/>")
    (other / "listings").mkdir()
    (other / "config.toml").write_bytes(config_path.read_bytes())
    copied = load_config(other / "config.toml")
    assert len(checks) == 2
    assert copied.data_dir == other / "data" != first.data_dir


def test_another_home_is_checked_again(
    cache: Path, config_path: Path, checks: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    load_config(config_path)
    monkeypatch.setenv("HOME", "/somewhere/else")
    load_config(config_path)
    assert len(checks) == 2


@pytest.mark.parametrize("damage", ["garbage", "empty", "group-writable", "symlink"])
def test_a_damaged_or_untrusted_cache_file_is_passed_over(
    cache: Path, config_path: Path, checks: list[Path], damage: str, tmp_path: Path
) -> None:
    first = load_config(config_path)
    (kept,) = cache.iterdir()
    if damage == "garbage":
        kept.write_bytes(b"\x80\x05not a pickle at all")
    elif damage == "empty":
        kept.write_bytes(b"")
    elif damage == "group-writable":
        kept.chmod(0o660)
    else:  # a link to a file someone else could have written
        target = tmp_path / "planted.pickle"
        target.write_bytes(kept.read_bytes())
        kept.unlink()
        kept.symlink_to(target)
    assert load_config(config_path) == first
    assert len(checks) == 2


def test_a_cache_folder_that_cannot_be_written_costs_nothing_but_time(
    tmp_path: Path, config_path: Path, checks: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    monkeypatch.setattr(configcache, "CACHE_FROM_BYTES", 1024)
    assert load_config(config_path) == load_config(config_path)
    assert len(checks) == 2


def test_only_the_newest_few_configs_stay_kept(
    cache: Path, tmp_path: Path, checks: list[Path]
) -> None:
    paths = []
    for n in range(configcache.KEPT + 2):
        folder = tmp_path / f"c{n}"
        folder.mkdir()
        (folder / "listing.xml").write_text("<rss/>")
        (folder / "listings").mkdir()
        (folder / "config.toml").write_text(HEAD + profiles(50))
        paths.append(folder / "config.toml")
        load_config(folder / "config.toml")
    assert len(list(cache.iterdir())) == configcache.KEPT
    load_config(paths[-1])  # the newest is still kept
    assert len(checks) == configcache.KEPT + 2


def test_a_kept_config_reads_back_its_head_without_the_profiles_and_then_the_whole(
    cache: Path, config_path: Path, checks: list[Path]
) -> None:
    first = load_config(config_path)
    head, whole = load_config_head(config_path)
    assert checks == [config_path]  # both read back, neither checked again
    assert head.profiles == () and head.sources == first.sources and head.fetch == first.fetch
    assert whole() == first
    assert whole() is whole()  # the profiles are read once
    # Not kept (yet): the whole config, whichever is asked for.
    config_path.write_text(HEAD + profiles(51))
    head, whole = load_config_head(config_path)
    assert len(head.profiles) == 51 and whole() is head

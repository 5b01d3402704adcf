import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time

from digest.config import DeliveryConfig, cron_problem, load_config
from digest.errors import ConfigError
from tests.helpers import FIXTURES, MONDAY, digest, write_config

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = """
[fetch]
contact = "me@example.org"
[sources.arxiv-lg]
kind = "arxiv-rss"
url = "https://rss.arxiv.org/atom/cs.LG"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_for(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "config.toml") + ": ")
    return message.split(": ", 1)[1]


def test_the_example_config_loads(tmp_path: Path) -> None:
    config = load_config(ROOT / "config.example.toml")
    assert [s.name for s in config.sources] == ["hf-daily", "arxiv-lg", "arxiv-cl-new", "biorxiv"]
    assert [s.enabled for s in config.sources] == [True, True, False, False]
    assert config.data_dir == ROOT / "data"
    assert config.store_path == ROOT / "data" / "paperdigest.sqlite3"
    assert config.fetch.contact == "you@example.org"
    assert config.profiles[0].timezone == "Europe/Berlin"


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("", encoding="utf-8")
    config = load_config(
        write(
            tmp_path,
            'data_dir = "store"\n'
            + MINIMAL
            + '[sources.local]\nkind = "hf-text"\npath = "x.txt"\n',
        )
    )
    assert config.data_dir == tmp_path / "store"
    assert config.feeds_dir == tmp_path / "store" / "feeds"
    assert config.source("local").urls == ((tmp_path / "x.txt").as_uri(),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MINIMAL.replace("https://rss.arxiv.org/atom/cs.LG", "ftp://x"),
            "sources.arxiv-lg.url: expected an http(s) URL, got 'ftp://x'",
        ),
        (
            MINIMAL + "colour = 1\n",
            "sources.arxiv-lg.colour: unknown key (expected one of: enabled, kind, path, paths, schedule, url, urls)",
        ),
        ("colour = 1\n" + MINIMAL, "colour: unknown key"),
        (
            MINIMAL.replace('contact = "me@example.org"', 'contact = "me@example.org"\ndeadline = 0'),
            "fetch.deadline: expected a number from 1 to 3600, got 0",
        ),
        (
            MINIMAL.replace('"arxiv-rss"', '"gopher"'),
            "sources.arxiv-lg.kind: unknown source kind 'gopher'",
        ),
        (
            MINIMAL.replace('"arxiv-rss"', "3"),
            "sources.arxiv-lg.kind: expected a non-empty string, got int 3",
        ),
        (
            MINIMAL + 'schedule = "61 * * * *"\n',
            "sources.arxiv-lg.schedule: expected a cron expression like '0 1 * * 1-5': '61' is not a valid minute (0-59)",
        ),
        (
            MINIMAL + "enabled = 'yes'\n",
            "sources.arxiv-lg.enabled: expected true or false, got the string 'yes'",
        ),
        (
            MINIMAL + '[profiles.me]\ntimezone = "Mars/Olympus"\n',
            "profiles.me.timezone: expected an IANA time zone like 'Europe/Berlin', got 'Mars/Olympus'",
        ),
        (
            MINIMAL + '[profiles.me]\nemail = ["not-an-address"]\n',
            "profiles.me.email[0]: expected an email address, got 'not-an-address'",
        ),
        (
            MINIMAL.replace('contact = "me@example.org"', 'contact = "me"'),
            "fetch.contact: expected an email address or http(s) URL, got 'me'",
        ),
        (MINIMAL.replace('contact = "me@example.org"', ""), "fetch.contact: missing"),
        (MINIMAL.replace('[fetch]\ncontact = "me@example.org"', ""), "fetch: missing"),
        ("[fetch]\ncontact = 'a@b.org'\n", "sources: expected at least one [sources.NAME] table"),
        (
            MINIMAL + "[fetch.host_intervals]\n'arxiv.org' = -1\n",
            "fetch.host_intervals.arxiv.org: expected a number from 0 to 3600, got -1",
        ),
        (
            MINIMAL + 'urls = ["https://a.org"]\n',
            "sources.arxiv-lg: expected exactly one of url, urls, path or paths",
        ),
        ("sources = 3\n[fetch]\ncontact = 'a@b.org'\n", "sources: expected a table, got int 3"),
    ],
)
def test_every_mistake_names_the_key_and_what_was_expected(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert error_for(tmp_path, text).startswith(expected)


def test_a_missing_file_and_broken_toml_are_reported_with_the_file(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"config.toml: file not found \(copy config.example.toml to start\)"
    ):
        load_config(tmp_path / "config.toml")
    assert error_for(tmp_path, "[fetch\n").startswith("not valid TOML")


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("30 1 * * 1-5", None),
        ("*/15 0-6,20-23 1 jan-mar mon", None),
        ("0 0 * * 7", None),
        ("* * * *", "expected 5 fields, got 4"),
        ("0 24 * * *", "'24' is not a valid hour (0-23)"),
        ("0 0 * * 5-1", "empty range '5-1' in the day of week field"),
        ("*/0 * * * *", "bad step '0' in the minute field"),
        ("0 0 * foo *", "'foo' is not a valid month (1-12)"),
    ],
)
def test_cron_expressions_are_checked(expression: str, problem: str | None) -> None:
    assert cron_problem(expression) == problem


def test_a_full_profile_loads_with_defaults_filled_in(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            MINIMAL
            + """
[profiles.ada]
email = ["ada@example.org"]
keywords = ['"diffusion model"', "transformer", "Transformer"]
authors = ["Yann LeCun"]
examples = ["2401.00001", "Attention Is All You Need"]
negative_keywords = ["blockchain"]
exclude_categories = ["cs.CR"]
max_items = 15
min_score = 0.5
frequency = "Weekly"
weekday = "friday"
community_signal = false
[profiles.bare]
""",
        )
    )
    ada, bare = config.profiles
    assert ada.keywords == ("diffusion model", "transformer"), "quotes dropped, repeats once"
    assert (ada.authors, ada.examples) == (
        ("Yann LeCun",),
        ("2401.00001", "Attention Is All You Need"),
    )
    assert (ada.negative_keywords, ada.exclude_categories) == (("blockchain",), ("cs.CR",))
    assert (ada.max_items, ada.min_score, ada.frequency, ada.weekday) == (
        15,
        0.5,
        "weekly",
        "friday",
    )
    assert ada.community_signal is False
    assert (bare.max_items, bare.frequency, bare.timezone, bare.community_signal) == (
        20,
        "daily",
        "UTC",
        True,
    )


def test_duplicate_keywords_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load_config(write(tmp_path, MINIMAL + '[profiles.me]\nkeywords = ["RL", "rl"]\n'))
    assert "profiles.me.keywords: 'rl' is listed twice; using it once" in caplog.text


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (
            'frequency = "hourly"',
            "profiles.me.frequency: expected one of daily, weekdays, weekly, got 'hourly'",
        ),
        ('weekday = "someday"', "profiles.me.weekday: expected one of monday, tuesday"),
        ("max_items = 0", "profiles.me.max_items: expected a number from 1 to 200, got 0"),
        ("min_score = -1", "profiles.me.min_score: expected a number from 0 to 1000, got -1"),
        ("keywords = [1]", "profiles.me.keywords[0]: expected a non-empty string, got int 1"),
        ('pinned = ["x"]', "profiles.me.pinned: unknown key"),
    ],
)
def test_profile_mistakes_name_the_key(tmp_path: Path, profile: str, expected: str) -> None:
    assert error_for(tmp_path, MINIMAL + f"[profiles.me]\n{profile}\n").startswith(expected)


def test_output_email_and_smtp_load_with_defaults(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            MINIMAL
            + """
[output]
base_url = "https://digest.example.org/"
feed_days = 3
[email]
from = "Lab digest <digest@lab.example.org>"
send_empty = false
[smtp]
host = "smtp.example.org"
username = "digest"
password_file = "secrets/smtp"
""",
        )
    )
    assert config.output.base_url == "https://digest.example.org"  # no trailing slash
    assert config.output.feed_days == 3 and config.output.feed_max_items == 200
    assert config.feeds_dir == tmp_path / "data" / "feeds"
    assert config.email.sender == "Lab digest <digest@lab.example.org>"
    assert config.email.send_empty is False
    assert config.smtp is not None
    assert (config.smtp.port, config.smtp.security) == (587, "starttls")
    assert config.smtp.password_file == tmp_path / "secrets" / "smtp"
    assert load_config(write(tmp_path, MINIMAL)).smtp is None  # no [smtp]: the Maildir outbox


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('[smtp]\nhost = "h"\nusername = "u"', "smtp: a username needs password_env"),
        ('[smtp]\nhost = "h"\npassword = "hunter2"', "smtp.password: unknown key"),
        ('[smtp]\nhost = "h"\nsecurity = "ssl"', "smtp.security: expected one of starttls, tls, none"),
        ('[smtp]\nport = 25', "smtp.host: missing"),
        ('[email]\nfrom = "a@b.org\\nBcc: x@y.org"', "email.from: expected one line"),
        ('[email]\nfrom = "not an address"', "email.from: expected an email address"),
        ('[output]\nbase_url = "ftp://x"', "output.base_url: expected an http(s) URL"),
        ("[output]\nfeed_days = 0", "output.feed_days: expected a number from 1 to 90"),
        ("[delivery]\ndeadline = 0", "delivery.deadline: expected a number from 1 to 1440, got 0"),
        (
            "[delivery]\nclaim_lease = 1441",
            "delivery.claim_lease: expected a number from 1 to 1440, got 1441",
        ),
        (
            "[delivery]\nuncertain_quarantine = -1",
            "delivery.uncertain_quarantine: expected a number from 0 to 720, got -1",
        ),
        (
            "[delivery]\nmail_deadline = 10",
            "delivery.mail_deadline: unknown key (expected one of: claim_lease, deadline, "
            "uncertain_quarantine)",
        ),
    ],
)
def test_delivery_mistakes_name_the_key(tmp_path: Path, extra: str, expected: str) -> None:
    assert error_for(tmp_path, MINIMAL + extra).startswith(expected)


def test_the_delivery_table_is_read(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            MINIMAL + "[delivery]\nclaim_lease = 5\nuncertain_quarantine = 0.5\ndeadline = 10\n",
        )
    )
    assert config.delivery == DeliveryConfig(
        claim_lease=timedelta(minutes=5),
        uncertain_quarantine=timedelta(minutes=30),
        deadline=timedelta(minutes=10),
    )
    assert load_config(write(tmp_path, MINIMAL)).delivery == DeliveryConfig(
        claim_lease=timedelta(minutes=15),
        uncertain_quarantine=timedelta(hours=24),
        deadline=timedelta(minutes=40),
    )


@pytest.mark.parametrize(
    ("key", "new"),
    [
        ("claim_lease = 5", "claim_lease"),
        ("uncertain_quarantine = 12", "uncertain_quarantine"),
        ("mail_deadline = 10", "deadline"),
    ],
)
def test_an_email_key_that_moved_to_delivery_says_so(tmp_path: Path, key: str, new: str) -> None:
    """[email] claim_lease, uncertain_quarantine and mail_deadline were never released."""
    name = key.split(" ")[0]
    assert error_for(tmp_path, MINIMAL + f"[email]\n{key}\n") == (
        f"email.{name}: unknown key (expected one of: from, reply_to, send_empty, thumbnails, "
        f"unsubscribe_mailto); it moved to [delivery] as {new}"
    )
    config = write_config(tmp_path, profiles="", extra=key)  # the CLI: exit 2, one line
    result = digest(config, "status")
    assert result.exit_code == 2
    assert result.output == f"error: {config}: email.{name}: unknown key (" + (
        "expected one of: from, reply_to, send_empty, thumbnails, unsubscribe_mailto); "
        f"it moved to [delivery] as {new}\n"
    )


def test_log_format_and_level(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + '[log]\nformat = "json"\nlevel = "warning"\n'))
    assert (config.log.format, config.log.level) == ("json", "warning")
    assert error_for(tmp_path, MINIMAL + '[log]\nformat = "xml"\n').startswith("log.format: expected")


def test_deliver_at_is_a_time_of_day(tmp_path: Path) -> None:
    profile = '[profiles.me]\ndeliver_at = "7:30"\n'
    assert load_config(write(tmp_path, MINIMAL + profile)).profiles[0].deliver_at == "07:30"
    bad = '[profiles.me]\ndeliver_at = "25:00"\n'
    assert error_for(tmp_path, MINIMAL + bad).startswith("profiles.me.deliver_at: expected a time")


def test_the_container_config_in_deploy_loads() -> None:
    config = load_config(ROOT / "deploy" / "config.container.toml")
    assert config.data_dir == Path("/data")
    assert config.smtp is not None and config.smtp.password_file == Path("/run/secrets/smtp_password")


# -- a string for a list, an unknown {placeholder}, a source file that is not there (issue 14) -----


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'keywords = "agent, diffusion"',
            'profiles.me.keywords: expected a list of strings like ["agent", "diffusion"], '
            'got the string "agent, diffusion"',
        ),
        (
            'email = "ada@example.org"',
            'profiles.me.email: expected a list of strings like ["ada@example.org"], '
            'got the string "ada@example.org"',
        ),
        (
            'categories = "cs.LG,cs.CL"',
            'profiles.me.categories: expected a list of strings like ["cs.LG", "cs.CL"]',
        ),
        ('negative_keywords = "crypto"', 'profiles.me.negative_keywords: expected a list of'),
        ('exclude_categories = "cs.CR"', 'profiles.me.exclude_categories: expected a list of'),
        # Names ("Family, Given") and titles hold commas: not split in the example.
        (
            'authors = "LeCun, Yann"',
            'profiles.me.authors: expected a list of strings like ["LeCun, Yann"], '
            'got the string "LeCun, Yann"',
        ),
        (
            'examples = "Attention Is All You Need"',
            'profiles.me.examples: expected a list of strings like ["Attention Is All You Need"]',
        ),
        ('keywords = ""', 'profiles.me.keywords: expected a list of strings like [], got the string ""'),
    ],
)
def test_a_string_where_a_list_is_expected_is_refused(
    tmp_path: Path, line: str, expected: str
) -> None:
    message = error_for(tmp_path, MINIMAL + f"[profiles.me]\n{line}\n")
    assert message.startswith(expected)
    assert "\n" not in message


@pytest.mark.parametrize("key", ["urls", "paths"])
def test_a_string_for_a_sources_urls_or_paths_is_refused(tmp_path: Path, key: str) -> None:
    text = MINIMAL.replace('url = "https://rss.arxiv.org/atom/cs.LG"', f'{key} = "a.xml"')
    assert error_for(tmp_path, text) == (
        f'sources.arxiv-lg.{key}: expected a list of strings like ["a.xml"], got the string "a.xml"'
    )


def test_a_list_is_still_a_list(tmp_path: Path) -> None:
    profile = '[profiles.me]\nkeywords = ["agent", "diffusion"]\nemail = ["a@example.org"]\n'
    (me,) = load_config(write(tmp_path, MINIMAL + profile)).profiles
    assert (me.keywords, me.emails) == (("agent", "diffusion"), ("a@example.org",))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            'url = "https://huggingface.co/api/daily_papers?date={data}"',
            "sources.s.url: unknown placeholder {data} (supported: {date}, the run's date in UTC as "
            "YYYY-MM-DD; a literal brace is written %7B or %7D)",
        ),
        (
            'urls = ["https://a.org/{date}", "https://b.org/{Date}"]',
            "sources.s.urls[1]: unknown placeholder {Date} (supported: {date}",
        ),
        (
            'url = "https://a.org/{date:%Y%m%d}"',
            "sources.s.url: unknown placeholder {date:%Y%m%d} (supported: {date}",
        ),
        (
            'url = "https://a.org/{{data}}"',  # no {{ escape: the braces inside still name one
            "sources.s.url: unknown placeholder {data}",
        ),
        (
            'path = "listings/{day}.xml"',
            "sources.s.path: unknown placeholder {day} (supported: {date}, the run's date in UTC "
            "as YYYY-MM-DD)",
        ),
        ('paths = ["a.xml", "{when}.xml"]', "sources.s.paths[1]: unknown placeholder {when}"),
    ],
)
def test_an_unknown_placeholder_names_the_key_and_the_supported_ones(
    tmp_path: Path, source: str, expected: str
) -> None:
    (tmp_path / "a.xml").write_text("", encoding="utf-8")
    (tmp_path / "listings").mkdir()
    text = f'{MINIMAL}[sources.s]\nkind = "feed"\n{source}\n'
    assert error_for(tmp_path, text).startswith(expected)


def test_date_and_braces_that_name_nothing_are_kept(tmp_path: Path) -> None:
    urls = [
        "https://api.biorxiv.org/details/biorxiv/{date}/{date}/0",
        'https://a.org/q?filter={"a":1}&x={}&n={1}',  # braces around no name are not placeholders
    ]
    listed = ", ".join(f"'{u}'" for u in urls)
    config = load_config(write(tmp_path, f'{MINIMAL}[sources.s]\nkind = "feed"\nurls = [{listed}]\n'))
    assert config.source("s").urls == tuple(urls)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            'path = "missing/feed.xml"',
            "sources.s.path: file not found: {tmp}/missing/feed.xml "
            "(a relative path starts at the config file's folder)",
        ),
        ('path = "{tmp}/gone.xml"', "sources.s.path: file not found: {tmp}/gone.xml"),
        (
            'paths = ["here.xml", "../there.xml"]',
            "sources.s.paths[1]: file not found: {parent}/there.xml "
            "(a relative path starts at the config file's folder)",
        ),
        ('url = "file://{tmp}/gone%20too.xml"', "sources.s.url: file not found: {tmp}/gone too.xml"),
        ('path = "."', "sources.s.path: expected a file, got the folder {tmp}"),
        (
            'path = "listings/{date}.xml"',
            "sources.s.path: folder not found: {tmp}/listings "
            "(a relative path starts at the config file's folder)",
        ),
    ],
)
def test_a_source_file_that_is_not_there_is_a_config_error(
    tmp_path: Path, source: str, expected: str
) -> None:
    (tmp_path / "here.xml").write_text("", encoding="utf-8")
    source = source.replace("{tmp}", str(tmp_path))
    message = error_for(tmp_path, f'{MINIMAL}[sources.s]\nkind = "feed"\n{source}\n')
    assert message == expected.format(tmp=tmp_path, parent=tmp_path.parent)


def test_a_disabled_or_dated_source_file_may_be_missing_now(tmp_path: Path) -> None:
    (tmp_path / "listings").mkdir()
    sources = (
        '[sources.later]\nkind = "feed"\npath = "later.xml"\nenabled = false\n'
        '[sources.dated]\nkind = "feed"\npath = "listings/{date}.xml"\n'
    )
    config = load_config(write(tmp_path, MINIMAL + sources))
    assert config.source("later").urls == ((tmp_path / "later.xml").as_uri(),)
    # "{date}" stays for the run to fill in (as_uri() alone would give %7Bdate%7D).
    assert config.source("dated").urls == (f"{(tmp_path / 'listings').as_uri()}/{{date}}.xml",)


def test_a_dated_path_reads_the_days_file(tmp_path: Path) -> None:
    listings = tmp_path / "listings"
    listings.mkdir()
    shutil.copy(sorted((FIXTURES / "hf").glob("0*.txt"))[0], listings / "2026-11-23.txt")
    sources = '[sources.daily]\nkind = "hf-text"\npath = "listings/{date}.txt"\n'
    config = write_config(tmp_path, sources, profiles="")
    with freeze_time(MONDAY):  # 2026-11-23 in UTC
        result = digest(config, "ingest")
    assert result.exit_code == 0, result.output
    assert re.search(r"^daily\s+ok\s+\d+\s+81\s+81\b", result.output, re.MULTILINE), result.output
    with freeze_time(MONDAY.replace(day=24)):
        tomorrow = digest(config, "ingest")
    assert tomorrow.exit_code == 1 and "2026-11-24.txt" in tomorrow.output


@pytest.mark.parametrize("command", ["ingest", "status", "subscribers"])
@pytest.mark.parametrize(
    ("sources", "profiles", "expected"),
    [
        (
            f'[sources.a]\nkind = "hf-daily"\npath = "{FIXTURES}/hf/hf_api_daily_papers_2026-06-12_30items.json"\n',
            '[profiles.ml]\nkeywords = "agent, diffusion"\n',
            'profiles.ml.keywords: expected a list of strings like ["agent", "diffusion"], '
            'got the string "agent, diffusion"',
        ),
        (
            '[sources.hf]\nkind = "hf-daily"\n'
            'url = "https://huggingface.co/api/daily_papers?date={data}"\n',
            "",
            "sources.hf.url: unknown placeholder {data} (supported: {date}, the run's date in UTC "
            "as YYYY-MM-DD; a literal brace is written %7B or %7D)",
        ),
        (
            '[sources.local]\nkind = "arxiv-rss"\npath = "feeds/cs.LG.xml"\n',
            "",
            "sources.local.path: file not found: {tmp}/feeds/cs.LG.xml "
            "(a relative path starts at the config file's folder)",
        ),
    ],
    ids=["string-for-list", "unknown-placeholder", "missing-path"],
)
def test_the_cli_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, command: str, sources: str, profiles: str, expected: str
) -> None:
    config = write_config(tmp_path, sources, profiles=profiles)
    result = digest(config, command)
    assert result.exit_code == 2
    assert result.output == f"error: {config}: {expected.replace('{tmp}', str(tmp_path))}\n"


def test_a_password_is_read_from_its_variable_or_file_and_problems_never_show_it(tmp_path: Path) -> None:
    from digest.config import read_password
    from digest.errors import DeliveryError

    def read(variable: str | None, path: Path | None, environ: dict[str, str]) -> str | None:
        return read_password("smtp", "SMTP", variable, path, environ, DeliveryError)

    secret = tmp_path / "password"
    secret.write_text("s3cret\n", encoding="utf-8")
    assert read("PW", None, {"PW": "from-env"}) == "from-env"
    assert read(None, secret, {}) == "s3cret"  # the line end stripped
    assert read(None, None, {"PW": "x"}) is None  # neither named: the caller decides
    with pytest.raises(DeliveryError, match=r"^smtp\.password_env: the environment variable PW is not set \(it should hold the SMTP password\)$"):
        read("PW", None, {"PW": ""})
    with pytest.raises(DeliveryError, match="cannot read the SMTP password file: No such file"):
        read(None, tmp_path / "gone", {})
    secret.write_bytes(b"\xffs3cret")
    with pytest.raises(DeliveryError, match="password file is not UTF-8 text") as caught:
        read(None, secret, {})
    assert "s3cret" not in str(caught.value)
    secret.write_text("\n", encoding="utf-8")
    with pytest.raises(DeliveryError, match="the SMTP password file is empty"):
        read(None, secret, {})

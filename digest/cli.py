"""The `digest` command: a thin layer over the library. Every DigestError becomes one line, no traceback."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from digest import __version__
from digest.config import DEFAULT_CONFIG, Config, ProfileConfig, load_config, load_config_head
from digest.errors import ConfigError, DigestError
from digest.models import IngestReport, Paper
from digest.sources import SOURCE_KINDS
from digest.store import Store, open_store
from digest.text import one_line

EXIT_CONFIG = 2  # the conventional "usage" code, also used by click for bad options


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Context:
    def __init__(self, config_path: str, clock: Callable[[], datetime]) -> None:
        self.config_path = config_path
        self.clock = clock
        self.verbose = False

    def config(self) -> Config:
        return load_config(self.config_path)

    def config_head(self) -> tuple[Config, Callable[[], Config]]:
        """The config maybe without its profiles, and how to read them (load_config_head)."""
        return load_config_head(self.config_path)

    def service_logging(self, config: Config) -> None:
        """`run` and `schedule` log every event at the config's [log] level, in its format."""
        from digest import logs

        level = logging.DEBUG if self.verbose else getattr(logging, config.log.level.upper())
        logs.setup(config.log.format, level)


@contextmanager
def _reported_errors() -> Iterator[None]:
    try:
        yield
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except DigestError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="paperdigest")
@click.option(
    "-c",
    "--config",
    "config_path",
    envvar="PAPERDIGEST_CONFIG",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="Config file (also $PAPERDIGEST_CONFIG).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what happens, step by step.")
@click.pass_context
def cli(ctx: click.Context, config_path: str, verbose: bool) -> None:
    """paperdigest: new research papers, ranked for you, as a digest."""
    from digest import logs

    logs.setup("text", logging.INFO if verbose else logging.WARNING)
    ctx.obj = ctx.obj if isinstance(ctx.obj, _Context) else _Context(config_path, _utc_now)
    ctx.obj.config_path = config_path
    ctx.obj.verbose = verbose


@cli.command()
@click.option("-s", "--source", "only", multiple=True, help="Only this source (repeatable).")
@click.pass_obj
def ingest(obj: _Context, only: Sequence[str]) -> None:
    """Fetch every source, keep what is new, and print a table per source.

    The exit code is 1 only when every source failed; a broken source is reported and the others go on.
    """
    from digest.pipeline import ingest as run_ingest
    from digest.pipeline import make_fetcher
    from digest.progress import TerminalProgress

    with _reported_errors():
        config = obj.config()
        # Each source as it is done: the table comes only at the end.
        progress = TerminalProgress(sys.stderr, plain_lines=True)
        with open_store(config) as store, make_fetcher(config) as fetcher:
            report = run_ingest(config, store, fetcher, obj.clock, only=only, progress=progress)
    _print_report(report)
    if report.all_failed:
        sys.exit(1)


def _print_report(report: IngestReport) -> None:
    rows = [("source", "status", "fetched", "parsed", "new", "errors")]
    for run in report.sources:
        rows.append(
            (
                run.source,
                run.status,
                str(run.fetched),
                str(run.parsed),
                str(run.new),
                "1" if run.error else "0",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        click.echo("  ".join(cells).rstrip())
    total_new = sum(run.new for run in report.sources)
    papers = f"{total_new} new paper{'' if total_new == 1 else 's'}"
    sources = f"{len(report.sources)} source{'' if len(report.sources) == 1 else 's'}"
    click.echo(f"{papers} from {sources} (run {report.run_id})")
    for name in report.elsewhere:
        click.echo(f"{name}: fetched by another worker")
    for run in report.sources:
        if run.error:
            label = "error" if run.failed else "warning"
            click.echo(f"{label}: {run.source}: {run.error}", err=True)
    resolved = report.resolved
    if resolved is not None and resolved.asked:
        click.echo(f"title-only papers found on arXiv: {resolved.found} of {resolved.asked}"
                   + (f" (the arXiv API could not be asked: {resolved.error})" if resolved.error else ""))


@cli.command()
@click.option("-s", "--source", help="Only papers this source has shown.")
@click.option("--since", help="Only papers first seen on or after this date (YYYY-MM-DD).")
@click.option(
    "-t", "--text", help="Only papers whose title, abstract or authors contain this text."
)
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def papers(
    obj: _Context,
    source: str | None,
    since: str | None,
    text: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List stored papers, newest first."""
    since_at = None
    if since:
        try:
            since_at = datetime.combine(date.fromisoformat(since), datetime.min.time(), tzinfo=UTC)
        except ValueError:
            raise click.BadParameter(
                f"expected a date like 2026-11-22, got {since!r}", param_hint="--since"
            ) from None
    with _reported_errors():
        config = obj.config()
        with open_store(config) as store:
            found = store.papers(source=source, since=since_at, text=text, limit=limit)
    for paper in found:
        click.echo(_paper_json(paper) if as_json else _paper_line(paper))
    if not found and not as_json:
        click.echo("no papers match", err=True)


def _paper_line(paper: Paper) -> str:
    when = paper.first_seen.strftime("%Y-%m-%d %H:%M")
    extra = f"  [{paper.upvotes} upvotes]" if paper.upvotes else ""
    return f"{when}  {paper.key:<22}  {one_line(paper.title, 90)}  ({', '.join(paper.sources)}){extra}"


def _paper_json(paper: Paper) -> str:
    import dataclasses
    import json

    def encode(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime | date) else value

    return json.dumps(
        {k: encode(v) for k, v in dataclasses.asdict(paper).items()}, ensure_ascii=False
    )


@cli.command()
@click.argument("source", required=False)
@click.option("-n", "--limit", default=10, show_default=True, type=click.IntRange(min=1))
@click.pass_obj
def history(obj: _Context, source: str | None, limit: int) -> None:
    """Show the recent runs of every source (or of SOURCE): when, status, counts, errors."""
    with _reported_errors():
        config = obj.config()
        names = [config.source(source).name] if source else [s.name for s in config.sources]
        with open_store(config) as store:
            runs = {name: store.source_runs(name, limit) for name in names}
    for name, source_runs in runs.items():
        click.echo(f"{name}:" + ("" if source_runs else " never run"))
        for run in source_runs:
            counts = f"fetched {run.fetched}, parsed {run.parsed}, new {run.new}"
            line = (
                f"  {run.started:%Y-%m-%d %H:%M}  {run.status:<9}  {counts}  {run.duration_s:.1f} s"
            )
            click.echo(line + (f"  {one_line(run.error, 120)}" if run.error else ""))


def _profile(config: Config, store: Store, name: str) -> ProfileConfig:
    """A profile of config.toml, or a web subscriber's (named `web-...` on their manage page)."""
    from digest import subscriptions

    return subscriptions.with_subscribers(config, store).profile(name)


def _parse_day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"expected a date like 2026-11-22, got {value!r}", param_hint=option
        ) from None


@cli.command()
@click.argument("profile")
@click.option("--date", "day", help="The profile's local day to rank (default: today there).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per ranked paper.")
@click.pass_obj
def rank(obj: _Context, profile: str, day: str | None, as_json: bool) -> None:
    """Print PROFILE's ranking of one day's new papers: rank, score, title and why."""
    from digest.pipeline import local_day, rank_day

    chosen_day = _parse_day(day, "--date")
    with _reported_errors():
        config = obj.config()
        with open_store(config) as store:
            wanted = _profile(config, store, profile)
            chosen_day = chosen_day or local_day(wanted, obj.clock)
            ranking = rank_day(config, store, [wanted], chosen_day, obj.clock)[wanted.name]
    if as_json:
        import json

        for position, item in enumerate(ranking.papers, start=1):
            reasons = item.reasons
            click.echo(
                json.dumps(
                    {
                        "rank": position,
                        "score": item.score,
                        "key": item.paper.key,
                        "title": item.paper.title,
                        "url": item.paper.abs_url,
                        "keywords": reasons.keywords,
                        "authors": reasons.authors,
                        "colleagues": reasons.colleagues,
                        "liked_authors": reasons.liked_authors,
                        "categories": reasons.categories,
                        "similar_to": reasons.similar_to,
                        "similarity": reasons.similarity,
                        "upvotes": reasons.upvotes,
                        "parts": dict(reasons.parts),
                    },
                    ensure_ascii=False,
                )
            )
        return
    click.echo(
        f"{wanted.name} · {ranking.day.isoformat()} ({wanted.timezone}) · "
        f"{len(ranking.papers)} chosen of {ranking.scanned} new papers"
    )
    for position, item in enumerate(ranking.papers, start=1):
        click.echo(f"{position:>3}  {item.score:6.2f}  {one_line(item.paper.title, 100)}")
        why = item.reasons.summary()
        if why:
            click.echo(f"{'':13}{one_line(why, 150)}")
    if not ranking.papers:
        click.echo(
            "no new papers that day" if not ranking.scanned else "none scored above the threshold",
            err=True,
        )


@cli.command()
@click.argument("profile")
@click.argument("paper")
@click.argument("mark", type=click.Choice(["more", "less", "clear"]))
@click.pass_obj
def feedback(obj: _Context, profile: str, paper: str, mark: str) -> None:
    """Mark PAPER for PROFILE: more (like this), less (not relevant), or clear the mark.

    PAPER is an arXiv id, a DOI, a paper key or its exact title. "more" papers join the profile's
    examples; "less" papers push similar papers down in later rankings.
    """
    with _reported_errors():
        config = obj.config()
        with open_store(config) as store:
            wanted = _profile(config, store, profile)
            found = store.find(paper)
            if found is None:
                raise DigestError(
                    f"paper {paper!r} is not in the store; `digest papers --text ...` finds keys"
                )
            store.mark(wanted.name, found.key, None if mark == "clear" else mark, obj.clock())
    said = "cleared the mark on" if mark == "clear" else f"marked {mark}:"
    click.echo(f"{wanted.name}: {said} {found.key}  {one_line(found.title, 90)}")


@cli.group(name="profile")
def profile_group() -> None:
    """Work on a profile's interests."""


@profile_group.command(name="import")
@click.argument("profile")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def import_library(obj: _Context, profile: str, file: str) -> None:
    """Import FILE, a BibTeX, RIS or Zotero CSL-JSON export, as papers PROFILE likes.

    Each entry (arXiv id, DOI, or title with its abstract) counts as a "more" mark: a paper the
    store holds is that paper; any other is kept with the file's own title and abstract. Bad
    entries are listed and skipped. Importing the same file again adds nothing twice.
    """
    from digest.pipeline import import_library as import_file
    from digest.pipeline import read_library_file

    with _reported_errors():
        config = obj.config()
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            raise DigestError(f"{file}: cannot read it: {exc.strerror or exc}") from None
        with open_store(config) as store:
            wanted = _profile(config, store, profile)
            parsed = read_library_file(data, Path(file).name)
            report = import_file(store, wanted.name, parsed, Path(file).name, obj.clock)
    for line in report.skipped:
        click.echo(f"skipped: {line}", err=True)
    click.echo(
        f"{wanted.name}: {report.entries} papers in {Path(file).name}, {report.added} new to the"
        f" profile ({report.in_store} already in the store); {len(report.skipped)} skipped"
    )


@cli.command()
@click.option(
    "--no-fetch", is_flag=True, help="Skip the ingest; compose and deliver from the store."
)
@click.option("-p", "--profile", "only", multiple=True, help="Only this profile (repeatable).")
@click.option(
    "--now",
    "now_too",
    is_flag=True,
    help="Also make the digest of profiles not due yet (still one a day: not again at their time).",
)
@click.pass_obj
def run(obj: _Context, no_fetch: bool, only: Sequence[str], now_too: bool) -> None:
    """One full cycle: ingest, rank, compose, write the feeds, mail the digests that are due.

    Safe to run from cron as often as you like: the delivery ledger makes sure each profile gets
    one digest per day, and a re-run after a crash only sends what is still open. Exit code 1 when
    every source failed, a message could not be delivered or the feed files could not be written
    (the mail goes out all the same).
    """
    from digest.channels.mail import make_sender
    from digest.pipeline import make_fetcher, open_poster, run_cycle
    from digest.progress import TerminalProgress

    _collect_less_often()
    with _reported_errors():
        # An hourly run over every profile is mostly idle: it starts from the config's head, and
        # reads the profiles only once it knows something is due (100,000 of them: half a second).
        config, whole = (obj.config(), None) if only or now_too else obj.config_head()
        obj.service_logging(config)
        # A bar per step on a terminal; elsewhere the log already has a line per source and mail.
        progress = TerminalProgress(sys.stderr, plain_lines=False)
        with (
            open_store(config) as store,
            make_sender(config) as sender,
            open_poster(config) as poster,
        ):
            profiles = [_profile(config, store, name) for name in only] if only else None
            if no_fetch:
                report = run_cycle(
                    config,
                    store,
                    obj.clock,
                    sender,
                    poster=poster,
                    profiles=profiles,
                    now_too=now_too,
                    progress=progress,
                    whole_config=whole,
                )
            else:
                with make_fetcher(config) as fetcher:
                    report = run_cycle(
                        config,
                        store,
                        obj.clock,
                        sender,
                        fetcher=fetcher,
                        poster=poster,
                        profiles=profiles,
                        now_too=now_too,
                        progress=progress,
                        whole_config=whole,
                    )
            if report.composed:
                upcoming = []
            elif report.quiet_until is not None:  # idle: the profiles were not even read
                upcoming = [f"  nothing is due before {report.quiet_until:%Y-%m-%d %H:%M} UTC"]
            else:
                chosen = profiles or (whole() if whole else config).profiles
                upcoming = _next_digests(store, chosen, obj.clock())
    if report.ingest is not None:
        _print_report(report.ingest)
    for digest in report.composed[:COMPOSED_SHOWN]:
        failed = ", ".join(digest.failed_sources)
        click.echo(
            f"{digest.profile}: digest of {digest.day.isoformat()}: {digest.items} of "
            f"{digest.scanned} new papers" + (f" (failed sources: {failed})" if failed else "")
        )
    if len(report.composed) > COMPOSED_SHOWN:
        more = report.composed[COMPOSED_SHOWN:]
        click.echo(
            f"... and {len(more):,} more digests ({sum(d.items for d in more):,} papers in all; "
            "`digest status` counts them by channel)"
        )
    if not report.composed:
        click.echo("no digest was due")
        for line in upcoming:
            click.echo(line)
    kept_in = "the store" if config.store.postgresql else config.feeds_dir
    click.echo(f"feeds: {len(report.feeds_written)} files changed in {kept_in}")
    where = f"SMTP {config.smtp.host}" if config.smtp else f"the outbox {config.outbox_dir}"
    for name, delivered in report.channels.items():
        if name == "feeds":
            if delivered.stopped:
                click.echo(f"error: feeds: {delivered.stopped}", err=True)
            continue
        through = f", through {where}" if name == "mail" else ""
        click.echo(
            f"{name}: {delivered.sent} sent, {delivered.deferred} deferred, "
            f"{delivered.failed} failed, {delivered.skipped} skipped{through}"
        )
        if delivered.uncertain:
            click.echo(f"{name}: {delivered.uncertain} handed over with no answer: not sent again "
                       "until their quarantine ends; `digest status` lists them")
        if delivered.left:
            click.echo(f"{name}: {delivered.left} left for the next run")
        for problem in delivered.problems:
            click.echo(f"error: {problem.profile}: {name}: {problem.address}: {problem.error}",
                       err=True)
        if delivered.stopped:
            click.echo(f"error: {name}: {delivered.stopped}", err=True)
    if report.mail.sent and not config.smtp:
        click.echo(
            f"read them: any mail client opens the Maildir {config.outbox_dir}"
            f" (mutt -f {config.outbox_dir}); `digest preview PROFILE` writes one as a web page"
        )
    if (report.ingest is not None and report.ingest.all_failed) or any(
        delivered.needs_attention for delivered in report.channels.values()
    ):
        sys.exit(1)


# Python's cycle collector starts a young collection every 700 new objects and, every 100 of
# them, a full one over the whole heap: every profile of config.toml, the stored corpus, the
# renderer's cards. A run makes millions of short-lived objects (freed by their counts, not the
# collector: it makes no cycles worth finding sooner), so at 10,000 profiles that was some 20
# full collections and 3 s of a 40 s run; at these thresholds, none and under 1 s (issue 16).
RUN_GC_THRESHOLDS = (10_000, 20, 10)


def _collect_less_often() -> None:
    gc.set_threshold(*RUN_GC_THRESHOLDS)


# A run for 100,000 readers says what it did in a few lines, not one per digest.
COMPOSED_SHOWN = 50


def _next_digests(
    store: Store, profiles: Sequence[ProfileConfig], now: datetime
) -> list[str]:
    """When each profile's next digest is due, in its own time zone (the first ten)."""
    from zoneinfo import ZoneInfo

    from digest.compose import next_slot

    lines = []
    for profile in profiles[:10]:
        latest = store.digests(profile.name, limit=1)
        slot = next_slot(profile, now, latest[0] if latest else None)
        if slot is None:
            continue
        local = slot.astimezone(ZoneInfo(profile.timezone))
        minutes = max(int((slot - now).total_seconds() // 60), 0)
        wait = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
        today = "" if latest and latest[0].day == now.astimezone(local.tzinfo).date() else (
            "; `digest run --now` makes today's at once"
        )
        lines.append(
            f"  {profile.name}: next digest {local:%a %b %d %H:%M} ({profile.timezone}),"
            f" in {wait}{today}"
        )
    if len(profiles) > 10:
        lines.append(f"  and {len(profiles) - 10} more profiles")
    return lines


@cli.command()
@click.argument("profile")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="Where to write the HTML (default: preview-PROFILE.html).",
)
@click.option("--text", "as_text", is_flag=True, help="Write the plain-text version instead.")
@click.pass_obj
def preview(obj: _Context, profile: str, output: str | None, as_text: bool) -> None:
    """Write PROFILE's email, as it would be sent now, to a file to open in a browser.

    Nothing is sent, and no digest is stored: it is composed from the store (or today's stored
    digest is shown when there is one). The text part's short links are kept, so they open.
    """
    from pathlib import Path

    from digest.channels.mail import MailBuilder
    from digest.pipeline import preview as compose_preview
    from digest.render import Renderer

    with _reported_errors():
        config = obj.config()
        with open_store(config) as store:
            wanted = _profile(config, store, profile)
            digest = compose_preview(config, store, wanted, obj.clock)
            builder = MailBuilder(config, store, Renderer())
            recipient = wanted.emails[0] if wanted.emails else "you@example.org"
            rendered, _ = builder.render(digest, recipient)
        target = Path(output or f"preview-{wanted.name}.{'txt' if as_text else 'html'}")
        try:
            target.write_text(rendered.text if as_text else rendered.html, encoding="utf-8")
        except OSError as exc:
            raise DigestError(f"{target}: cannot write the preview: {exc}") from None
    click.echo(f"{target}  ({rendered.subject})")


@cli.command()
@click.pass_obj
def schedule(obj: _Context) -> None:
    """Run as a service: fetch each source on its schedule, send each digest at its time.

    One leads per store: a second waits as a hot standby and takes over when the first stops
    or dies. SIGTERM or Ctrl-C stops it cleanly between steps.
    `digest run` from cron or a systemd timer gives the same digests, if you prefer those.
    """
    from digest.schedule import Service

    _collect_less_often()
    with _reported_errors():
        config = obj.config()
        obj.service_logging(config)
        Service(config, obj.clock).run()


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--proxy",
    "proxies",
    default="127.0.0.1",
    show_default=True,
    help="Comma-separated addresses of the reverse proxies whose X-Forwarded-For is trusted.",
)
@click.pass_obj
def serve(obj: _Context, host: str, port: int, proxies: str) -> None:
    """Serve the feeds (with 304s), subscribing, managing, feedback and unsubscribe pages."""
    from digest.web import create_app, server

    with _reported_errors():
        config = obj.config()
        obj.service_logging(config)
        app = create_app(config, obj.clock)
    # uvicorn logs at warning (its own access log is off: ours leaves the tokens out).
    click.echo(f"digest serve: http://{host}:{port}/ (feeds at /feeds/), until Ctrl-C or SIGTERM")
    server.run(app, host, port, proxies)


@cli.command()
@click.option("--status", "only", type=click.Choice(["pending", "active", "paused"]))
@click.pass_obj
def subscribers(obj: _Context, only: str | None) -> None:
    """List the people who subscribed on the web: profile, address, state, since when."""
    with _reported_errors():
        config = obj.config()
        with open_store(config) as store:
            found = store.subscribers(only)
    if not found:
        click.echo("no web subscribers" + (f" {only}" if only else ""))
    for subscriber in found:
        state = "unsubscribed" if subscriber.unsubscribed else subscriber.status
        since = subscriber.confirmed or subscriber.created
        interests = subscriber.interests
        click.echo(
            f"{subscriber.profile}  {subscriber.address:<32}  {state:<12}  {since:%Y-%m-%d}  "
            f"{interests.frequency} {interests.deliver_at} {interests.timezone}  "
            + one_line(
                ", ".join(interests.keywords + interests.authors + interests.categories), 60
            )
        )


@cli.command()
@click.argument("profile", required=False)
@click.option("--arrived", "verdict", flag_value="sent",
              help="They did arrive: mark them sent (nothing is sent again).")
@click.option("--resend", "verdict", flag_value="pending",
              help="They did not arrive: the next run sends them, without waiting.")
@click.pass_obj
def uncertain(obj: _Context, profile: str | None, verdict: str | None) -> None:
    """List the mails handed over with no answer from the server (of PROFILE, or all); with
    --arrived or --resend, settle them."""
    with _reported_errors():
        config = obj.config()
        with open_store(config) as store:
            rows = store.deliveries(profile=profile, statuses=["uncertain"])
            changed = store.settle_uncertain(verdict, obj.clock(), profile) if verdict else 0
    if not rows:
        click.echo("no uncertain deliveries" + (f" for {profile}" if profile else ""))
        return
    for row in rows:
        when = f"{row.updated:%Y-%m-%d %H:%M} UTC" if row.updated else "?"
        click.echo(f"{row.profile}  {row.channel}  digest of {row.day}  uncertain since {when}"
                   + (f"  ({one_line(row.error, 100)})" if row.error else ""))
    if verdict == "sent":
        click.echo(f"{changed} marked sent: they will not be sent again")
    elif verdict == "pending":
        click.echo(f"{changed} to be sent again by the next run")
    else:
        click.echo("check with the recipients, then: digest uncertain --arrived, or --resend")


@cli.command()
@click.option("-q", "--quiet", is_flag=True, help="Print only what needs a person.")
@click.pass_obj
def status(obj: _Context, quiet: bool) -> None:
    """Sources, next runs, today's digests and feed ages; exit 1 when something needs a person."""
    from digest.status import gather, render

    with _reported_errors():
        config = obj.config()
        with open_store(config) as store:
            found = gather(config, store, obj.clock())
    if quiet:
        for problem in found.problems:
            click.echo(problem, err=True)
    else:
        click.echo(render(found))
    if found.problems:
        sys.exit(1)


@cli.group(name="store")
def store_group() -> None:
    """Look after the store (data_dir/paperdigest.sqlite3, or [store] url's database)."""


@store_group.command(name="vacuum")
@click.pass_obj
def store_vacuum(obj: _Context) -> None:
    """Prune what [store] keep_days no longer keeps (now, not waiting for the day's run), then
    give the freed space back to the disk (SQLite VACUUM) and empty the -wal.

    Run it while no job is running: it rewrites the whole file, and needs as much free disk
    space again as the store takes.
    """
    from digest import retention
    from digest.lock import AlreadyRunning, ProcessLock
    from digest.store.leader import LOCK_FILE

    with _reported_errors():
        config = obj.config()
        now = obj.clock()
        try:  # only asked: held, it would make a scheduler starting meanwhile give up
            # (SQLite only: PostgreSQL's VACUUM works beside running jobs, and its scheduler's
            # lead is not this file.)
            if not config.store.postgresql:
                with ProcessLock(config.data_dir / LOCK_FILE):
                    pass
        except AlreadyRunning:
            raise DigestError(
                f"{config.store_name}: `digest schedule` is running on this store; stop it "
                "first (vacuum rewrites the whole file)"
            ) from None
        with open_store(config) as store:
            started = store.unfinished_runs(now - config.delivery.deadline)
            if started:
                raise DigestError(
                    f"{config.store_name}: a run that started {started[-1]:%Y-%m-%d %H:%M} UTC "
                    "has not finished; try again when it is done"
                )
            before = store.size()
            with store.patience(5):  # a job writing to the store: say so, not wait for it
                report = retention.prune(config, store, now)
            store.vacuum()
            after = store.size()
    click.echo(report.line())
    click.echo(
        f"store: {retention.human_bytes(before.total_bytes)} before, "
        f"{retention.human_bytes(after.total_bytes)} after ({config.store_name})"
    )


@store_group.command(name="check")
@click.option("--quick", is_flag=True, help="SQLite's quick_check: skips matching indexes to tables.")
@click.pass_obj
def store_check(obj: _Context, quick: bool) -> None:
    """Check the store file for damage (SQLite's integrity_check): prints "ok", or what is
    damaged and exits 1. Reads the whole file; runs and `digest serve` may go on meanwhile."""
    with _reported_errors():
        config = obj.config()
        with open_store(config) as store:
            problems = store.check(quick=quick)
    if not problems:
        click.echo("ok")
        return
    click.echo(f"{config.store_name}: damaged; restore it from a backup (`digest store backup`)", err=True)
    for problem in problems:
        click.echo(problem)
    sys.exit(1)


@store_group.command(name="backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def store_backup(obj: _Context, file: Path) -> None:
    """Copy the store to FILE as it is at one moment (SQLite's online backup), while runs and
    `digest serve` go on. FILE is written whole or not at all; never the live store."""
    with _reported_errors():
        config = obj.config()
        with open_store(config) as store:
            store.backup(file)
    click.echo(f"backed up {config.store_name} to {file}")


@store_group.command(name="copy")
@click.option(
    "--to",
    "to",
    metavar="TARGET",
    help="Where to copy: postgresql://user@host:5432/dbname (the password from PGPASSWORD or "
    "~/.pgpass; a URL holding one ends up in your shell history, so prefer --to-env), or the "
    "path of a SQLite file (the way back).",
)
@click.option(
    "--to-env",
    "to_env",
    metavar="NAME",
    help="Read TARGET from the environment variable NAME (a URL with its password, say).",
)
@click.pass_obj
def store_copy(obj: _Context, to: str | None, to_env: str | None) -> None:
    """Copy the whole store (SQLite or PostgreSQL, as configured) to TARGET: every table, row for
    row, in one snapshot of the store, then the rows of each table counted on both sides (exit 1
    naming the tables that differ).

    TARGET is made or brought to this release's schema first. It must be empty or an earlier
    copy of this same store: then the copy adds what it lacks and never changes a row it has (a
    row it holds otherwise is counted, and its table named), so running it again is safe;
    anything else is refused. Runs may go on while it copies, but stop `digest schedule`,
    `digest run` and `digest serve` for the copy you switch to.
    """
    import os
    import time

    from digest.store import is_postgresql_url, open_store_at
    from digest.store.copy import copy_store

    if (to is None) == (to_env is None):
        raise click.UsageError("give one of --to TARGET or --to-env NAME")
    if to_env is not None:
        to = os.environ.get(to_env, "")
        if not to:
            click.echo(f"error: the environment variable {to_env} is not set (it should hold TARGET)", err=True)
            sys.exit(1)
    assert to is not None
    with _reported_errors():
        config = obj.config()
        started = time.monotonic()
        with open_store(config) as source, open_store_at(to) as target:
            report = copy_store(source, target, obj.clock(), config.data_dir)
    click.echo(report.table())
    rows = sum(count for _, count, _ in report.counts)
    click.echo(
        f"{'refreshed the copy' if report.refreshed else 'copied'} {report.source} to "
        f"{report.target}: {len(report.counts)} tables, {rows:,} rows in "
        f"{time.monotonic() - started:.1f} s"
    )
    if report.keys:
        click.echo(report.keys)
    if report.differing:
        click.echo(
            f"error: {report.target}: differs from the store in {', '.join(report.differing)} "
            "(it holds rows the store does not, or rows changed on either side since the last "
            "copy, which it keeps as they are; to copy the store as it is now, copy into an "
            "empty database)",
            err=True,
        )
        sys.exit(1)
    if is_postgresql_url(to):
        click.echo(
            f'To use it: in config.toml, [store] url = "{report.target}" (its password from '
            "password_env or password_file), or url_env = NAME with NAME holding the URL; then "
            "restart digest schedule and digest serve."
        )
    else:
        click.echo(
            f"To use it: stop the jobs, put {report.target} at {config.data_dir}/paperdigest.sqlite3 "
            "and remove url and url_env from [store] in config.toml."
        )


@cli.command("sources")
def list_kinds() -> None:
    """List the kinds of source a config can use."""
    for kind in SOURCE_KINDS.values():
        click.echo(f"{kind.name:<14} {kind.description}")


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="digest")

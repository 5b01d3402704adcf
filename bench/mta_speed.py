"""Benchmark (issue 15): `digest run` mailing every reader's rendered digest to a real MTA on loopback.

    python bench/mta_speed.py [--profiles 2000] [--repeat 3] [--server postfix aiosmtpd]

Needs Debian's postfix installed (`apt-get install postfix`; run as root, as postfix's master
must start as root). The bench starts its OWN postfix instance, never the system one: a throwaway
config directory, queue and data directory under a temporary folder (`postfix -c DIR start`),
smtpd on a free port of 127.0.0.1, every address of the test domain delivered by virtual(8) into
one Maildir under the same folder, its log in a file there (no syslog needed). It is stopped
(`postfix -c DIR stop`) whatever happens.

The measure is the whole job as a process, as cron runs it:

    python -m digest --config CFG run --no-fetch --now

with N profiles (default 2,000), one address each, [smtp] host 127.0.0.1 port P security "none",
[rank] embeddings = false. The store holds the shared arXiv corpus
(../shared/corpus/arxiv_cs_2026-05-01_2026-06-30.jsonl.gz), ingested once with its listing days
moved so that the last one was seen two hours ago: the run composes, ranks and renders a digest of
real papers for every profile, writes the feeds, then mails. Each run starts from a copy of that
store. The mail step's rate is read from the run's own log (`[log] format = "json"`: one line per
message with a millisecond time): messages sent after the first, over the time from the first
"sent" line to the last. The whole process's wall time is timed around it. The same runs go to
aiosmtpd on loopback (bench/send_speed.py's server, which throws every message away, in its own
process) beside it. After each postfix run, the bench waits for postfix to deliver and checks that
the Maildir holds N messages with N distinct Message-IDs. Prints medians and the ratio.
Target: at least 200 messages/s to postfix.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import json
import multiprocessing
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from ingest_corpus import DEFAULT_CORPUS, load_days  # noqa: E402

from digest.store import Store  # noqa: E402

DOMAIN = "bench.test"
KEYWORDS = (
    "language model", "reinforcement learning", "agent", "diffusion", "graph", "retrieval",
    "robot", "benchmark", "quantization", "privacy", "vision", "reasoning",
)
POSTFIX = shutil.which("postfix") or ("/usr/sbin/postfix" if Path("/usr/sbin/postfix").exists() else None)
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- a private postfix instance ---------------------------------------------------------------------


@dataclass(frozen=True)
class Postfix:
    config_dir: Path
    maildir: Path  # every message of DOMAIN lands here (new/)
    port: int
    log: Path


def _postconf(config_dir: Path, *settings: str, master: bool = False) -> None:
    flag = ["-M"] if master else []
    subprocess.run(
        [POSTCONF, "-c", str(config_dir), *flag, "-e", *settings], check=True, capture_output=True
    )


def _wait_listening(port: int, seconds: float) -> None:
    ends = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                if connection.recv(512).startswith(b"220"):
                    connection.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        if time.monotonic() > ends:
            raise SystemExit(f"postfix does not answer on 127.0.0.1:{port}")
        time.sleep(0.1)


@contextmanager
def postfix_instance() -> Iterator[Postfix]:
    """Postfix with its own config, queue, data and mail directories in a temporary folder,
    stopped and removed at the end."""
    with tempfile.TemporaryDirectory(prefix="mta-bench-") as name:
        folder = Path(name)
        folder.chmod(0o755)  # postfix's daemons run as the postfix user and must reach their queue
        with _running(folder) as mta:
            yield mta


@contextmanager
def _running(folder: Path) -> Iterator[Postfix]:
    assert POSTFIX is not None
    config_dir, queue, data = folder / "etc", folder / "queue", folder / "data"
    mail, log = folder / "mail", folder / "maillog"
    for path in (config_dir, queue, mail):
        path.mkdir()
    shutil.copy("/etc/postfix/master.cf", config_dir / "master.cf")
    (config_dir / "main.cf").write_text("", encoding="ascii")
    nobody = pwd.getpwnam("nobody")
    maildir = mail / "inbox"
    for part in ("new", "cur", "tmp"):
        (maildir / part).mkdir(parents=True)
    for path in (mail, maildir, *(maildir / part for part in ("new", "cur", "tmp"))):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    port = free_port()
    _postconf(
        config_dir,
        "compatibility_level = 3.6",
        f"queue_directory = {queue}",
        f"data_directory = {data}",
        "meta_directory = /etc/postfix",
        "syslog_name = postfix-paperdigest-bench",
        f"maillog_file = {log}",
        f"maillog_file_prefixes = {folder}",
        "inet_interfaces = loopback-only",
        "inet_protocols = ipv4",
        "myhostname = mta.bench.test",
        "mydestination =",
        "mynetworks = 127.0.0.0/8",
        "alias_maps =",
        "alias_database =",
        "relayhost =",
        "smtpd_peername_lookup = no",
        "smtp_dns_support_level = disabled",
        f"virtual_mailbox_domains = {DOMAIN}",
        f"virtual_mailbox_base = {mail}",
        "virtual_mailbox_maps = static:inbox/",  # the trailing slash: a Maildir
        f"virtual_uid_maps = static:{nobody.pw_uid}",
        f"virtual_gid_maps = static:{nobody.pw_gid}",
        "virtual_minimum_uid = 1",
        "message_size_limit = 0",
        "virtual_mailbox_limit = 0",
    )
    # smtpd on our port only, nothing chrooted (a chroot needs copies of /etc files in the queue).
    master = (config_dir / "master.cf").read_text(encoding="ascii").splitlines()
    master = [
        f"127.0.0.1:{port} inet n - n - - smtpd" if line.startswith("smtp      inet") else line
        for line in master
    ]
    (config_dir / "master.cf").write_text("\n".join(master) + "\n", encoding="ascii")
    subprocess.run(
        [POSTCONF, "-c", str(config_dir), "-F", "-e", "*/*/chroot = n"], check=True, capture_output=True
    )
    # postlog (the maillog_file writer) is started by master when maillog_file is set.
    started = subprocess.run(
        [POSTFIX, "-c", str(config_dir), "start"], capture_output=True, text=True
    )
    try:
        if started.returncode != 0:
            said = log.read_text(errors="replace") if log.exists() else ""
            raise SystemExit(
                f"postfix -c {config_dir} start failed:\n{started.stdout}{started.stderr}{said}"
            )
        _wait_listening(port, 30)
        yield Postfix(config_dir, maildir, port, log)
    finally:
        subprocess.run([POSTFIX, "-c", str(config_dir), "stop"], capture_output=True)
        pid_file = queue / "pid" / "master.pid"
        for _ in range(100):  # master removes its pid file when it has stopped
            if not pid_file.exists():
                break
            time.sleep(0.1)


def delivered(maildir: Path, expected: int, stall: float = 30) -> list[Path]:
    """The messages in the Maildir once `expected` have arrived (or none came for `stall` s)."""
    last, since = -1, time.monotonic()
    while True:
        files = list((maildir / "new").iterdir())
        if len(files) >= expected or time.monotonic() - since > stall:
            return files
        if len(files) != last:
            last, since = len(files), time.monotonic()
        time.sleep(0.2)


def message_ids(files: list[Path]) -> Counter[str]:
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    ids: Counter[str] = Counter()
    for path in files:
        with path.open("rb") as handle:
            ids[str(parser.parse(handle)["Message-ID"])] += 1
    return ids


# -- the job --------------------------------------------------------------------------------------


def profiles_toml(count: int) -> str:
    tables = []
    for number in range(count):
        keywords = ", ".join(f'"{KEYWORDS[(number + i) % len(KEYWORDS)]}"' for i in range(3))
        tables.append(
            f"[profiles.p{number:05}]\n"
            f'email = ["reader{number:05}@{DOMAIN}"]\n'
            f"keywords = [{keywords}]\n"
            'timezone = "UTC"\n'
        )
    return "\n".join(tables)


def config_text(data_dir: Path, profiles: str, port: int) -> str:
    return f"""data_dir = "{data_dir}"

[output]
base_url = "https://digest.example.org"

[email]
from = "paperdigest <digest@example.org>"

[log]
format = "json"
level = "info"

[rank]
embeddings = false

[fetch]
contact = "bench@example.org"

[sources.arxiv-cs]
kind = "arxiv-listing"
url = "https://arxiv.org/list/cs/new"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"

{profiles}"""


def prepare_store(data_dir: Path, corpus: Path) -> int:
    """The corpus in a new store, its last listing day seen two hours ago; the papers stored."""
    days = load_days(corpus)
    last = date.fromisoformat(max(days))
    now = datetime.now(UTC)
    data_dir.mkdir(parents=True)
    with Store.open(data_dir / "paperdigest.sqlite3") as store:
        for day, records in days.items():
            ago = timedelta(days=(last - date.fromisoformat(day)).days, hours=2)
            store.ingest(records, now - ago)
        return store.count_papers()


@dataclass(frozen=True)
class RunFigures:
    wall: float  # the whole process, seconds
    sent: int
    mail_seconds: float  # from the first "sent" log line to the last
    exit_code: int

    @property
    def rate(self) -> float:
        return (self.sent - 1) / self.mail_seconds if self.mail_seconds > 0 else 0.0


def run_job(template: Path, folder: Path, port: int, profiles: str) -> RunFigures:
    """`digest run --no-fetch --now` as a process, on a fresh copy of the template's data."""
    data_dir = folder / "data"
    shutil.copytree(template, data_dir)
    config = folder / "config.toml"
    config.write_text(config_text(data_dir, profiles, port), encoding="utf-8")
    began = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), "run", "--no-fetch", "--now"],
        cwd=ROOT, capture_output=True, text=True,
    )
    wall = time.perf_counter() - began
    sent_at = []
    for line in process.stderr.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event["event"].startswith("mail ") and event["event"].endswith(": sent"):
            sent_at.append(datetime.fromisoformat(event["time"]))
    if process.returncode != 0 or not sent_at:
        tail = "\n".join((process.stdout + process.stderr).splitlines()[-15:])
        raise SystemExit(f"digest run exited {process.returncode}, {len(sent_at)} sent:\n{tail}")
    span = (sent_at[-1] - sent_at[0]).total_seconds()
    return RunFigures(wall, len(sent_at), span, process.returncode)


@contextmanager
def aiosmtpd_server() -> Iterator[int]:
    """bench/send_speed.py's server (accepts every message, keeps none) in its own process."""
    from send_speed import serve

    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    port = free_port()
    server = context.Process(target=serve, args=(port, ready, stop), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the aiosmtpd server did not start")
        yield port
    finally:
        stop.set()
        server.join(10)


def report(label: str, runs: list[RunFigures]) -> tuple[float, float]:
    rate = statistics.median(run.rate for run in runs)
    wall = statistics.median(run.wall for run in runs)
    rates = ", ".join(f"{run.rate:.0f}" for run in runs)
    walls = ", ".join(f"{run.wall:.1f}" for run in runs)
    print(f"{label:<9} {rate:>7.0f} msg/s ({rates})   whole process {wall:.1f} s ({walls})")
    return rate, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument(
        "--server", nargs="+", choices=("postfix", "aiosmtpd"), default=["postfix", "aiosmtpd"]
    )
    options = parser.parse_args()
    if "postfix" in options.server and POSTFIX is None:
        print("postfix is not installed: apt-get install postfix (as root), then run this again")
        sys.exit(2)
    if "postfix" in options.server and os.geteuid() != 0:
        print("postfix's master must be started as root: run this bench as root")
        sys.exit(2)
    count = options.profiles
    profiles = profiles_toml(count)
    results: dict[str, list[RunFigures]] = {name: [] for name in options.server}
    with tempfile.TemporaryDirectory() as work:
        template = Path(work) / "template"
        papers = prepare_store(template, options.corpus)
        print(f"{count} profiles, one address each; {papers} papers in the store; "
              f"median of {options.repeat} runs of `digest run --no-fetch --now`", flush=True)
        # Interleaved, postfix then aiosmtpd, so a drift in the machine's speed touches both.
        for repeat in range(options.repeat):
            for server in options.server:
                folder = Path(work) / f"{server}-{repeat}"
                folder.mkdir()
                if server == "postfix":
                    with postfix_instance() as mta:
                        figures = run_job(template, folder, mta.port, profiles)
                        files = delivered(mta.maildir, count)
                        ids = message_ids(files)
                        twice = [mid for mid, n in ids.items() if n > 1]
                        if len(files) != count or len(ids) != count or twice:
                            raise SystemExit(
                                f"postfix: {len(files)} messages in the Maildir for {count}, "
                                f"{len(ids)} distinct Message-IDs, {len(twice)} twice; its log:\n"
                                + "\n".join(mta.log.read_text(errors="replace").splitlines()[-20:])
                            )
                        print(f"  postfix run {repeat + 1}: {len(files)} messages in the Maildir, "
                              f"{len(ids)} distinct Message-IDs", flush=True)
                else:
                    with aiosmtpd_server() as port:
                        figures = run_job(template, folder, port, profiles)
                if figures.sent != count:
                    raise SystemExit(f"{server}: {figures.sent} sent of {count}")
                results[server].append(figures)
                shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{'server':<9} {'mail step (median, runs)':>24}")
    medians = {server: report(server, runs) for server, runs in results.items()}
    if len(medians) == 2:
        (rate_a, wall_a), (rate_b, wall_b) = medians["postfix"], medians["aiosmtpd"]
        print(f"postfix / aiosmtpd: {rate_a / rate_b:.2f}x the mail rate, "
              f"{wall_a / wall_b:.2f}x the whole-process time")
    if "postfix" in medians:
        print(f"target: >= 200 messages/s to postfix: {medians['postfix'][0]:.0f}")


if __name__ == "__main__":
    main()

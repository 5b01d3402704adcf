"""Benchmark (issue 15): `digest run` killed with SIGKILL at random moments, re-run after each.

    python bench/crash_loop.py [--profiles 200] [--kills 20] [--seed 15] [--waits 0.05 1.5]

Each profile has three channels: two mail addresses (aiosmtpd on 127.0.0.1, in this process), a
team chat all profiles share (a JSON webhook received on 127.0.0.1) and its feed files. A run is a real `digest run --no-fetch
--now` process killed after a seeded-random wait; one that ends first is a clean run, and the next
runs a day later (new digests, new ledger rows), so every kill lands on work. Then one run to the
end. Prints the copies the servers got against the ledger: lost, duplicates, uncertain per kill.
The loop itself is tests/test_crash_loop.py's `crash_loop` (the test runs a smaller one).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_crash_loop import crash_loop  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--waits", type=float, nargs=2, default=(0.05, 1.5), metavar=("MIN", "MAX"))
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        figures = crash_loop(
            Path(folder), profiles=options.profiles, kills=options.kills, seed=options.seed,
            waits=tuple(options.waits),
        )
    print(figures.summary())
    print(f"uncertain per kill: {len(figures.uncertain) / max(figures.kills, 1):.2f}")
    for name, found in (("lost", figures.lost), ("duplicate", figures.duplicates),
                        ("uncertain", figures.uncertain), ("not named by status", figures.unnamed)):
        for who in found:
            print(f"  {name}: {who}")
    sys.exit(0 if not (figures.lost or figures.duplicates or figures.unnamed) else 1)


if __name__ == "__main__":
    main()

"""Backfill time by routing (issue 27): ``via=email`` and ``via=auto`` side by side.

Each contender is the real CLI (``ingest backfill`` then ``ingest run --until-done``) in
its own process against its own simulator over HTTP on loopback (one export at a time per
account, each report emailed ``--delay`` seconds after it was accepted) and its own
embedded IMAP server. Both start at the same moment and share the machine. The figure is
the wall time of ``ingest run --until-done``: until every window is archived. Then the two
archives are compared row by row: every column but the provenance ones (``source_sha256``,
``source_kind``: which path and which answer a row came from) must be identical.

Data: ``--bots`` bots x ``--days`` days; the light ones have 5..40 rows a day (under 100;
the simulator's default), the last ``--heavy`` bots also have ``--heavy-runs`` runs of 3
days at 600 rows a day (a GET answer holds 500). Example (the figures in bench/README.md)::

    .venv/bin/python bench/routing.py --bots 10 --days 365 --heavy 2 --delay 20 --json /tmp/routing.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.simulator import CertainlySimulator, EmbeddedImap, SimulatorConfig  # noqa: E402 - after sys.path
from tests.support.job import ingest_env  # noqa: E402 - after the sys.path line above
from tests.support.job import job_env as tests_job_env  # noqa: E402 - after the sys.path line above

PROVENANCE = ("source_sha256", "source_kind")
FIRST_DAY = date(2025, 1, 1)


def bot_ids(count: int) -> list[str]:
    return [f"0b0e{n:04d}-0000-4000-8000-{n:012d}" for n in range(1, count + 1)]


def heavy_days(days: int, runs: int) -> set[date]:
    """``runs`` runs of 3 heavy days, spread evenly over the range."""
    step = days // (runs + 1)
    return {FIRST_DAY + timedelta(days=step * (r + 1) + k) for r in range(runs) for k in range(3)}


def job_env(sim: CertainlySimulator, imap: EmbeddedImap, workdir: Path, via: str) -> dict[str, str]:
    """The tests' job environment (tests.support.job), paced alike for both contenders: a
    pass every second (the default, 60 s, would add up to a minute per email to the email
    path), the default GET rate (2 a second) and window."""
    return ingest_env(
        tests_job_env(
            sim,
            imap,
            workdir,
            INGEST_REQUESTER__POLL_INTERVAL="1",
            INGEST_REQUESTER__RETRY_INITIAL="1",
            INGEST_REQUESTER__RETRY_MAX="5",
            INGEST_REQUESTER__VIA=via,
            INGEST_LOG_FORMAT="json",
        )
    )


def contender(
    via: str, bots: list[str], days: int, config: dict[str, Any], workdir: Path, results: dict[str, Any]
) -> None:
    """One contender: its own IMAP server and simulator, backfill, then run until done."""
    workdir.mkdir(parents=True)
    with EmbeddedImap() as imap:
        sim_config = SimulatorConfig(recipient=imap.username, **config)
        with CertainlySimulator(sim_config, deliver=imap.delivery(timeout=60)) as sim:
            env = job_env(sim, imap, workdir, via)
            last = FIRST_DAY + timedelta(days=days - 1)
            bot_args = [arg for bot in bots for arg in ("--bot", bot)]
            planned = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ingest",
                    "backfill",
                    *bot_args,
                    "--from",
                    str(FIRST_DAY),
                    "--to",
                    str(last),
                ],
                env=env,
                cwd=workdir,
                capture_output=True,
                text=True,
                check=True,
            )
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "ingest", "run", "--until-done", "--timeout", "7200"],
                env=env,
                cwd=workdir,
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.monotonic() - started
            status = subprocess.run(
                [sys.executable, "-m", "ingest", "status", "--json"],
                env=env,
                cwd=workdir,
                capture_output=True,
                text=True,
                check=True,
            )
            results[via] = {
                "wall_s": round(wall, 1),
                "exit": done.returncode,
                "planned": planned.stdout.strip(),
                "exports": len(sim.exports),
                "gets": sum(1 for r in sim.requests if r.method == "GET"),
                "summary": done.stdout.strip().splitlines()[-6:],
                "status": json.loads(status.stdout),
            }


def compare(roots: dict[str, Path]) -> dict[str, Any]:
    """Row by row: the same (bot_id, id) set, and every non-provenance column identical."""
    frames = {
        via: pl.scan_delta(str(root / "messages")).collect().sort("bot_id", "id")
        for via, root in roots.items()
    }
    email, auto = frames["email"], frames["auto"]
    columns = [c for c in email.columns if c not in PROVENANCE]
    same = email.select(columns).equals(auto.select(columns))
    return {
        "rows": {via: frame.height for via, frame in frames.items()},
        "identical_rows": same,
        "columns_compared": len(columns),
        "rows_by_path_in_auto": auto.group_by("source_kind").len().sort("source_kind").rows(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bots", type=int, default=10)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--heavy", type=int, default=2, help="How many of the bots have heavy days.")
    parser.add_argument("--heavy-runs", type=int, default=4, help="Runs of 3 heavy days per heavy bot.")
    parser.add_argument("--delay", type=float, default=20.0, help="Seconds from accepted export to email.")
    parser.add_argument("--json", type=Path, help="Write the figures here too.")
    args = parser.parse_args()

    bots = bot_ids(args.bots)
    heavy = {bot: heavy_days(args.days, args.heavy_runs) for bot in bots[args.bots - args.heavy :]}
    config = {
        "delivery_delay": args.delay,
        "min_per_day": 5,
        "max_per_day": 40,
        "heavy_days": heavy,
        "heavy_per_day": 600,
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-routing-"))
    results: dict[str, Any] = {}
    threads = [
        threading.Thread(target=contender, args=(via, bots, args.days, config, tmp / via, results))
        for via in ("email", "auto")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    figures = {
        "bots": args.bots,
        "days": args.days,
        "heavy_bots": args.heavy,
        "heavy_days_per_heavy_bot": len(next(iter(heavy.values()), ())),
        "delay_s": args.delay,
        "email": {k: v for k, v in results["email"].items() if k != "status"},
        "auto": {k: v for k, v in results["auto"].items() if k != "status"},
        "speed_up": round(results["email"]["wall_s"] / results["auto"]["wall_s"], 2),
        "archives": compare({via: tmp / via / "archive" for via in ("email", "auto")}),
        "load_average": os.getloadavg(),
        "workdir": str(tmp),
    }
    print(json.dumps(figures, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()

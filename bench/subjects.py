"""Subject access and erasure on a big archive: files read of all, wall time, peak RSS.

Builds a bot of ``--rows`` (10 million) narrow rows in the project's layout and schema, one
file per day as ``bench/scale.py`` does, with a ``botuser`` JSON on every row: a new person
every ``--per-person`` rows (chat users write a few messages each), and the subject in
``--subject-days`` days spread over the years. The subject index is then built as
``ingest migrate`` builds it (:func:`ingest.archive.migrate.index_archive`, timed in-process).

Then, as users run them, cold whole commands timed by this parent (fork to exit; CPU and
peak RSS from ``wait4``): ``ingest export --botuser X``, ``ingest erase --botuser X`` (the
dry run) and ``ingest erase --botuser X --apply``. The dry run says "data files read: N of
M"; the export's SUMMARY.txt says the same. With ``--without-index`` the export and the dry
run are also timed after the index is removed (every file read: the figure before it).

Example::

    .venv/bin/python bench/subjects.py --rows 10000000 --json /tmp/subjects.json

No timing is asserted anywhere: these are figures to read, not tests.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import time_command  # noqa: E402 - after the sys.path line above
from bench.scale import build_narrow_archive  # noqa: E402

BOT = "bench-bot"
SUBJECT = "subject-4242"


def build(archive: Path, rows: int, per_day: int, per_person: int, subject_days: int) -> dict[str, Any]:
    """The archive: ``rows`` rows of :data:`BOT`, one file a day from 2020-01-01, committed in
    one Delta commit; the subject's rows in ``subject_days`` days evenly spread."""
    import polars as pl

    days = -(-rows // per_day)
    theirs = {round(n * (days - 1) / max(subject_days - 1, 1)) for n in range(subject_days)}
    mine = json.dumps({"id": SUBJECT, "created_date": "2019-12-01T00:00:00Z"})

    def people(n: int, frame: pl.DataFrame) -> pl.DataFrame:
        """A ``botuser`` on every row, a new person every ``per_person`` rows; on the
        subject's days, their messages are the second person's."""
        person = pl.int_range(0, frame.height, eager=True) // per_person
        botuser = pl.format('{{"id":"u{}-{}","created_date":"2019-12-01T00:00:00Z"}}', pl.lit(n), person)
        if n in theirs:
            botuser = pl.when(person == 1).then(pl.lit(mine)).otherwise(botuser)
        return frame.with_columns(botuser.alias("botuser"))

    keys = build_narrow_archive(
        archive, BOT, rows, date(2020, 1, 1), per_day, tag="bench-subjects", id_step=100_000, shape=people
    )
    return {"files": len(keys), "subject_files": len(theirs), "subject_rows": len(theirs) * per_person}


def index(archive: Path) -> dict[str, Any]:
    """Build the subject index as ``ingest migrate`` does; its wall time and size."""
    from ingest.archive.layout import SUBJECTS
    from ingest.archive.migrate import index_archive
    from ingest.archive.storage import LocalStorage

    started = time.perf_counter()
    read = index_archive(LocalStorage(archive))
    wall = time.perf_counter() - started
    size = sum(p.stat().st_size for p in (archive / SUBJECTS).rglob("*") if p.is_file())
    return {"files_read": read, "wall": wall, "index_mib": size / 2**20}


def _read_of(text: str) -> str:
    found = re.search(r"[Dd]ata files read: (\d+) of (\d+)", text)
    return f"{found.group(1)} of {found.group(2)}" if found else "?"


def commands(tmp: Path, archive: Path, label: str, apply: bool) -> dict[str, Any]:
    """Export, dry run and (``apply``) erasure of the subject, cold whole commands."""
    env = {
        "INGEST_OUTPUT__ROOT": str(archive),
        "INGEST_STATE__PATH": str(tmp / "state.sqlite"),
        "INGEST_EXPORT__SIGNING_KEY_FILE": str(tmp / "export.key"),
        "INGEST_AUDIT__ACTOR": "bench",
    }
    found: dict[str, Any] = {}
    bundle = tmp / f"export-{label}"
    found["export"] = time_command(
        [sys.executable, "-m", "ingest", "export", "--botuser", SUBJECT, "--out", str(bundle)], env, tmp
    )
    summary = bundle / "SUMMARY.txt"
    found["export"]["read"] = _read_of(summary.read_text()) if summary.exists() else "?"
    shutil.rmtree(bundle, ignore_errors=True)
    dry = [sys.executable, "-m", "ingest", "erase", "--botuser", SUBJECT, "--reason", "bench"]
    found["erase_dry_run"] = _with_stdout(dry, env, tmp)
    if apply:
        found["erase_apply"] = _with_stdout([*dry, "--apply"], env, tmp)
    return found


def _with_stdout(command: list[str], env: dict[str, str], tmp: Path) -> dict[str, Any]:
    """:func:`time_command`, and the "data files read" figure from its output (a second,
    untimed run would change the archive: the command's own stdout is kept instead)."""
    log = tmp / "stdout.txt"
    wrapped = [sys.executable, "-c", _TEE, str(log), *command]
    facts = time_command(wrapped, env, tmp)
    facts["read"] = _read_of(log.read_text()) if log.exists() else "?"
    return facts


#: Runs a command with its stdout into a file (time_command discards stdout); exec: the
#: timed process is the command itself.
_TEE = (
    "import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC); "
    "os.dup2(fd, 1); os.execv(sys.argv[2], sys.argv[2:])"
)


def summarise(result: dict[str, Any]) -> str:
    lines = [
        f"{result['rows']:,} rows in {result['build']['files']} files; the subject in "
        f"{result['build']['subject_files']} of them ({result['build']['subject_rows']} rows)",
        f"index built (as migrate does): {result['index']['wall']:.1f} s, "
        f"{result['index']['index_mib']:.1f} MiB, {result['index']['files_read']} files read",
        "| command | data files read | wall s | CPU s | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for label, runs in result["runs"].items():
        for name, facts in runs.items():
            wall = f"{facts['wall']:.2f}" if "wall" in facts else facts.get("error", "?")
            lines.append(
                f"| {name} ({label}) | {facts.get('read', '?')} | {wall} | {facts['cpu']:.2f} | "
                f"{facts['peak_rss_mib']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--per-day", type=int, default=10_000)
    parser.add_argument("--per-person", type=int, default=3)
    parser.add_argument("--subject-days", type=int, default=6)
    parser.add_argument(
        "--without-index", action="store_true", help="also time export and dry run without it"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--build-into", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build_into:  # the child that builds (its memory is not the commands' to report)
        built = build(args.build_into, args.rows, args.per_day, args.per_person, args.subject_days)
        print(json.dumps({"build": built, "index": index(args.build_into)}))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-subjects-") as scratch:
        tmp = Path(scratch)
        archive = tmp / "archive"
        subprocess_keygen(tmp)
        result: dict[str, Any] = {"rows": args.rows, "runs": {}}
        # In a child: a forked command's peak RSS starts at its parent's (Linux keeps the
        # high-water mark across fork and exec), so this parent stays small.
        child = [sys.executable, __file__, "--build-into", str(archive), "--rows", str(args.rows)]
        child += ["--per-day", str(args.per_day), "--per-person", str(args.per_person)]
        child += ["--subject-days", str(args.subject_days)]
        result.update(json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout))
        if args.without_index:
            kept = tmp / "subjects-kept"
            shutil.move(archive / "subjects", kept)
            result["runs"]["no index"] = commands(tmp, archive, "no-index", apply=False)
            shutil.move(kept, archive / "subjects")
        result["runs"]["index"] = commands(tmp, archive, "index", apply=True)
    print(summarise(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


def subprocess_keygen(tmp: Path) -> None:
    """The export's signing key (``ingest keygen``)."""
    subprocess.run(
        [sys.executable, "-m", "ingest", "keygen", "--out", str(tmp / "export.key")],
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
    )


if __name__ == "__main__":
    raise SystemExit(main())

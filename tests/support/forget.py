"""An archive with a data subject in it, and the byte search that proves they are gone."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ingest.simulator import generate_messages
from ingest.simulator.data import rows_to_csv
from tests.support.job import run_ingest

BOT_A, BOT_B = "bot-a", "bot-b"
#: The subject's id, and a text only they wrote: neither may be found anywhere afterwards.
SUBJECT = "4242-erase-subject"
SUBJECT_TEXT = "my secret phone is 555-0199 xyzzy"
SUBJECT_IP = "203.0.113.7"
OTHER = "9191-other-subject"


def subject_row(row: dict[str, Any], who: str = SUBJECT) -> None:
    row["botuser"] = {"id": who, "created_date": "2023-12-01T00:00:00.000000Z"}
    row["botuser_meta"] = {
        "ip": SUBJECT_IP if who == SUBJECT else "198.51.100.2",
        "url": f"https://example.com/?u={who}",
    }
    row["message"] = SUBJECT_TEXT if who == SUBJECT else "another person's words"


def build_archive(work: Path, env: dict[str, str]) -> dict[str, int]:
    """Two bots (8 days each); the subject wrote 3 messages to A and 4 to B, one of them a
    row refused (quarantined); OTHER wrote 2 to B. Returns the subject's archived rows per bot."""
    rows_a = generate_messages(BOT_A, date(2024, 1, 1), date(2024, 1, 8))
    rows_b = generate_messages(BOT_B, date(2024, 1, 5), date(2024, 1, 12))
    for row in rows_a[10:13] + rows_b[20:24]:
        subject_row(row)
    for row in rows_b[40:42]:
        subject_row(row, OTHER)
    rows_b[23]["timestamp"] = "not a time"  # refused one by one: quarantined with the subject's data
    (work / "a.csv").write_bytes(rows_to_csv(rows_a))
    (work / "b.csv").write_bytes(rows_to_csv(rows_b))
    for name, bot in (("a.csv", BOT_A), ("b.csv", BOT_B)):
        done = run_ingest("import", name, "--bot", bot, env=env, cwd=work)
        assert done.returncode in (0, 1), done.stderr
    return {BOT_A: 3, BOT_B: 3}


def files_holding(roots: list[Path], needles: list[str]) -> list[str]:
    """Every file under ``roots`` (or the file itself) holding a needle: raw bytes, and
    Parquet decoded (compressed pages hide text from a byte search)."""
    found = []
    for root in roots:
        for path in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            texts = [data]
            if data[:4] == b"PAR1":
                table = pq.read_table(path)
                texts.append(json.dumps(table.to_pylist(), default=str).encode())
                texts.append(str(pq.read_metadata(path).to_dict()).encode())
            if any(n.encode() in t for n in needles for t in texts):
                found.append(str(path))
    return found

"""The emailed path's part-by-part fetch against a raw IMAP FETCH of the same message.

Starts a private, throwaway Dovecot on loopback (as the integration tests do: needs root
and ``apt-get install dovecot-imapd``), delivers one report email whose CSV attachment is
base64-encoded (as the vendor mails it), then times, alternating, ``--repeat`` times:

* ``raw``: one ``UID FETCH uid BODY.PEEK[]`` of the whole message (``Mailbox.fetch_message``,
  the small-message path): the bytes as fast as this client and server move them;
* ``partfetch``: ``ingest.partfetch.fetch_parts_to_disk`` with a sha256 of every fetched
  byte, as the watcher runs it for messages above ``INGEST_IMAP__PART_FETCH_BYTES``:
  header, BODYSTRUCTURE, part headers, then the attachment in ranges, decoded to disk.

MB/s is the message's size (10^6 bytes) over the wall time; CPU is this process's (the
server's own CPU is not counted, and shares the two cores). The ratio is round by round.

    sudo .venv/bin/python bench/fetch.py --csv /tmp/s250/time.csv --mb 64 --repeat 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import partfetch  # noqa: E402
from ingest.mailbox import Mailbox  # noqa: E402
from ingest.settings import explicit_settings  # noqa: E402
from ingest.simulator import ImapDelivery, generate_messages, rows_to_csv  # noqa: E402
from tests.support.dovecot import private_dovecot  # noqa: E402

USER, PASSWORD = "bench@example.test", "secret"


def report_bytes(csv_path: Path | None, megabytes: float) -> bytes:
    """The attachment: the first ``megabytes`` of ``csv_path`` (cut at a line end), or
    simulator rows enough for that size."""
    want = int(megabytes * 1e6)
    if csv_path is not None:
        with csv_path.open("rb") as stream:
            data = stream.read(want)
        return data[: data.rfind(b"\n") + 1]
    from datetime import date, timedelta

    pieces, size, day = [], 0, date(2024, 1, 1)
    while size < want:
        chunk = rows_to_csv(generate_messages("bench-bot", day, day + timedelta(days=6)))
        pieces.append(chunk if not pieces else chunk[chunk.index(b"\n") + 1:])
        size += len(pieces[-1])
        day += timedelta(days=7)
    return b"".join(pieces)


def message(csv: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "reports@certainly.example"
    msg["Subject"] = "Certainly message report bench"
    msg.set_content("Your report is attached.")
    msg.add_attachment(csv, maintype="text", subtype="csv", filename="message_report_bench.csv")
    return msg.as_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, help="take the attachment from this CSV (default: simulator rows)")
    parser.add_argument("--mb", type=float, default=64.0, help="attachment size before base64 (default 64)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="save every run")
    args = parser.parse_args()

    raw_message = message(report_bytes(args.csv, args.mb))
    size = len(raw_message)
    print(f"message: {size / 1e6:.1f} MB (attachment {args.mb:g} MB before base64), chunk "
          f"{partfetch.CHUNK >> 20} MiB, {args.repeat} rounds")
    runs: list[dict[str, object]] = []
    with private_dovecot("ingest-bench-", users={USER: PASSWORD}) as server:
        ImapDelivery(server.host, server.port, USER, PASSWORD).deliver(raw_message)
        settings = explicit_settings(imap={"host": server.host, "port": server.port, "security": "none",
                                           "username": USER, "password": PASSWORD, "timeout": 120})
        workdir = Path(tempfile.mkdtemp(prefix="ingest-fetch-"))
        try:
            with Mailbox(settings.imap) as box:
                box.select()
                uid = box.new_uids(0)[0]
                box.fetch_message(uid)  # warm: the server reads the message once
                for round_ in range(args.repeat):
                    for name in ("raw", "partfetch"):
                        cpu, wall = time.process_time(), time.perf_counter()
                        if name == "raw":
                            data = box.fetch_message(uid)
                            assert data is not None
                            hashlib.sha256(data)
                            got = len(data)
                        else:
                            digest = hashlib.sha256()
                            _, parts = partfetch.fetch_parts_to_disk(box, uid, workdir, digest)
                            got = sum(p.path.stat().st_size for p in parts)
                        wall = time.perf_counter() - wall
                        cpu = time.process_time() - cpu
                        runs.append({"round": round_, "name": name, "wall": wall, "cpu": cpu, "bytes": got,
                                     "mb_s": size / 1e6 / wall})
                        if name == "partfetch":
                            for part in parts:
                                part.path.unlink()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    print("| contender | MB/s median (min-max) | wall s median | CPU s median (this process) |")
    print("|---|---:|---:|---:|")
    for name in ("raw", "partfetch"):
        mine = [r for r in runs if r["name"] == name]
        rates = [float(r["mb_s"]) for r in mine]  # type: ignore[arg-type]
        print(f"| {name} | {statistics.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f}) | "
              f"{statistics.median(float(r['wall']) for r in mine):.2f} | "  # type: ignore[arg-type]
              f"{statistics.median(float(r['cpu']) for r in mine):.2f} |")  # type: ignore[arg-type]
    ratios = [float(p["mb_s"]) / float(r["mb_s"])  # type: ignore[arg-type]
              for r, p in zip(runs[0::2], runs[1::2])]
    print(f"partfetch / raw MB/s, round by round: median {statistics.median(ratios):.2f} "
          f"({min(ratios):.2f}-{max(ratios):.2f}); goal >= 0.90")
    if args.json:
        args.json.write_text(json.dumps({"size": size, "chunk": partfetch.CHUNK, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()

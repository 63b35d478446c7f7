"""``ingest retry --failed``: take up again the emails set aside at the message boundary
(:mod:`ingest.pipeline.one_email`), found by Message-ID in the failed folder or by UID where
they failed, and handle each as a pass would."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ingest.archive.storage import Storage
from ingest.mail.mailbox import Mailbox
from ingest.mail.senders import check_watch_settings
from ingest.pipeline.one_email import Handled, examine, message_id_of, park, screen_safely
from ingest.pipeline.summary import RunSummary
from ingest.settings import Settings
from ingest.state.store import Store


@dataclass
class Retried:
    """One failed email taken up by :func:`retry_failed`."""

    record: dict[str, Any]  # its failed_messages row
    outcome: str  # archived, or why it is still failed (not_found, quarantined, failed ...)
    reason: str | None


def retry_failed(settings: Settings, store: Store, storage: Storage, summary: RunSummary) -> list[Retried]:
    """Take up again every email the state store lists as failed (``ingest status``).

    Each is looked for in the failed folder by its Message-ID, else where it failed by
    its recorded UID (same UIDVALIDITY), then handled as a pass would (screened, fetched,
    parsed, archived). Archived: moved to the processed folder and no longer failed.
    Failing again: it stays (or goes) in the failed folder with its new reason, one more
    attempt counted. One not found anywhere is reported and stays listed.
    """
    check_watch_settings(settings.imap)
    records = store.failed_messages()
    if not records:
        return []
    imap = settings.imap
    done: list[Retried] = []
    claimed: set[tuple[str, int]] = set()
    with Mailbox(imap) as box:
        box.check_folders()
        for record in records:
            key = (record["folder"], record["uidvalidity"], record["uid"])
            found = _locate(box, imap.failed_folder, record, claimed)
            if found is None:
                reason = "not found in the failed folder (by Message-ID) nor where it failed (by UID)"
                summary.problems.append(
                    f"retry {record['message_id'] or 'uid ' + str(record['uid'])}: {reason}"
                )
                done.append(Retried(record, "not_found", reason))
                continue
            folder, uid = found
            screening = box.fetch_screening([uid])
            if uid not in screening:
                done.append(Retried(record, "not_found", "expunged meanwhile"))
                continue
            summary.emails_seen += 1
            header_bytes, size, received_at = screening[uid]
            address, refusal = screen_safely(imap, header_bytes)
            handled = (
                Handled("failed", refusal, address)
                if refusal
                else examine(box, uid, size, address, settings, store, summary, storage, received_at)
            )
            if handled.outcome == "archived":
                box.move(uid, imap.processed_folder)
                store.resolve_failed_message(*key, "archived")
                store.record_email(
                    *key,
                    message_id=handled.message_id,
                    sender=handled.sender,
                    subject=handled.subject,
                    outcome="archived",
                    reason=None,
                )
                summary.emails_archived += 1
                done.append(Retried(record, "archived", None))
                continue
            reason = handled.reason or {
                "unmatched": "no export window is waiting for its report",
                "no_report": "no report in it",
                "gone": "expunged meanwhile",
            }.get(handled.outcome, handled.outcome)
            store.record_failed_message(
                *key,
                message_id=handled.message_id or record["message_id"],
                sha256=handled.sha256 or record["sha256"],
                reason=reason,
            )
            if handled.outcome == "failed":
                summary.emails_failed += 1
            summary.problems.append(
                f"retry {record['message_id'] or 'uid ' + str(record['uid'])}: still failing: {reason}"
            )
            if folder != box.server_folder(imap.failed_folder):
                park(box, store, key, uid, imap.failed_folder)
            done.append(Retried(record, handled.outcome, reason))
    return done


def _locate(
    box: Mailbox, failed_folder: str, record: dict[str, Any], claimed: set[tuple[str, int]]
) -> tuple[str, int] | None:
    """(server folder, UID) of a failed email, selected: in the failed folder by its
    Message-ID, else in the folder it failed in by its UID (same UIDVALIDITY and, when
    known, the same Message-ID). ``claimed`` keeps two records off one copy."""
    places = [("failed", box.server_folder(failed_folder)), ("source", box.server_folder(record["folder"]))]
    for how, folder in places:
        if not box.folder_exists(folder):
            continue
        box.folder = folder
        uidvalidity = box.select()
        if how == "failed" and record["message_id"]:
            uids = [u for u in box.search_message_id(record["message_id"]) if (folder, u) not in claimed]
        elif how == "failed":
            uids = _same_bytes(box, record["sha256"], claimed)
        elif uidvalidity == record["uidvalidity"] and (folder, record["uid"]) not in claimed:
            uids = [record["uid"]]
            if record["message_id"] and message_id_of(box, record["uid"]) != record["message_id"]:
                uids = []
        else:
            uids = []
        if uids:
            claimed.add((folder, uids[0]))
            return folder, uids[0]
    return None


def _same_bytes(box: Mailbox, sha256: str | None, claimed: set[tuple[str, int]]) -> list[int]:
    """UIDs in the selected folder of messages without a Message-ID whose bytes hash to
    ``sha256`` (an email fetched whole before it failed; one fetched part by part has
    the hash of its parts, which this does not recompute)."""
    if not sha256:
        return []
    found = []
    for uid in box.search_without_message_id():
        raw = box.fetch_message(uid) if (box.folder, uid) not in claimed else None
        if raw is not None and hashlib.sha256(raw).hexdigest() == sha256:
            found.append(uid)
    return found

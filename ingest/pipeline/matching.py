"""Which export window an emailed report answers: only on evidence that agrees.

Why so strict: whatever sits in the mailbox can claim to be a report, and a report taken
for the wrong window is archived under the wrong bot, or closes a window with rows that are
not its own. So a report matches a window only when nothing it says contradicts it:

* a bot id named in the file name, subject or body must be the window's (an email carrying
  several reports may name each of their bots in its subject and body);
* dates stated in the file name must be the window's first and last day; dates stated in
  the subject or body must include both;
* a report type named (``standard_report_...``) must be the window's;
* its To must name one of the account's addresses (:mod:`ingest.mail.recipients`):
  another account's genuine report, forwarded here, is nobody's window;
* the server must have received the email (IMAP INTERNALDATE), and the email must say it
  was sent (its Date header, signed by the vendor), no earlier than the window's export
  was first requested, less :data:`CLOCK_SKEW` seconds;
* a report that names no bot matches only when exactly one accepted window could have
  produced it, and no window of the same days (another bot's) that it also agrees with was
  closed by a report naming no bot (that one may have been the wrong report: then the new
  one is a conflict, see :func:`closed_without_a_name`, or unmatched when several such
  windows fit).

Anything else is unmatched: the caller quarantines it with the reason given here.

Example::

    evidence = Evidence.of(report.filename, parsed, several=len(parsed.reports) > 1)
    found = match_window(store, evidence)
    found.window, found.reason
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from ingest.mail.attachments import ParsedEmail
from ingest.report_types import DATASETS, MESSAGE_REPORT_ID
from ingest.state.store import Store
from ingest.state.windows import Window, WindowState

S = WindowState
#: Seconds an email's INTERNALDATE may precede the first request of its window's export:
#: the mail server's and this job's clocks differ a little, INTERNALDATE has whole seconds,
#: and the vendor may mail a small report before its HTTP answer is recorded.
CLOCK_SKEW = 300.0
#: States in which a window's report may still arrive when the report names the window's
#: bot and dates (late mail, a crash after the POST, a window lost or split meanwhile).
WAITING = (S.ACCEPTED, S.SUBMITTING, S.LOST, S.DEFERRED, S.SPLIT, S.ARCHIVED)
#: The marker recorded with a report that matched without naming a bot.
UNNAMED = "matched without a bot id: the only accepted window that could have produced it"

_DATE = re.compile(r"(?<!\d)(\d{4}-\d{2}-\d{2})(?!\d)")
_UUID = re.compile(
    r"(?<![0-9A-Za-z-])([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
    r"-[0-9a-fA-F]{12})(?![0-9A-Za-z-])"
)
_NAMES = "|".join(["message", *DATASETS.values()])
# The simulator's (and so the documented) forms: <type>_report_<bot>_<from>_<to>.csv,
# "Certainly <type> report <bot> <from> - <to>", "... report for bot <bot> from <from> ...".
_FILE_BOT = re.compile(rf"(?:{_NAMES})_report_(.+?)_\d{{4}}-\d{{2}}-\d{{2}}_\d{{4}}-\d{{2}}-\d{{2}}", re.I)
_SUBJECT_BOT = re.compile(r"\breports?\s+(\S+)\s+\d{4}-\d{2}-\d{2}\s+-\s+\d{4}-\d{2}-\d{2}", re.I)
_BODY_BOT = re.compile(r"\bfor bot\s+(\S+?)[\s.,;:]", re.I)


def hinted_report_id(hints: str) -> int | None:
    """The report type a subject or file name speaks of (``standard_report_...``), if any."""
    text = hints.lower().replace(" ", "_")
    for report_id, dataset in DATASETS.items():
        if f"{dataset}_report" in text:
            return report_id
    return MESSAGE_REPORT_ID if "message_report" in text else None


@dataclass(frozen=True)
class Claims:
    """What a text (a file name; a subject and body) says about the report."""

    bots: frozenset[str]
    dates: frozenset[date]
    report_ids: frozenset[int]

    @classmethod
    def of(cls, texts: list[str], known_bots: set[str]) -> Claims:
        bots: set[str] = set()
        dates: set[date] = set()
        kinds: set[int] = set()
        for text in texts:
            bots |= _bots_named(text, known_bots)
            for found in _DATE.findall(text):
                try:
                    dates.add(date.fromisoformat(found))
                except ValueError:
                    continue  # 2024-13-45: not a date
            kind = hinted_report_id(text)
            if kind is not None:
                kinds.add(kind)
        return cls(frozenset(bots), frozenset(dates), frozenset(kinds))

    def __or__(self, other: Claims) -> Claims:
        return Claims(self.bots | other.bots, self.dates | other.dates, self.report_ids | other.report_ids)


def _bots_named(text: str, known_bots: set[str]) -> set[str]:
    """Bot ids in ``text``: any UUID (the vendor's ids), the id in the documented file name,
    subject and body forms, and any bot id this job knows, as a whole word."""
    found = {m.lower() for m in _UUID.findall(text)}
    for pattern in (_FILE_BOT, _SUBJECT_BOT, _BODY_BOT):
        found |= {m.lower() for m in pattern.findall(text)}
    for bot in known_bots:
        if re.search(rf"(?<![A-Za-z0-9-]){re.escape(bot)}(?![A-Za-z0-9-])", text, re.I):
            found.add(bot.lower())
    # A known id is reported in its own spelling, so that it compares equal to the window's.
    spelled = {bot.lower(): bot for bot in known_bots}
    return {spelled.get(bot, bot) for bot in found}


@dataclass(frozen=True)
class Evidence:
    """Everything a report says about where it came from."""

    file: Claims  # the file name: speaks for this report only
    email: Claims  # subject and body: speak for every report of the email
    several: bool  # the email carries several reports (its text may name each of them)
    received_at: float | None  # IMAP INTERNALDATE, epoch seconds
    sent_at: float | None = None  # its Date header, epoch seconds
    elsewhere: str | None = None  # why it was not sent to this account (None: it was, or unknown)

    @classmethod
    def of(
        cls, filename: str, parsed: ParsedEmail, known_bots: set[str], account: tuple[str, ...] = ()
    ) -> Evidence:
        subject = Claims.of([parsed.subject or ""], known_bots)
        # Free prose: a short bot id ("a") may be a word of it, so only the vendor's forms
        # and UUIDs count there, not every id this job knows.
        body = Claims.of([parsed.body_text], set())
        return cls(
            Claims.of([filename], known_bots),
            subject | body,
            len(parsed.reports) > 1,
            parsed.received_at,
            parsed.addressing.sent_at,
            parsed.addressing.refusal(account),
        )

    @property
    def named(self) -> bool:
        """The report names a bot: it carries a window's evidence, not just a guess."""
        return bool(self.file.bots or self.email.bots)

    @property
    def dated(self) -> bool:
        return bool(self.file.dates or self.email.dates)


@dataclass(frozen=True)
class Match:
    """The window a report answers, or None and why not."""

    window: Window | None
    reason: str
    named: bool = False


def requested_at(store: Store, window: Window) -> float | None:
    """The earliest moment this window's export can have been asked for: its first POST
    (every answer is kept with its time), else when it was submitted or accepted."""
    times = [a["at"] for a in store.api_answers(window.id) if a["method"] == "POST"]
    times += [t for t in (window.submitted_at, window.accepted_at) if t is not None]
    return min(times) if times else None


def disagreement(window: Window, evidence: Evidence) -> str | None:
    """Why ``evidence`` cannot be ``window``'s report, or None when nothing contradicts it."""
    span = {window.from_date, window.to_date}
    file, mail = evidence.file, evidence.email
    if file.bots and file.bots != {window.bot_id}:
        return f"its file name names bot {_listed(file.bots)}"
    if mail.bots and (window.bot_id not in mail.bots or (not evidence.several and len(mail.bots) > 1)):
        return f"its subject or text names bot {_listed(mail.bots)}"
    if file.dates and file.dates != span:
        return f"its file name states {_listed(file.dates)}"
    if mail.dates and not span <= mail.dates:
        return f"its subject or text states {_listed(mail.dates)}"
    if file.report_ids and file.report_ids != {window.report_id}:
        return f"its file name names report type {_listed(file.report_ids)}"
    if mail.report_ids and (
        window.report_id not in mail.report_ids or (not evidence.several and len(mail.report_ids) > 1)
    ):
        return f"its subject or text names report type {_listed(mail.report_ids)}"
    return None


def too_early(store: Store, window: Window, evidence: Evidence) -> str | None:
    """Why the email cannot answer ``window``'s export for being older than its request
    (received, or sent by its own Date header), or None."""
    asked = requested_at(store, window)
    if asked is None:
        return None
    if evidence.received_at is not None and evidence.received_at < asked - CLOCK_SKEW:
        return f"the server received it before window {window.id}'s export was requested"
    if evidence.sent_at is not None and evidence.sent_at < asked - CLOCK_SKEW:
        return f"its Date header is before window {window.id}'s export was requested"
    return None


def closed_without_a_name(store: Store, evidence: Evidence) -> Window | None:
    """The one archived window this report (naming no bot, sent to this account) would
    have answered, had a report naming no bot not closed it first: the two are in
    conflict, and a person decides (``ingest resolve``). None when no such window, or more."""
    if evidence.named or evidence.elsewhere:
        return None
    found = _closed_unnamed(store, evidence)
    return found[0] if len(found) == 1 else None


def _closed_unnamed(store: Store, evidence: Evidence) -> list[Window]:
    """Archived windows that agree with ``evidence`` and that a report naming no bot closed
    (a person has not vouched for it since)."""
    return [
        window
        for window in store.windows(states=(S.ARCHIVED,))
        if disagreement(window, evidence) is None
        and too_early(store, window, evidence) is None
        and unnamed_closure(store, window) is not None
    ]


def _same_span(windows: list[Window], others: list[Window]) -> list[Window]:
    """The ``windows`` whose days and report type are those of one of ``others``."""
    spans = {(w.from_date, w.to_date, w.report_id) for w in others}
    return [w for w in windows if (w.from_date, w.to_date, w.report_id) in spans]


def unnamed_closure(store: Store, window: Window, other_than: str = "") -> dict[str, object] | None:
    """The archived report that closed ``window`` without naming a bot, if one did."""
    for earlier in store.window_attachments(window.id):
        if (
            earlier["sha256"] != other_than
            and earlier["outcome"] == "archived"
            and earlier["reason"] == UNNAMED
        ):
            return earlier
    return None


def match_window(store: Store, evidence: Evidence) -> Match:
    """The one window ``evidence`` agrees with (see the module's rules), or why none."""
    named = evidence.named
    if evidence.elsewhere:  # another account's report: no window of ours, whatever it names
        return Match(None, evidence.elsewhere, named)
    states = WAITING if named and evidence.dated else (S.ACCEPTED,)
    # A window archived by GET asked for no email: no report can be its answer.
    windows = [w for w in store.windows(states=states) if w.via != "get"]
    refusals: list[str] = []
    candidates: list[Window] = []
    near: list[str] = []  # why windows of a bot it names do not fit
    for window in windows:
        differs = disagreement(window, evidence)
        if differs is not None:
            if window.bot_id in evidence.file.bots | evidence.email.bots:
                near.append(
                    f"window {window.id} ({window.bot_id} {window.from_date}..{window.to_date}) "
                    f"does not fit: {differs}"
                )
            continue
        early = too_early(store, window, evidence)
        if early:
            refusals.append(early)
            continue
        candidates.append(window)
    shadows = [] if named else _same_span(_closed_unnamed(store, evidence), candidates)
    if shadows:
        # A window a report naming no bot closed may have been closed by the wrong report;
        # this one may be that window's, not the accepted one of the same days (another
        # bot's): a person decides.
        ids = ", ".join(str(w.id) for w in [*shadows, *candidates])
        why = f"it could answer any of windows {ids} (one closed by a report naming no bot)"
        return Match(None, why, named)
    if len(candidates) == 1:
        return Match(candidates[0], "", named)
    if candidates:
        ids = ", ".join(str(w.id) for w in candidates)
        return Match(None, f"it could answer any of windows {ids}: nothing tells which", named)
    if refusals:
        return Match(None, refusals[0], named)
    if near:
        return Match(None, near[0], named)
    if named:
        return Match(
            None,
            f"no export window of bot {_listed(evidence.file.bots or evidence.email.bots)}"
            f" agrees with it{_stated(evidence)}",
            named,
        )
    return Match(None, "it names no bot, and no accepted export window agrees with it", named)


def _stated(evidence: Evidence) -> str:
    dates = evidence.file.dates or evidence.email.dates
    return f" (it states {_listed(dates)})" if dates else ""


def _listed(values: frozenset[str] | frozenset[date] | frozenset[int]) -> str:
    return ", ".join(sorted(str(v) for v in values))

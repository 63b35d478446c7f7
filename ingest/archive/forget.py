"""Forget rows: the one engine under ``ingest erase`` (a subject) and ``ingest prune`` (expired days).

A :class:`Selection` (:mod:`ingest.archive.forget_selection`) says which rows go.
:func:`plan` (:mod:`ingest.archive.forget_plan`) finds them (read only: the dry run);
:func:`forget` removes them in steps, each durable before the next, so that a run killed
anywhere is finished (or, before anything was changed, undone) by :func:`resume`::

    forgetting/<id>/plan.json     what will be replaced, and the new names  crash point "forget_after_plan"
    new data files, rewritten raw and quarantine copies under forgetting/<id>/...
    forgetting/<id>/ready.json    every replacement written (from here no subject id is needed)
    Delta      one commit per table: remove the old files, add the rewritten ones
               (application transaction "certainly-ingest:forget-<id>": never twice)
                                                                         crash point "forget_after_delta"
    raw/...    each rewritten raw copy (and quarantined file) replaces its original, same key
                                                                         crash point "forget_after_raw"
    vacuum     at once (retention 0): no older version's file is left to time-travel to
    manifests/erasure-<id>.json   what was removed and rewritten: verify's evidence
                                                                         crash point "forget_before_audit"
    audit/<stamp>-<id>.json       the audit record (ingest.archive.audit); forgetting/<id>/ removed

Rows leave a table by a file-level rewrite (remove and add actions), not a Delta ``DELETE``:
delta-rs writes a delete's predicate into the commit info, which would keep the subject's id
in ``_delta_log`` for ever. Our commits' file statistics hold only integers
(:func:`ingest.archive.delta.file_stats`); a log that holds the id anyway (a file statistic
written by another tool) is checkpointed and its older entries removed.

Raw copies keep their key (named after the *original* sha256: a re-delivered report is still
recognised and never archived again); the erasure record gives their new sha256. A CSV is
read by value and rewritten record by record (:mod:`ingest.archive.copies`): every other
record's bytes stay exactly as they were.

Example::

    found = plan(storage, SubjectSelection(("4242",)))       # the dry run
    done = forget(storage, SubjectSelection(("4242",)), kind="erase", subject="<hash>", ...)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import quote

import pyarrow.parquet as pq
from deltalake.transaction import AddAction, RemoveAction

from ingest.archive import audit, subjects
from ingest.archive.commit import write_bytes_once
from ingest.archive.compact import vacuum_archive
from ingest.archive.delta import APP, META, add_action, commit_actions, guarded, open_table
from ingest.archive.deltalog import transaction_version
from ingest.archive.forget_plan import (
    CopyChange,
    FileChange,
    Plan,
    candidate_copies,
    known_bots,
    plan,
    raw_days,
    refuse_unread_holder,
    scan_copy,
    unsearched_quarantine,
)
from ingest.archive.forget_selection import (
    EXTRA,
    SUBJECT_ID,
    SUBJECT_JSON,
    ExpiredSelection,
    Selection,
    SubjectSelection,
    UnreadableSubject,
    escapes,
    subject_expr,
    subject_ids,
)
from ingest.archive.layout import (
    DELTA_LOG,
    FORGETTING,
    MANIFESTS,
    QUARANTINE,
    RAW,
    erasure_key,
    forgetting_dir,
    is_erasure,
)
from ingest.archive.manifests import next_erasure_seq, read_manifests
from ingest.archive.storage import Storage, local_copy, sha256_file
from ingest.crashpoints import crash_point
from ingest.errors import IngestError, OutputError
from ingest.parse.arrowrows import parquet_writer
from ingest.records import (
    ErasurePlan,
    ErasureRecord,
    build,
    dump,
    load,
)


@dataclass
class ForgetOutcome:
    """What :func:`forget` did: the record written, the audit record, the tables' versions."""

    plan: Plan
    versions: dict[str, int] = field(default_factory=dict)
    record: str = ""
    audit: str = ""
    vacuumed: int = 0


def forget(storage: Storage, selection: Selection, found: Plan, *, actor: str, reason: str) -> ForgetOutcome:
    """Forget what ``found`` (from :func:`plan`) lists: write the plan, the replacements, then
    finish (:func:`finish`). The caller holds the job lock. A replacement that cannot be
    written (a copy that reads otherwise than planned) undoes what was written and raises:
    nothing half-done, no record."""
    refuse_locked_copies(storage, found)
    refuse_whole_removals(found)
    found.meta.update({"actor": actor, "reason": reason})
    if not found.files and not found.copies:  # nothing of theirs: nothing is touched
        done = ForgetOutcome(found)
        if found.kind == "erase":  # a request answered with nothing found is still on record
            body = {
                "kind": found.kind,
                **{k: v for k, v in found.meta.items() if k not in ("actor", "reason")},
            }
            done.audit = audit.append(
                storage, {**body, "tables": [], "copies": [], "found": "nothing"}, actor=actor, reason=reason
            )
        return done
    folder = forgetting_dir(found.id)
    for change in found.files:
        if change.forgotten < change.rows:
            stem = change.key.rsplit("/", 1)[-1].removesuffix(".parquet")
            change.new_key = f"{change.key.rsplit('/', 1)[0]}/{stem.split('.')[0]}.f{found.id[:8]}.parquet"
    write_bytes_once(storage, f"{folder}/plan.json", dump(found))
    crash_point("forget_after_plan")
    try:
        for change in found.files:
            if change.new_key is not None:
                _rewrite_data(storage, change, selection)
        for copy in found.copies:
            _rewrite_copy(storage, copy, selection, f"{folder}/{copy.key}")
    except IngestError:
        undo(storage, found.id)
        raise
    write_bytes_once(storage, f"{folder}/ready.json", dump(found))
    return finish(storage, found)


def refuse_whole_removals(found: Plan) -> None:
    """A file is removed whole only when every record in it is one to forget: refuse a
    plan that says otherwise (one written by hand, or by an older version)."""
    for copy in found.copies:
        if copy.removed and copy.rows_removed == 0:
            raise OutputError(f"refused: the plan removes {copy.key} whole, but none of its records is to go")


def refuse_locked_copies(storage: Storage, found: Plan) -> None:
    """Raise OutputError, before anything changes, when a file to rewrite is under an S3
    Object Lock retention and bypassing it is not allowed: a person decides."""
    if storage.bypass_allowed:
        return
    locked = [c.key for c in found.copies if storage.retained_until(c.key) is not None]
    if locked:
        raise OutputError(
            f"{len(locked)} file(s) holding these rows are under an S3 Object Lock retention "
            f"(first: {storage.describe(locked[0])}); nothing was changed",
            hint="INGEST_OUTPUT__OBJECT_LOCK_BYPASS",
        )


def _rewrite_data(storage: Storage, change: FileChange, selection: Selection) -> None:
    """Publish the file's rows less the forgotten ones under ``change.new_key``."""
    assert change.new_key is not None
    frame = storage.scan([change.key], hive_partitioning=False)
    expr = selection.rows(frame.collect_schema())
    assert expr is not None
    schema = storage.parquet_metadata(change.key).schema.to_arrow_schema()
    tmp = storage.temp("forget.parquet")
    try:
        writer = (
            parquet_writer(tmp, schema)
            if "timestamp" in schema.names
            else pq.ParquetWriter(tmp, schema, compression="zstd", write_statistics=False)
        )
        with writer:
            for batch in frame.filter(~expr).collect_batches(chunk_size=50_000):
                writer.write_table(batch.to_arrow().cast(schema))
        change.new_rows = pq.ParquetFile(tmp).metadata.num_rows
        change.new_sha256 = sha256_file(tmp)
        if not storage.publish(tmp, change.new_key) and storage.sha256(change.new_key) != change.new_sha256:
            raise OutputError(f"cannot write {storage.describe(change.new_key)}: another file is there")
    finally:
        tmp.unlink(missing_ok=True)


def _rewrite_copy(storage: Storage, copy: CopyChange, selection: Selection, staged: str) -> None:
    """Rewrite a raw copy or quarantined file without the records into ``staged`` (nothing
    to write when it goes whole). Raises OutputError when it reads otherwise than planned:
    another record of someone else would go with a file removed whole, or the count changed."""
    tmp = storage.temp("forget-copy")
    try:
        if not copy.original_sha256:
            source, temporary = local_copy(storage, copy.key)
            copy.original_sha256 = sha256_file(source)
            if temporary:
                source.unlink(missing_ok=True)
        found = scan_copy(storage, copy.key, selection, target=tmp)
        if found.kept and copy.removed:
            raise OutputError(
                f"refused: {copy.key} would be removed whole but holds another person's record; "
                "nothing was changed"
            )
        if found.removed != copy.rows_removed or (not found.kept and not copy.removed):
            raise OutputError(
                f"{copy.key} changed since the plan ({found.removed} record(s) to go, "
                f"{copy.rows_removed} planned); nothing was changed: run the command again"
            )
        if copy.removed:
            return
        copy.new_sha256, copy.size = sha256_file(tmp), tmp.stat().st_size
        if not storage.publish(tmp, staged) and storage.sha256(staged) != copy.new_sha256:
            raise OutputError(f"cannot write {storage.describe(staged)}: another file is there")
    finally:
        tmp.unlink(missing_ok=True)


def finish(storage: Storage, found: Plan) -> ForgetOutcome:
    """From ``ready.json`` on: commit, swap the copies, vacuum, record, audit. Needs no
    subject id, and is safe to run again from anywhere in it."""
    done = ForgetOutcome(found)
    folder = forgetting_dir(found.id)
    for dataset in sorted({f.dataset for f in found.files}):
        done.versions[dataset] = _commit(
            storage, dataset, [f for f in found.files if f.dataset == dataset], found.id
        )
    crash_point("forget_after_delta")
    for copy in found.copies:
        _swap(storage, copy, f"{folder}/{copy.key}")
    crash_point("forget_after_raw")
    datasets = tuple(sorted({f.dataset for f in found.files} | set(found.logs)))
    for change in found.files:  # superseded at once: no older version can be read back
        storage.delete(change.key)
    subjects.after_forget(storage, {(f.dataset, f.bot_id) for f in found.files})
    done.vacuumed = sum(
        len(v) for v in vacuum_archive(storage, retention_hours=0, datasets=datasets).removed.values()
    )
    for dataset in found.logs:
        _drop_old_log(storage, dataset)
    # A versioned bucket (S3 Object Lock) keeps what plain deletes removed as older versions.
    for prefix in (*{f"{d}/" for d in datasets}, f"{RAW}/", f"{QUARANTINE}/"):
        storage.purge_old_versions(prefix)
    done.record = erasure_key(found.id)
    record = erasure_record(found, done.versions, _next_seq(storage, done.record))
    write_bytes_once(storage, done.record, dump(record))
    crash_point("forget_before_audit")
    body = {
        "kind": found.kind,
        **{k: v for k, v in found.meta.items() if k not in ("actor", "reason")},
        "record": done.record,
        "record_sha256": storage.sha256(done.record),
        "tables": [
            {
                "dataset": d,
                "version": done.versions.get(d),
                "rows": n,
                "files": sum(1 for f in found.files if f.dataset == d),
            }
            for d, n in sorted(found.rows_by_table().items())
        ]
        + [
            {"dataset": d, "version": None, "rows": 0, "files": 0, "note": "no bot user column"}
            for d in found.skipped
        ],
        "copies": [{"key": c.key, "rows": c.rows_removed, "removed": c.removed} for c in found.copies],
    }
    done.audit = audit.append(
        storage,
        body,
        actor=str(found.meta.get("actor", "")),
        reason=str(found.meta.get("reason", "")),
        record_id=found.id,
    )
    for obj in storage.objects(f"{folder}/"):
        storage.delete(obj.key)
    return done


def _next_seq(storage: Storage, key: str) -> int:
    """This erasure record's ``seq``: after every erasure record already there (read at the
    moment it is written, under the job lock; a resumed run's record, already written, keeps
    its own)."""
    objects = [o for o in storage.objects(f"{MANIFESTS}/") if is_erasure(o.key) and o.key != key]
    records = read_manifests(storage, objects)
    return next_erasure_seq([(r.key, r.doc.erasure) for r in records if isinstance(r.doc, ErasureRecord)])


def erasure_record(found: Plan, versions: dict[str, int], seq: int) -> ErasureRecord:
    """``manifests/erasure-<id>.json``: per table the files removed and their replacements
    (the manifest walker applies them), and each rewritten copy's original and new sha256;
    ``seq`` orders the records as they were made (``at`` is whole seconds)."""
    tables = []
    for dataset in sorted({f.dataset for f in found.files}):
        changes = [f for f in found.files if f.dataset == dataset]
        tables.append(
            {
                "dataset": dataset,
                "version": versions.get(dataset),
                "rows": sum(f.forgotten for f in changes),
                "replaces": [{"path": f.key, "rows": f.rows} for f in changes],
                "files": [
                    {"path": f.new_key, "rows": f.new_rows, "sha256": f.new_sha256}
                    for f in changes
                    if f.new_key
                ],
                "days": sorted({f"{f.bot_id}/{f.day}" for f in changes}),
            }
        )
    return build(
        ErasureRecord,
        {
            "erasure": {
                "id": found.id,
                "seq": seq,
                "kind": found.kind,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "tables": tables,
                "copies": [
                    {
                        "key": c.key,
                        "original_sha256": c.original_sha256,
                        "new_sha256": None if c.removed else c.new_sha256,
                        "size": None if c.removed else c.size,
                        "rows_removed": c.rows_removed,
                        "removed": c.removed,
                    }
                    for c in found.copies
                ],
            }
        },
    )


def _commit(storage: Storage, dataset: str, changes: list[FileChange], forget_id: str) -> int:
    """One commit removing the files and adding their rewrites (once: app transaction)."""
    table = open_table(storage, dataset)
    assert table is not None
    app = f"{APP}:forget-{forget_id}"
    if table.transaction_version(app) is None:
        now = int(time.time() * 1000)
        actions: list[AddAction | RemoveAction] = []
        for change in changes:
            relative = change.key.removeprefix(f"{dataset}/")
            partition: dict[str, str | None] = {"bot_id": change.bot_id, "date": change.day}
            actions.append(RemoveAction(quote(relative, safe="/="), True, now, None, partition))
            if change.new_key:
                actions.append(
                    add_action(
                        storage,
                        dataset,
                        change.new_key,
                        change.new_rows,
                        bot_id=change.bot_id,
                        day=change.day,
                    )
                )
        commit_actions(storage, dataset, table, actions, app=app, metadata={f"{META}.forget": forget_id})
    made = transaction_version(storage, dataset, app, table.version())
    return table.version() if made is None else made  # its log entry cut back since: the latest


def _swap(storage: Storage, copy: CopyChange, staged: str) -> None:
    """Put the rewritten copy in place of the original (same key), or remove the original.
    The staged copy is removed only once it is in place: while it is there, this is to do."""
    if copy.removed:
        storage.delete(copy.key)
        return
    if not storage.exists(staged):
        if storage.sha256(copy.key) != copy.new_sha256:
            raise OutputError(f"cannot finish the erasure: {storage.describe(staged)} is missing")
        return  # swapped by an earlier, killed run
    source, temporary = local_copy(storage, staged)  # a local archive's own file: linked, not copied
    try:
        storage.delete(copy.key)  # the original goes; the rewritten copy waits at `staged` until published
        crash_point("forget_in_swap")
        storage.publish(source, copy.key)
    finally:
        if temporary:
            source.unlink(missing_ok=True)
    storage.delete(staged)


def _drop_old_log(storage: Storage, dataset: str) -> None:
    """Checkpoint the table and remove the log entries (and checkpoints) before it: they
    hold what was forgotten. Time travel before the checkpoint ends."""
    table = open_table(storage, dataset)
    assert table is not None
    guarded(storage, dataset, table.create_checkpoint)
    version = table.version()
    for obj in storage.objects(f"{dataset}/{DELTA_LOG}/"):
        name = obj.key.rsplit("/", 1)[-1]
        number = name.split(".")[0]
        if number.isdigit() and int(number) < version and (name.endswith(".json") or ".checkpoint." in name):
            storage.delete(obj.key)
        elif name.endswith(".crc") and number.isdigit() and int(number) < version:
            storage.delete(obj.key)


def pending(storage: Storage) -> list[str]:
    """Ids of erasures or prunes in progress (a run was killed in the middle)."""
    return sorted({o.key.split("/")[1] for o in storage.objects(f"{FORGETTING}/")})


def resume(storage: Storage) -> list[tuple[str, str]]:
    """Finish every erasure or prune in progress whose replacements were all written; undo
    one killed before (nothing had been changed yet: its new files are removed, and it is
    to be run again). Returns (id, "finished" | "undone")."""
    done = []
    for forget_id in pending(storage):
        folder = forgetting_dir(forget_id)
        if storage.exists(f"{folder}/ready.json"):
            finish(storage, _read_plan(storage, f"{folder}/ready.json"))
            done.append((forget_id, "finished"))
            continue
        undo(storage, forget_id)
        done.append((forget_id, "undone"))
    return done


def _read_plan(storage: Storage, key: str) -> Plan:
    """An erasure's plan as written (a newer format than this tool reads is refused)."""
    return load(ErasurePlan, storage.read_bytes(key), key)


def undo(storage: Storage, forget_id: str) -> None:
    """Remove what an erasure or prune wrote before ``ready.json`` (new data files, staged
    copies): nothing had been changed yet, so nothing is left of it."""
    folder = forgetting_dir(forget_id)
    if storage.exists(f"{folder}/plan.json"):
        planned = _read_plan(storage, f"{folder}/plan.json")
        for change in planned.files:
            if change.new_key:
                storage.delete(change.new_key)
    for obj in storage.objects(f"{folder}/"):
        storage.delete(obj.key)


#: The engine's parts live in forget_selection (which rows), forget_plan (what would go) and
#: here (doing it, resuming it); imported from here too.
__all__ = [
    "EXTRA",
    "SUBJECT_ID",
    "SUBJECT_JSON",
    "CopyChange",
    "ExpiredSelection",
    "FileChange",
    "ForgetOutcome",
    "Plan",
    "Selection",
    "SubjectSelection",
    "UnreadableSubject",
    "candidate_copies",
    "erasure_record",
    "escapes",
    "finish",
    "forget",
    "known_bots",
    "pending",
    "plan",
    "raw_days",
    "refuse_unread_holder",
    "resume",
    "scan_copy",
    "subject_expr",
    "subject_ids",
    "undo",
    "unsearched_quarantine",
]

"""Looking after the archive, as jobs: compaction, vacuum, migration to Delta tables, and
the status of the state store beside the tables. Each function is what its command does
(lock, staging sweep and the rest: ingest.ops.job.open_job), callable from Python::

    from ingest.ops.upkeep import compact
    done = compact(load_settings(), dataset="messages", min_files=4)
    done.partitions, done.files_before, done.files_after

Heavy modules are imported inside the functions: the command line imports this module only
for the command it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ingest.errors import IngestError
from ingest.ops.job import open_job
from ingest.settings import Settings

if TYPE_CHECKING:
    from ingest.archive.compact import CompactSummary, VacuumSummary
    from ingest.archive.migrate import MigrateSummary
    from ingest.ops.verify import VerifyReport


def compact(settings: Settings, *, dataset: str, bots: list[str] | None, min_files: int) -> CompactSummary:
    """`ingest compact`: merge each partition's small files into one, recorded in a
    compaction manifest."""
    from ingest.archive.compact import compact_archive

    with open_job(settings) as (_, storage):
        return compact_archive(storage, dataset=dataset, bots=bots, min_files=min_files)


def vacuum(settings: Settings, *, retention_hours: int, dry_run: bool) -> VacuumSummary:
    """`ingest vacuum`: remove data files no table version within the retention reads."""
    from ingest.archive.compact import vacuum_archive

    with open_job(settings) as (_, storage):
        return vacuum_archive(storage, retention_hours=retention_hours, dry_run=dry_run)


@dataclass
class Migrated:
    """What `ingest migrate` did, and the verification run after it."""

    done: MigrateSummary
    report: VerifyReport


def migrate(settings: Settings) -> Migrated:
    """`ingest migrate`: a plain Parquet archive into Delta tables in place, its old audit
    salt moved out of it (beside the state store), then verified."""
    from ingest.archive.migrate import migrate_archive
    from ingest.ops.auditkey import move_archive_salt
    from ingest.ops.verify import verify_archive

    with open_job(settings) as (_, storage):
        done = migrate_archive(storage)
        move_archive_salt(settings, storage)
        return Migrated(done, verify_archive(storage))


def status(settings: Settings) -> dict[str, Any]:
    """`ingest status`: windows per bot and their states, rows, failed emails (see
    ingest.ops.status), and each Delta table's version under ``tables``. An unreachable
    archive is one line under ``tables_error``: the state store is what status is about."""
    from ingest.archive.compact import ALL_DATASETS
    from ingest.archive.delta import table_versions
    from ingest.archive.storage import storage_for
    from ingest.ops.status import collect_status
    from ingest.state.store import Store

    with Store.open(settings.state.path) as store:
        report = collect_status(store, settings.requester)
    try:
        report["tables"] = table_versions(storage_for(settings), ALL_DATASETS)
    except IngestError as error:
        report["tables"], report["tables_error"] = {}, str(error)
    return report

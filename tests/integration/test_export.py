"""`ingest export`, `ingest keygen` and `ingest verify-export` on an archive built by
`ingest import` of simulator CSVs: signed bundles, tampering, CSV neutralisation, subject access."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import zipfile
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ingest.simulator import generate_messages
from ingest.simulator.data import rows_to_csv
from ingest.simulator.reports import generate_report_rows, report_to_csv
from tests.support.job import run_ingest

pytestmark = pytest.mark.integration

BOT_A, BOT_B = "bot-a", "bot-b"
#: Cells a spreadsheet would run as formulas, planted in bot A's messages.
FORMULAS = [
    '=HYPERLINK("http://example.com/x","click")',
    "+1+2",
    "-3+4",
    "@SUM(A1:A2)",
    "\tindented",
    "\rcarriage",
]
#: A bot user who wrote to both bots.
SUBJECT = {"id": 4242, "created_date": "2023-12-01T00:00:00.000000Z"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | dict[str, str]]:
    """An archive of two bots (Message Data) and one Standard report, plus a key pair."""
    work = tmp_path_factory.mktemp("export")
    rows_a = generate_messages(BOT_A, date(2024, 1, 1), date(2024, 1, 8))
    for row, text in zip(rows_a[1:], FORMULAS, strict=False):
        row["message"] = text
    rows_b = generate_messages(BOT_B, date(2024, 1, 5), date(2024, 1, 12))
    for row in rows_a[10:13] + rows_b[20:24]:
        row["botuser"] = dict(SUBJECT)
    (work / "a.csv").write_bytes(rows_to_csv(rows_a))
    (work / "b.csv").write_bytes(rows_to_csv(rows_b))
    (work / "std.csv").write_bytes(
        report_to_csv(2, generate_report_rows(2, BOT_A, date(2024, 1, 1), date(2024, 1, 8)))
    )
    env = {
        "INGEST_OUTPUT__ROOT": str(work / "archive"),
        "INGEST_STATE__PATH": str(work / "state.sqlite"),
        "INGEST_EXPORT__SIGNING_KEY_FILE": str(work / "signer.key"),
    }
    for args in (
        ["a.csv", "--bot", BOT_A],
        ["b.csv", "--bot", BOT_B],
        ["std.csv", "--bot", BOT_A, "--report-type", "2"],
    ):
        done = run_ingest("import", *args, env=env, cwd=work)
        assert done.returncode == 0, done.stderr
    for name in ("signer.key", "other.key"):
        done = run_ingest("keygen", "--out", name, env=env, cwd=work)
        assert done.returncode == 0, done.stderr
    return {"work": work, "env": env}


def _export(
    archive: dict[str, Path | dict[str, str]], out: str, *args: str, env: dict[str, str | None] | None = None
) -> tuple[subprocess.CompletedProcess[str], Path]:
    work = archive["work"]
    assert isinstance(work, Path) and isinstance(archive["env"], dict)
    target = work / out
    if target.is_dir():
        shutil.rmtree(target)
    target.unlink(missing_ok=True)
    done = run_ingest("export", *args, "--out", str(target), env={**archive["env"], **(env or {})}, cwd=work)
    return done, target


def _verify(
    archive: dict[str, Path | dict[str, str]], bundle: Path, key: str = "signer.key.pub"
) -> subprocess.CompletedProcess[str]:
    work = archive["work"]
    assert isinstance(work, Path)
    return run_ingest("verify-export", str(bundle), "--public-key", str(work / key), cwd=work)


def _unzipped(bundle: Path) -> Path:
    folder = bundle.with_suffix(".d")
    shutil.rmtree(folder, ignore_errors=True)
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(folder)
    return folder


def test_keygen_writes_a_private_key_only_its_owner_reads(archive: dict[str, Path | dict[str, str]]) -> None:
    work = archive["work"]
    assert isinstance(work, Path)
    assert (work / "signer.key").stat().st_mode & 0o777 == 0o600
    assert (work / "signer.key.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again = run_ingest("keygen", "--out", "signer.key", cwd=work)
    assert again.returncode == 2 and "exists" in again.stderr


def test_export_then_verify_export_passes_and_standard_tools_agree(
    archive: dict[str, Path | dict[str, str]],
) -> None:
    done, bundle = _export(archive, "all.zip", "--bot", BOT_A, "--bot", BOT_B, "--format", "csv")

    assert done.returncode == 0, done.stderr
    assert "BEGIN PRIVATE KEY" not in done.stdout + done.stderr
    checked = _verify(archive, bundle)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK" in checked.stdout
    folder = _unzipped(bundle)
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    assert sums.stdout.count(": OK") == 5  # two data files, summary, manifest, signature
    work = archive["work"]
    assert isinstance(work, Path)
    openssl = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            str(work / "signer.key.pub"),
            "-rawin",
            "-in",
            "manifest.json",
            "-sigfile",
            "manifest.json.sig",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert openssl.returncode == 0 and "Signature Verified Successfully" in openssl.stdout
    manifest = json.loads((folder / "manifest.json").read_text())
    with duckdb.connect() as con:
        per_day = con.execute(
            f"SELECT bot_id, strftime(date, '%Y-%m-%d'), count(*) FROM read_parquet("
            f"'{work}/archive/messages/bot_id=*/*/*.parquet', hive_partitioning=true) GROUP BY ALL"
        ).fetchall()
    assert {(b, d): n for b, d, n in per_day} == {
        (b, d): n for b, days in manifest["counts"]["messages"].items() for d, n in days.items()
    }
    assert manifest["archive"]["files"] > 0 and len(manifest["archive"]["listing_sha256"]) == 64
    assert {s["kind"] for s in manifest["sources"]} == {"import"}


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_a_folder_bundle_in_each_format_verifies(archive: dict[str, Path | dict[str, str]], fmt: str) -> None:
    done, bundle = _export(
        archive,
        f"folder-{fmt}",
        "--bot",
        BOT_A,
        "--from",
        "2024-01-02",
        "--to",
        "2024-01-05",
        "--format",
        fmt,
    )

    assert done.returncode == 0, done.stderr
    assert (bundle / "data" / "messages" / f"{BOT_A}.{fmt}").is_file()
    checked = _verify(archive, bundle)
    assert checked.returncode == 0, checked.stdout
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert sorted(manifest["counts"]["messages"][BOT_A]) == [f"2024-01-0{d}" for d in range(2, 6)]


def test_one_changed_byte_fails_naming_the_file(archive: dict[str, Path | dict[str, str]]) -> None:
    _, bundle = _export(archive, "tamper-byte", "--bot", BOT_A, "--format", "csv")
    data = bundle / "data" / "messages" / f"{BOT_A}.csv"
    content = bytearray(data.read_bytes())
    content[-5] ^= 0x01
    data.write_bytes(bytes(content))

    checked = _verify(archive, bundle)

    assert checked.returncode == 1
    assert f"data/messages/{BOT_A}.csv: sha256 differs from SHA256SUMS" in checked.stdout
    assert f"data/messages/{BOT_A}.csv: sha256 differs from manifest.json" in checked.stdout


def test_a_removed_file_fails_naming_it(archive: dict[str, Path | dict[str, str]]) -> None:
    _, bundle = _export(archive, "tamper-gone.zip", "--bot", BOT_A, "--bot", BOT_B, "--format", "parquet")
    folder = _unzipped(bundle)
    (folder / "data" / "messages" / f"{BOT_B}.parquet").unlink()

    checked = _verify(archive, folder)

    assert checked.returncode == 1
    assert f"data/messages/{BOT_B}.parquet: missing" in checked.stdout


def test_a_signature_by_another_key_fails(archive: dict[str, Path | dict[str, str]]) -> None:
    work = archive["work"]
    assert isinstance(work, Path)
    _, bundle = _export(
        archive,
        "other-key.zip",
        "--bot",
        BOT_A,
        env={"INGEST_EXPORT__SIGNING_KEY_FILE": str(work / "other.key")},
    )

    checked = _verify(archive, bundle)

    assert checked.returncode == 1
    assert "manifest.json.sig: not a signature of manifest.json by this public key" in checked.stdout
    assert _verify(archive, bundle, key="other.key.pub").returncode == 0


def test_a_changed_count_in_the_manifest_breaks_the_signature(
    archive: dict[str, Path | dict[str, str]],
) -> None:
    _, bundle = _export(archive, "tamper-count", "--bot", BOT_A)
    manifest = bundle / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"rows": ', '"rows": 1', 1))

    checked = _verify(archive, bundle)

    assert checked.returncode == 1
    assert "manifest.json.sig: not a signature" in checked.stdout
    assert "manifest.json: sha256 differs from SHA256SUMS" in checked.stdout


def test_formula_cells_are_neutral_in_csv_and_intact_in_parquet(
    archive: dict[str, Path | dict[str, str]],
) -> None:
    _, as_csv = _export(archive, "formulas-csv", "--bot", BOT_A, "--format", "csv")
    _, as_parquet = _export(archive, "formulas-parquet", "--bot", BOT_A, "--format", "parquet")

    raw = (as_csv / "data" / "messages" / f"{BOT_A}.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    cells = [row for row in csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline=""))]
    messages = {row["id"]: row["message"] for row in cells}
    kept = pl.read_parquet(as_parquet / "data" / "messages" / f"{BOT_A}.parquet")
    originals = dict(zip(kept["id"].cast(pl.String).to_list(), kept["message"].to_list(), strict=True))
    for text in FORMULAS:
        (row_id,) = [k for k, v in originals.items() if v == text]
        assert messages[row_id] == "'" + text
    for cell in (c for row in cells for c in row.values()):
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_subject_access_holds_exactly_the_subjects_rows(archive: dict[str, Path | dict[str, str]]) -> None:
    work = archive["work"]
    assert isinstance(work, Path)
    done, bundle = _export(archive, "subject", "--botuser", str(SUBJECT["id"]), "--format", "parquet")

    assert done.returncode == 0, done.stderr
    assert _verify(archive, bundle).returncode == 0
    got = pl.concat([pl.read_parquet(p) for p in sorted((bundle / "data").rglob("*.parquet"))])
    with duckdb.connect() as con:
        want = con.execute(
            f"SELECT bot_id, id FROM read_parquet('{work}/archive/messages/bot_id=*/*/*.parquet', "
            "hive_partitioning=true) "
            f"WHERE json_extract(botuser, '$.id')::VARCHAR = '{SUBJECT['id']}'"
        ).fetchall()
    assert sorted(zip(got["bot_id"].to_list(), got["id"].to_list(), strict=True)) == sorted(want)
    assert {b for b, _ in want} == {BOT_A, BOT_B} and len(want) == 7
    summary = (bundle / "SUMMARY.txt").read_text()
    assert "Subject access export" in summary and "4242" in summary
    assert "standard: no bot user column" in summary  # type 2 holds aggregates, said in plain words


def test_export_without_a_signing_key_is_a_configuration_error(
    archive: dict[str, Path | dict[str, str]],
) -> None:
    done, bundle = _export(
        archive, "unsigned.zip", "--bot", BOT_A, env={"INGEST_EXPORT__SIGNING_KEY_FILE": None}
    )

    assert done.returncode == 2
    assert "INGEST_EXPORT__SIGNING_KEY_FILE is not set" in done.stderr
    assert not bundle.exists()


def test_the_signing_key_may_come_from_a_secret_file_and_is_never_shown(
    archive: dict[str, Path | dict[str, str]],
) -> None:
    work = archive["work"]
    assert isinstance(work, Path)
    secrets = work / "secrets"
    secrets.mkdir(exist_ok=True)
    pem = (work / "signer.key").read_text()
    (secrets / "ingest_export__signing_key").write_text(pem)

    done, bundle = _export(
        archive,
        "from-secret.zip",
        "--bot",
        BOT_A,
        env={"INGEST_EXPORT__SIGNING_KEY_FILE": None, "INGEST_SECRETS_DIR": str(secrets)},
    )

    assert done.returncode == 0, done.stderr
    body = pem.splitlines()[1]
    assert body not in done.stdout + done.stderr
    assert _verify(archive, bundle).returncode == 0


def test_a_conversation_and_a_date_range_export_exactly_those_rows(
    archive: dict[str, Path | dict[str, str]],
) -> None:
    work = archive["work"]
    assert isinstance(work, Path)
    source = f"read_parquet('{work}/archive/messages/bot_id=*/*/*.parquet', hive_partitioning=true)"
    with duckdb.connect() as con:
        (conversation,) = con.execute(
            f"SELECT conversation_id FROM {source} WHERE bot_id = '{BOT_B}' GROUP BY 1 "
            "ORDER BY count(*) DESC, 1 LIMIT 1"
        ).fetchone() or ("",)
        want = con.execute(
            f"SELECT id FROM {source} WHERE bot_id = '{BOT_B}' AND conversation_id = ? "
            "AND date BETWEEN '2024-01-05' AND '2024-01-10'",
            [conversation],
        ).fetchall()

    done, bundle = _export(
        archive,
        "conversation",
        "--bot",
        BOT_B,
        "--conversation",
        conversation,
        "--from",
        "2024-01-05",
        "--to",
        "2024-01-10",
        "--format",
        "jsonl",
    )

    assert done.returncode == 0, done.stderr
    lines = (bundle / "data" / "messages" / f"{BOT_B}.jsonl").read_text().splitlines() if want else []
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(i for (i,) in want)
    assert want, "the chosen conversation has rows in the range"
    assert _verify(archive, bundle).returncode == 0

"""Good rows as Arrow tables, and the Parquet files they are written to.

The streaming path reads with pyarrow. Converting every column to polars and back for
the Parquet writer would copy the text (most of the bytes) twice, and hold it twice; so
only the short columns :func:`ingest.parse.validate.judge` casts go to polars, and the good
rows are put together here from the reader's own text arrays and the typed values.

Example::

    verdict = judge(pl.from_arrow(table.select(needed_columns(plan))), plan, first_row=1)
    good = good_table(table, plan, verdict, keep)   # STAGE_SCHEMA
    with parquet_writer(tmp, FILE_SCHEMA) as writer: ...
    stamp(tmp, stand_in, sha)                       # the real source_sha256, in place
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.parse.schema import MESSAGE_COLUMNS, file_schema
from ingest.parse.validate import ROW_NUMBER, ColumnPlan, Verdict

_ARROW_TYPES: dict[type[pl.DataType], pa.DataType] = {
    pl.Int64: pa.int64(),
    pl.Boolean: pa.bool_(),
    pl.String: pa.string(),  # what pyarrow's CSV reader gives: no cast, no copy
    pl.Datetime: pa.timestamp("us", tz="UTC"),
}


def arrow_type(dtype: pl.DataType) -> pa.DataType:
    """The Arrow type a canonical column is written with."""
    return _ARROW_TYPES[type(dtype)]


#: The columns of every data file, as written by the streaming path.
#: Unique per row (dictionary encoding would be tried and dropped for nothing).
NO_DICTIONARY = ("id", "timestamp", "conversation_id")
#: Columns with min/max statistics: the typed ones (a query engine prunes row groups on
#: id and timestamp), the short codes, and source_sha256 (which :func:`stamp` checks).
#: The free text and JSON columns have none: their min/max prune nothing, and comparing
#: every long string was a tenth of the writer's time.
STATISTICS = (
    *[c.name for c in MESSAGE_COLUMNS if c.kind in ("int", "bool", "timestamp")],
    "type",
    "source_sha256",
    "source_kind",
)
FILE_SCHEMA = pa.schema([(name, arrow_type(dtype)) for name, dtype in file_schema().items()])
#: What is buffered per date: the row number (sorting ties), the file's message
#: columns and ``extra``, and the date (partitioning). Provenance is added when writing.
STAGE_SCHEMA = pa.schema(
    [
        (ROW_NUMBER, pa.uint32()),
        *[FILE_SCHEMA.field(c.name) for c in MESSAGE_COLUMNS],
        FILE_SCHEMA.field("extra"),
        ("date", pa.date32()),
    ]
)


def good_table(table: pa.Table, plan: ColumnPlan, verdict: Verdict, keep: pl.Series | None) -> pa.Table:
    """The batch's rows where ``keep`` is true (all when None), in STAGE_SCHEMA."""
    computed: dict[str, pl.Series | pa.Array | pa.ChunkedArray] = {
        s.name: s for s in (*verdict.typed, *verdict.folded)
    }
    computed.update(verdict.arrow)
    present = set(table.column_names)
    columns: list[pa.Array | pa.ChunkedArray] = [verdict.rows.to_arrow()]
    for column in MESSAGE_COLUMNS:
        if column.name in computed:
            columns.append(_arrow(computed[column.name], column.name))
        elif column.name in present:
            columns.append(table.column(column.name))
        else:
            columns.append(pa.nulls(table.num_rows, pa.string()))
    columns.append(
        _arrow(verdict.extra, "extra") if verdict.extra is not None else pa.nulls(table.num_rows, pa.string())
    )
    columns.append(verdict.date.to_arrow())
    good = pa.Table.from_arrays(columns, schema=STAGE_SCHEMA)
    return good if keep is None else good.filter(keep.to_arrow())


def _arrow(series: pl.Series | pa.Array | pa.ChunkedArray, name: str) -> pa.Array | pa.ChunkedArray:
    array = series.to_arrow() if isinstance(series, pl.Series) else series
    wanted = STAGE_SCHEMA.field(name).type
    return array if array.type == wanted else array.cast(wanted)


def parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer with the archive's settings: zstd, statistics on the columns
    that can use them (:data:`STATISTICS`).

    ``source_sha256`` alone is not compressed (one dictionary value per row group: no
    loss) so that :func:`stamp` can put the hash in once it is known.
    """
    dictionary = [name for name in schema.names if name not in NO_DICTIONARY]
    compression = {name: "none" if name == "source_sha256" else "zstd" for name in schema.names}
    # Every row group is sorted by timestamp (each flush is): say so, for query engines.
    order = [pq.SortingColumn(schema.get_field_index("timestamp"))]
    return pq.ParquetWriter(
        path,
        schema,
        compression=compression,
        write_statistics=[n for n in schema.names if n in STATISTICS],
        sorting_columns=order,
        use_dictionary=dictionary,
    )


def int64_numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Int64 (or timestamp-as-int64) values, without nulls, as a numpy array.

    Not ``to_numpy()``: pyarrow's conversion imports pandas the first time it runs
    (0.3 to 0.6 s of CPU in a process that never needs pandas). The value buffers are
    read as they are: a view for one chunk, a copy when the chunks are joined.
    """
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    parts = []
    for chunk in chunks:
        if chunk.null_count:
            raise ValueError("int64_numpy: null values")
        if not pa.types.is_integer(chunk.type) or chunk.type.bit_width != 64:
            chunk = chunk.cast(pa.int64())
        buffer = chunk.buffers()[1]
        parts.append(
            np.frombuffer(buffer, dtype=np.int64, count=len(chunk), offset=chunk.offset * 8)
            if buffer is not None
            else np.empty(0, dtype=np.int64)
        )
    if not parts:
        return np.empty(0, dtype=np.int64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def indices_array(indices: np.ndarray) -> pa.Array:
    """Row indices from numpy (an argsort) as an Arrow int64 array for ``take``, over the
    same bytes; ``pa.array(ndarray)`` would import pandas the first time."""
    values = np.ascontiguousarray(indices, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def text_scalar(value: str) -> pa.Scalar:
    """``value`` as an Arrow string scalar, built from its bytes: ``pa.scalar()``, and a
    ``str`` handed to a compute function, import pandas the first time (0.3-0.7 CPU s)."""
    data = value.encode()
    offsets = np.array([0, len(data)], dtype=np.int32)
    return pa.StringArray.from_buffers(1, pa.py_buffer(offsets), pa.py_buffer(data))[0]


def stamp(path: Path, placeholder: str, sha: str) -> None:
    """Replace the stand-in hash by the real one in a finished, unpublished data file.

    Same length, in a column that is not compressed: the file is then byte for byte the
    one a writer given the hash would have made (the tests check this). Every row group's
    statistics are read back to make sure.
    """
    old, new = placeholder.encode(), sha.encode()
    assert len(old) == len(new)
    with path.open("r+b") as stream:
        offset, carry = 0, b""
        while block := stream.read(1 << 20):
            window = carry + block
            start = window.find(old)
            while start >= 0:
                os.pwrite(stream.fileno(), new, offset - len(carry) + start)
                start = window.find(old, start + len(old))
            offset += len(block)
            carry = window[-(len(old) - 1) :]
    metadata = pq.ParquetFile(path).metadata
    column = FILE_SCHEMA.get_field_index("source_sha256")
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(column).statistics
        if stats is None or (stats.min, stats.max) != (sha, sha):
            raise OSError(f"{path}: source_sha256 could not be stamped")

"""SQL that declares a log directory as a table in DuckDB, Spark, Athena or Trino.

The store is already a Hive-partitioned JSON Lines dataset (`date=YYYY-MM-DD/<writer>.jsonl`,
closed files `….jsonl.gz`), so an engine reads it unchanged: these statements name the 13
columns (the `_chain` key of every line is left out: engines ignore keys they are not told about),
keep `metadata` as JSON text, and declare the partition column `date`. Where the engine can, a
view leaves out what `audit query` leaves out: a torn line (a crash mid-write) and a plain file
beside its `.gz` twin (an interrupted rotation). docs/formats.md explains each dialect.

`createdAt` stays a string: it has one fixed-width UTC form (`2026-11-25T08:06:40.123Z`), so string
comparisons are time comparisons, exactly as in `audit query`; each dialect's notes show how to
turn it into a timestamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from .errors import UsageError
from .model import SEED_FIELDS

DIALECTS: tuple[str, ...] = ("duckdb", "spark", "athena", "trino")

#: The 13 columns in the entry's field order; `metadata` holds JSON, every other one text.
COLUMNS: tuple[str, ...] = SEED_FIELDS


def _sql_string(text: str) -> str:
    """A SQL string literal: single quotes doubled (the only escape every dialect shares)."""
    return "'" + text.replace("'", "''") + "'"


def _spark_string(text: str) -> str:
    """A Spark SQL string literal: Spark reads backslash escapes, and two quoted strings side by
    side are concatenated, so `'` and `\\` are escaped with a backslash instead of doubled."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _check_identifier(name: str) -> str:
    # A table name goes into the SQL unquoted, so only plain identifiers are accepted.
    parts = name.split(".")
    if len(parts) > 3 or not all(
        part
        and (part[0].isalpha() or part[0] == "_")
        and all(c.isalnum() or c == "_" for c in part)
        for part in parts
    ):
        raise UsageError(
            f"--table: {name!r} is not a plain SQL identifier (letters, digits, _ and dots)"
        )
    return name


#: Athena's partition projection covers this first day at least (earlier when the local store
#: has earlier days); its last day is `NOW+1DAYS` so the coming day is always covered.
ATHENA_FIRST_DAY = "1970-01-01"


def schema_sql(
    dialect: str,
    location: str,
    *,
    table: str = "audit_logs",
    days: Sequence[str] = (),
) -> str:
    """The statements that declare the log directory at `location` (a local path or an object
    store URI such as `s3://bucket/audit/`) as table `table` in `dialect`. `days`: the days the
    store holds (oldest first), so Athena's partition projection starts early enough."""
    if dialect not in DIALECTS:
        raise UsageError(f"--dialect: expected one of {', '.join(DIALECTS)}, got {dialect!r}")
    _check_identifier(table)
    if "\n" in location or "\r" in location:
        raise UsageError("--location: must be one line")
    if dialect == "athena":
        return _athena(location, table, athena_first_day(days))
    return {"duckdb": _duckdb, "spark": _spark, "trino": _trino}[dialect](location, table)


def athena_first_day(days: Sequence[str]) -> str:
    """The first day of the Athena table's partition projection: 1970-01-01, or the store's
    first day when that is earlier (createdAt may be any day from year 1)."""
    return min([ATHENA_FIRST_DAY, *days[:1]])


def athena_missed_days(days: Sequence[str], today: str) -> list[str]:
    """The days of `days` the Athena table cannot see: after `NOW+1DAYS` (future-dated entries;
    a day before the projection's start cannot happen, it starts at the first day)."""
    last = (date.fromisoformat(today) + timedelta(days=1)).isoformat()
    return [day for day in days if day > last]


def _join(base: str, tail: str) -> str:
    return base.rstrip("/") + "/" + tail


def _duckdb(location: str, table: str) -> str:
    if "://" not in location:
        location = str(Path(location).expanduser().resolve())
    columns = ",\n".join(
        f"        {name}: {_sql_string('JSON' if name == 'metadata' else 'VARCHAR')}"
        for name in COLUMNS
    )
    files = _sql_string(_join(location, "date=*/*.jsonl*"))
    gz = _sql_string(_join(location, "date=*/*.jsonl.gz"))
    return f"""-- DuckDB: the audit log at {location} as the view {table}.
-- Plain and gzip files are read alike; `date` is the Hive partition column. A plain file whose
-- .gz twin exists (a rotation interrupted before it removed the original) is skipped, as
-- `audit` skips it. A torn line (a crash mid-write; `audit verify` reports it) is not JSON:
-- ignore_errors reads it as a row of NULLs, which the view leaves out (every entry has an id),
-- as `audit query` excludes it. Lines are not checked against their hash chain here:
-- `audit verify` does that.
-- createdAt is fixed-width UTC text: CAST(createdAt AS TIMESTAMPTZ) for a time.
CREATE OR REPLACE VIEW {table} AS
SELECT * EXCLUDE (filename)
FROM read_ndjson(
    {files},
    columns = {{
{columns}
    }},
    hive_partitioning = true,
    hive_types = {{'date': 'DATE'}},
    filename = true,
    ignore_errors = true
)
WHERE id IS NOT NULL
  AND filename NOT IN (SELECT regexp_replace(file, '\\.gz$', '') FROM glob({gz}));
"""


def _spark(location: str, table: str) -> str:
    columns = ",\n".join(f"  `{name}` STRING" for name in COLUMNS)
    names = ", ".join(f"`{name}`" for name in (*COLUMNS, "date"))
    files, archives = f"{table}_files", f"{table}_archives"
    path = _spark_string(location)
    return f"""-- Spark SQL: the audit log at {location} as the view {table}
-- over the tables {files} (the lines) and {archives} (the names of the .gz files).
-- Spark reads .jsonl.gz files by their extension; metadata arrives as JSON text
-- (from_json(metadata, 'MAP<STRING,STRING>') or get_json_object to look inside);
-- to_timestamp(createdAt) gives a timestamp. A torn line (a crash mid-write) is dropped
-- (DROPMALFORMED), as `audit query` excludes it; the view leaves out a plain file whose .gz
-- twin exists (a rotation interrupted before it removed the original), as `audit` does.
-- Lines are not checked against their hash chain here: `audit verify` does that.
CREATE TABLE IF NOT EXISTS {files} (
{columns},
  `date` DATE
)
USING json
OPTIONS (path {path}, mode 'DROPMALFORMED')
PARTITIONED BY (`date`);
CREATE TABLE IF NOT EXISTS {archives}
USING binaryFile
OPTIONS (path {path}, pathGlobFilter '*.jsonl.gz', recursiveFileLookup 'true');
CREATE OR REPLACE VIEW {table} AS
SELECT {names}
FROM (SELECT *, _metadata.file_path AS file FROM {files})
WHERE file NOT IN (SELECT regexp_replace(path, '\\\\.gz$', '') FROM {archives});
-- New days and files appear after these: run them after each sync (cron them with it).
ALTER TABLE {files} RECOVER PARTITIONS;
REFRESH TABLE {files};
REFRESH TABLE {archives};
"""


def _athena(location: str, table: str, first_day: str) -> str:
    base = location.rstrip("/") + "/"
    columns = ",\n".join(f"  `{name.lower()}` string" for name in COLUMNS)
    files = f"{table}_files"
    names = ", ".join(f'"{name.lower()}"' for name in (*COLUMNS, "date"))
    return f"""-- Amazon Athena: the audit log at {base} as the view {table}
-- over the table {files}. Partition projection finds the days without MSCK REPAIR, from
-- {first_day} to the day after today (`audit schema` names any day of the local store
-- outside that range). The OpenX SerDe matches the camelCase keys case-insensitively and keeps
-- the metadata object as JSON text (json_extract_scalar(metadata, '$.input.role'));
-- from_iso8601_timestamp(createdat) gives a time. Gzip files are read by their .gz extension.
-- A torn line (a crash mid-write) reads as a row of NULLs, which the view leaves out. Sync only
-- closed days (.jsonl.gz) to the bucket: Athena cannot tell a plain file from its .gz twin.
CREATE EXTERNAL TABLE IF NOT EXISTS {files} (
{columns}
)
PARTITIONED BY (`date` string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES ('ignore.malformed.json' = 'true', 'case.insensitive' = 'true')
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION {_sql_string(base)}
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.date.type' = 'date',
  'projection.date.format' = 'yyyy-MM-dd',
  'projection.date.range' = '{first_day},NOW+1DAYS',
  'projection.date.interval' = '1',
  'projection.date.interval.unit' = 'DAYS',
  'storage.location.template' = {_sql_string(base + "date=${date}/")}
);
CREATE OR REPLACE VIEW {table} AS
SELECT {names} FROM {files} WHERE "id" IS NOT NULL;
"""


def _trino(location: str, table: str) -> str:
    base = location.rstrip("/") + "/"
    parts = table.split(".")
    # A bare name lands in hive.default; `schema.table` in the hive catalog.
    named = ["hive", "default", *parts] if len(parts) == 1 else ["hive", *parts]
    catalog, schema, bare = named[-3:]
    columns = ",\n".join(f"  {name} varchar" for name in COLUMNS)
    return f"""-- Trino (Hive connector): the audit log at {base}
-- as the table {catalog}.{schema}.{bare}. OPENX_JSON keeps the metadata object as JSON text
-- (json_extract_scalar(metadata, '$.input.role'));
-- from_iso8601_timestamp(createdAt) gives a time; .gz files are decompressed by their extension.
CREATE TABLE IF NOT EXISTS {catalog}.{schema}.{bare} (
{columns},
  "date" varchar
)
WITH (
  external_location = {_sql_string(base)},
  format = 'OPENX_JSON',
  partitioned_by = ARRAY['date']
);
-- New days appear as new partitions: run this after each sync.
CALL {catalog}.system.sync_partition_metadata({_sql_string(schema)}, {_sql_string(bare)}, 'ADD');
"""

"""DuckDB, Spark, Athena and Trino over real stores, judged by the real engines (sqlglot for the
two that need a cluster).

The stores are made with the `audit` CLI: every action with hostile text, a big settled day
with its line index, a signed seal; then the states crashes leave: a torn line in a plain file
and (after rotation) in a gzip file, and a plain file beside its gzip twin. The SQL that
`audit schema` prints must give exactly the stored entries, agreeing with `audit query --count`
under several filters.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import outside_stores as stores
import pytest

#: (audit query options, the same filter in SQL over the view's columns, in Python)
FILTERS: list[tuple[list[str], str, Any]] = [
    ([], "", lambda e: True),
    (["--action", "login"], "action = 'login'", lambda e: e["action"] == "login"),
    (
        ["--action", "deploy_approved"],
        "action = 'deploy_approved'",
        lambda e: e["action"] == "deploy_approved",
    ),
    (
        ["--actor-id", "user-3", "--org-id", "org-1"],
        "actorId = 'user-3' AND organizationId = 'org-1'",
        lambda e: e["actorId"] == "user-3" and e["organizationId"] == "org-1",
    ),
    (["--team-id", "team-1"], "teamId = 'team-1'", lambda e: e["teamId"] == "team-1"),
    (["-t", "TEAM"], "target = 'TEAM'", lambda e: e["target"] == "TEAM"),
    (
        ["--since", "2026-11-02T06:00:00Z", "--until", "2026-11-03T18:00:00Z"],
        "createdAt >= '2026-11-02T06:00:00.000Z' AND createdAt <= '2026-11-03T18:00:00.000Z'",
        lambda e: "2026-11-02T06:00:00.000Z" <= e["createdAt"] <= "2026-11-03T18:00:00.000Z",
    ),
    (
        ["--since", "0001-01-01", "--until", "1999-12-31"],
        "createdAt <= '1999-12-31T23:59:59.999Z'",
        lambda e: e["createdAt"] <= "1999-12-31T23:59:59.999Z",
    ),
]


class Store:
    """One store under test: where it is, what it must hold, and its name as a table."""

    def __init__(self, name: str, root: Path, entries: list[dict[str, Any]]) -> None:
        self.name, self.root, self.entries = name, root, entries

    def query_count(self, args: list[str]) -> int:
        result = stores.audit(self.root, "query", "--count", *args)
        # exit 5: a torn line was excluded (and reported); the count is still printed
        assert result.exit_code in (0, 5), result.output
        return int(result.stdout)

    def expected(self, where: Any) -> set[str]:
        return {entry["id"] for entry in self.entries if where(entry)}


@pytest.fixture(scope="module")
def every_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Store]:
    """clean (sealed, indexed), torn (plain file), rotated (torn gzip file, twin)."""
    base = tmp_path_factory.mktemp("engines")
    entries = [*stores.every_action_entries(), *stores.big_day_entries()]
    clean = base / "clean"
    stores.build(clean, stores.every_action_entries())
    stores.run_ok(clean, "seal")
    assert (clean / "_index").is_dir() and (clean / "_manifests").is_dir()

    torn = stores.copy(clean, base / "torn")
    stores.add_torn_line(torn / "date=2026-11-02" / "w1.jsonl")

    rotated = stores.copy(clean, base / "rotated")
    stores.add_torn_line(rotated / "date=2026-11-03" / "w1.jsonl")
    stores.run_ok(rotated, "rotate", "--compress-after", "1")
    assert (rotated / "date=2026-11-03" / "w1.jsonl.gz").exists()
    stores.interrupt_rotation(rotated / "date=2026-11-01" / "w1.jsonl.gz")
    stores.interrupt_rotation(rotated / "date=2026-11-04" / "w1.jsonl.gz")
    assert (rotated / "date=9999-12-31" / "w1.jsonl").exists()  # a future day stays plain
    # rotate writes the big day as many gzip members: every engine below must read them all
    packed, members = (rotated / f"date={stores.BIG_DAY}" / "w1.jsonl.gz").read_bytes(), 0
    while packed:
        inflater = zlib.decompressobj(wbits=31)
        inflater.decompress(packed)
        packed, members = inflater.unused_data, members + 1
    assert members > 5
    return {
        name: Store(name, root, entries)
        for name, root in (("clean", clean), ("torn", torn), ("rotated", rotated))
    }


STATES = ("clean", "torn", "rotated")


# ===================================================================================== DuckDB
@pytest.mark.parametrize("state", STATES)
def test_duckdb_view_holds_exactly_the_entries(every_store: dict[str, Store], state: str) -> None:
    duckdb = pytest.importorskip("duckdb")
    store = every_store[state]
    connection = duckdb.connect()
    connection.execute(stores.run_ok(store.root, "schema", "--dialect", "duckdb"))
    ids = [row[0] for row in connection.execute("SELECT id FROM audit_logs").fetchall()]
    assert sorted(ids) == sorted(store.expected(lambda e: True))
    for args, where, keep in FILTERS:
        sql = "SELECT count(*) FROM audit_logs" + (f" WHERE {where}" if where else "")
        ours = store.query_count(args)
        assert connection.execute(sql).fetchone()[0] == ours == len(store.expected(keep)), args
    # the date partition is the entry's day, year 1 to 9999 included
    wrong = connection.execute(
        "SELECT count(*) FROM audit_logs WHERE strftime(date, '%Y-%m-%d') <> left(createdAt, 10)"
    ).fetchone()[0]
    assert wrong == 0
    stored = {e["id"]: e for e in store.entries}
    for row_id, metadata, description in connection.execute(
        "SELECT id, metadata, description FROM audit_logs"
    ).fetchall():
        assert description == stored[row_id]["description"]
        assert (json.loads(metadata) if metadata else None) == stored[row_id]["metadata"]
    connection.close()


# ====================================================================================== Spark
@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local Spark session for the module (starting one takes seconds)."""
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    warehouse = tmp_path_factory.mktemp("warehouse")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[1]")
        .appName("auditcli-tests")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _spark_statements(sql: str) -> list[str]:
    """The statements of `audit schema --dialect spark` (none has a `;` inside it)."""
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    return [part.strip() for part in body.split(";") if part.strip()]


@pytest.mark.parametrize("state", STATES)
def test_spark_view_holds_exactly_the_entries(
    spark: Any, every_store: dict[str, Store], state: str
) -> None:
    store = every_store[state]
    table = f"audit_{state}"
    sql = stores.run_ok(store.root, "schema", "--dialect", "spark", "--table", table)
    for statement in _spark_statements(sql):
        spark.sql(statement)
    rows = spark.sql(f"SELECT id, description, metadata, date, createdAt FROM {table}").collect()
    assert sorted(row["id"] for row in rows) == sorted(store.expected(lambda e: True))
    stored = {e["id"]: e for e in store.entries}
    for row in rows:
        entry = stored[row["id"]]
        assert row["description"] == entry["description"]
        assert (json.loads(row["metadata"]) if row["metadata"] else None) == entry["metadata"]
        assert row["date"].isoformat() == row["createdAt"][:10]
    # every filter in one Spark job (a job costs about a second here)
    counts = ", ".join(f"count_if({where or 'true'})" for _, where, _ in FILTERS)
    spark_counts = list(spark.sql(f"SELECT {counts} FROM {table}").collect()[0])
    ours = [store.query_count(args) for args, _, _ in FILTERS]
    expected = [len(store.expected(keep)) for _, _, keep in FILTERS]
    assert spark_counts == ours == expected
    # a filter on the partition column
    day = spark.sql(f"SELECT count(*) FROM {table} WHERE date = DATE'2026-11-02'")
    assert day.collect()[0][0] == len(store.expected(lambda e: e["createdAt"][:10] == "2026-11-02"))


def test_spark_reads_the_clean_root_as_exactly_the_entries(
    spark: Any, every_store: dict[str, Store]
) -> None:
    # What a Spark user types first: the root, control and derived data beside the days.
    store = every_store["clean"]
    names = sorted(os.listdir(store.root))
    assert {"_catalog.json", "_index", "_manifests"} <= set(names)
    frame = spark.read.json(str(store.root))
    assert "_corrupt_record" not in frame.columns
    assert sorted(row["id"] for row in frame.select("id").collect()) == sorted(
        store.expected(lambda e: True)
    )
    # the documented glob, with the partition column
    globbed = spark.read.option("basePath", str(store.root)).json(
        str(store.root / "date=*" / "*.jsonl*")
    )
    assert globbed.count() == len(store.entries)
    assert "date" in globbed.columns


# ============================================================================ Athena, Trino
@pytest.mark.parametrize("dialect", ["athena", "trino"])
def test_athena_and_trino_sql_parses_in_their_dialects(
    every_store: dict[str, Store], dialect: str
) -> None:
    sqlglot = pytest.importorskip("sqlglot")
    store = every_store["rotated"]
    sql = stores.run_ok(
        store.root, "schema", "--dialect", dialect, "--location", "s3://bucket/audit/"
    )
    statements = [
        s for s in sqlglot.parse(sql, read=dialect, error_level=sqlglot.ErrorLevel.RAISE) if s
    ]
    kinds = [(type(s).__name__, s.args.get("kind")) for s in statements]
    if dialect == "athena":  # the table, and the view that leaves out torn lines
        assert kinds == [("Create", "TABLE"), ("Create", "VIEW")]
    else:  # the table, and the CALL that registers the partitions
        assert kinds == [("Create", "TABLE"), ("Command", None)]
    columns = {c.name.lower() for c in statements[0].find_all(sqlglot.exp.ColumnDef)}
    assert {"id", "actorid", "createdat", "metadata", "teamid", "date"} <= columns
    assert "s3://bucket/audit/" in sql


def test_athena_projection_covers_every_day_of_the_store(every_store: dict[str, Store]) -> None:
    store = every_store["clean"]
    result = stores.audit(store.root, "schema", "--dialect", "athena")
    assert result.exit_code == 0
    assert "'projection.date.range' = '0001-01-01,NOW+1DAYS'" in result.stdout
    # a day after tomorrow is outside NOW+1DAYS: the tool says so, naming it
    assert "9999-12-31" in result.stderr and "Athena table does not see 1 day" in result.stderr
    empty = store.root.parent / "empty"
    stores.run_ok(empty, "init", str(empty))
    fresh = stores.audit(empty, "schema", "--dialect", "athena")
    assert "'projection.date.range' = '1970-01-01,NOW+1DAYS'" in fresh.stdout
    assert fresh.stderr == ""


def test_a_time_before_year_1000_is_stored_and_queried_in_canonical_form(tmp_path: Path) -> None:
    # strftime's %Y gives "998" on glibc: the stored form and the query bounds pad it to 4 digits
    root = tmp_path / "logs"
    stores.run_ok(
        root, "record", "login", "--actor-id", "u1", "--org-id", "o1",
        "--created-at", "0999-01-01T00:30:00+01:00",
    )  # fmt: skip
    (line,) = stores.run_ok(root, "query", "-f", "jsonl").splitlines()
    assert json.loads(line)["createdAt"] == "0998-12-31T23:30:00.000Z"
    assert (root / "date=0998-12-31").is_dir()
    counted = stores.run_ok(
        root, "query", "--count", "--since", "0998-12-31", "--until", "0999-01-01"
    )
    assert counted.strip() == "1"

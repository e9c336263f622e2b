"""The migration runner on a throwaway database and a temporary copy of sql/: files apply in
order, once each, with their checksum recorded, and an applied file that changed is refused."""
import hashlib
import io
import shutil
import threading
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

import app.migrate
from app.migrate import MigrationChanged, migrate
from tests.conftest import ADMIN_DB_URL, DB_NAME, ROOT

PROBE_A = "900_probe_a.sql"
PROBE_B = "901_probe_b.sql"


@pytest.fixture
def scratch_db(database):
    name = f"{DB_NAME}_mig"
    with psycopg.connect(ADMIN_DB_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlunsplit(urlsplit(database)._replace(path=f"/{name}"))
    yield url
    with psycopg.connect(ADMIN_DB_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def sql_dir(tmp_path, monkeypatch):
    """A copy of sql/ with two probe migrations, the second depending on the first."""
    copy = tmp_path / "sql"
    shutil.copytree(ROOT / "sql", copy)
    migrations = copy / "migrations"
    (migrations / PROBE_A).write_text("CREATE TABLE probe (x int NOT NULL);\n")
    (migrations / PROBE_B).write_text("ALTER TABLE probe ADD COLUMN y text NOT NULL DEFAULT 'b';\n")
    (migrations / "notes.sql").write_text("this is not a migration: no number, never applied\n")
    (migrations / "README.md").write_text("not SQL\n")
    monkeypatch.setattr(app.migrate, "SQL_DIR", copy)
    return migrations


def numbered(migrations) -> list[str]:
    return sorted(p.name for p in migrations.glob("[0-9]*.sql"))


def recorded(url) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT filename, checksum FROM schema_migrations").fetchall())


def table_exists(url, name) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def test_applies_every_file_in_order_once_with_its_checksum(scratch_db, sql_dir):
    out = io.StringIO()
    applied = migrate(scratch_db, out=out)

    assert applied == numbered(sql_dir) and applied[0] == "001_foundation.sql"
    assert applied[-2:] == [PROBE_A, PROBE_B]  # 901 could only work after 900
    assert out.getvalue().splitlines() == [f"applied {name}" for name in applied]
    assert recorded(scratch_db) == {
        name: hashlib.sha256((sql_dir / name).read_bytes()).hexdigest() for name in applied}
    with psycopg.connect(scratch_db) as conn:
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'probe' ORDER BY ordinal_position")]
    assert columns == ["x", "y"]


def test_a_second_run_applies_nothing(scratch_db, sql_dir):
    migrate(scratch_db, out=io.StringIO())
    before = recorded(scratch_db)
    out = io.StringIO()
    assert migrate(scratch_db, out=out) == []
    assert out.getvalue() == ""
    assert recorded(scratch_db) == before


def test_a_new_file_is_applied_on_the_next_run(scratch_db, sql_dir):
    migrate(scratch_db, out=io.StringIO())
    (sql_dir / "902_probe_c.sql").write_text("CREATE TABLE probe_c (z int);\n")
    assert migrate(scratch_db, out=io.StringIO()) == ["902_probe_c.sql"]
    assert table_exists(scratch_db, "probe_c")


def test_an_applied_file_that_changed_is_refused(scratch_db, sql_dir):
    migrate(scratch_db, out=io.StringIO())
    before = recorded(scratch_db)
    (sql_dir / PROBE_A).write_text("CREATE TABLE probe (x bigint NOT NULL);\n")
    (sql_dir / "902_probe_c.sql").write_text("CREATE TABLE probe_c (z int);\n")

    with pytest.raises(MigrationChanged) as refused:
        migrate(scratch_db, out=io.StringIO())
    assert PROBE_A in str(refused.value) and "write a new migration instead of editing one" in str(refused.value)
    assert before[PROBE_A][:12] in str(refused.value)
    assert recorded(scratch_db) == before  # nothing after the changed file ran either
    assert not table_exists(scratch_db, "probe_c")


def test_a_failing_file_leaves_nothing_behind_and_applies_once_fixed(scratch_db, sql_dir):
    broken = sql_dir / "902_probe_c.sql"
    broken.write_text("CREATE TABLE probe_c (z int);\nSELECT 1 / 0;\n")
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate(scratch_db, out=io.StringIO())
    assert PROBE_B in recorded(scratch_db) and broken.name not in recorded(scratch_db)
    assert not table_exists(scratch_db, "probe_c")  # the file is one transaction

    broken.write_text("CREATE TABLE probe_c (z int);\n")
    assert migrate(scratch_db, out=io.StringIO()) == [broken.name]


def test_two_runners_at_once_apply_each_file_once(scratch_db, sql_dir):
    results = []

    def run():
        results.append(migrate(scratch_db, out=io.StringIO()))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results, key=len) == [[], numbered(sql_dir)]

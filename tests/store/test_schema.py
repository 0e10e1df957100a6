"""Migrations and the current schema agree; the migration runner applies only what is pending."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from prodlens.store import schema
from prodlens.store.exceptions import SchemaVersionError
from prodlens.store.migrations import MIGRATIONS, Migration, applied_versions, migrate


def _columns(engine):
    insp = inspect(engine)
    out = {}
    for name in insp.get_table_names():
        out[name] = {c["name"]: (c["nullable"], type(c["type"]).__name__) for c in insp.get_columns(name)}
    return out


def test_migrations_produce_exactly_the_current_schema():
    migrated = create_engine("sqlite://")
    migrate(migrated)
    direct = create_engine("sqlite://")
    schema.METADATA.create_all(direct)
    assert _columns(migrated) == _columns(direct)
    im, idir = inspect(migrated), inspect(direct)
    for table in schema.METADATA.tables:
        assert sorted(i["name"] for i in im.get_indexes(table)) == sorted(i["name"] for i in idir.get_indexes(table)), table
        assert sorted(str(u["name"]) for u in im.get_unique_constraints(table)) == sorted(
            str(u["name"]) for u in idir.get_unique_constraints(table)), table


def test_runner_applies_only_pending_migrations_in_order():
    engine = create_engine("sqlite://")
    calls = []
    extra = Migration(5, "add notes index", lambda conn: calls.append(5))
    assert migrate(engine, MIGRATIONS) == [1, 2, 3, 4]
    assert migrate(engine, (*MIGRATIONS, extra)) == [5]
    assert migrate(engine, (*MIGRATIONS, extra)) == []
    assert calls == [5]
    with engine.connect() as c:
        assert applied_versions(c) == [1, 2, 3, 4, 5]
    with pytest.raises(SchemaVersionError, match="schema is version 5 but this prodlens knows up to 4; upgrade prodlens"):
        migrate(engine, MIGRATIONS)


def test_a_version_1_store_is_upgraded_in_place_and_keeps_its_rows(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    assert migrate(engine, MIGRATIONS[:1]) == [1]
    with engine.begin() as c:
        c.execute(text("INSERT INTO runs (name, config, versions, created_at) VALUES ('old', '{}', '{}', 'then')"))
    assert migrate(engine) == [2, 3, 4]
    with engine.connect() as c:
        assert c.execute(text("SELECT name FROM runs")).scalars().all() == ["old"]
        assert applied_versions(c) == [1, 2, 3, 4]
    assert {"match_queries", "match_explanations", "sanity_results"} <= set(inspect(engine).get_table_names())
    assert {"quality", "faithfulness", "stability", "flagged"} <= {c["name"] for c in inspect(engine).get_columns("explanations")}
    assert "curves" in {c["name"] for c in inspect(engine).get_columns("match_explanations")}


def test_a_failing_migration_leaves_nothing_half_applied():
    engine = create_engine("sqlite://")

    def boom(conn):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        migrate(engine, (*MIGRATIONS[:1], Migration(2, "bad", boom)))
    with engine.connect() as c:
        assert applied_versions(c) == []

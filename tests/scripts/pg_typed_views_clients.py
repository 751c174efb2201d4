"""Reads Tapline's typed views on PostgreSQL the way a BI tool's driver does: psycopg 3 must
give numbers as Python numbers, booleans, zone-aware datetimes and parsed JSON; SQLAlchemy's
reflection must report the column types. Exits non-zero (with the mismatch) otherwise.

    pg_typed_views_clients.py POSTGRES_URL BI_SCHEMA

The Rust test `export_loader_typed_views_pg::python_clients_read_typed_columns` loads the
export this expects (table `charged`, two rows) and runs this with `TAPLINE_TEST_PG_PYTHON`.
"""

import datetime
import decimal
import numbers
import sys

import psycopg
import sqlalchemy
from psycopg import sql
from sqlalchemy.dialects import postgresql


def main(url: str, bi: str) -> None:
    utc = datetime.timezone.utc
    with psycopg.connect(url) as conn:
        # The reader's zone is not UTC: the timestamps must still be the same instants.
        conn.execute("SET TIME ZONE 'Asia/Kolkata'")
        rows = conn.execute(
            sql.SQL(
                "SELECT event_props_amount, event_props_qty, event_props_paid, "
                "event_props_when, event_props_items, event_props_code, ts "
                "FROM {}.charged ORDER BY _source_line"
            ).format(sql.Identifier(bi))
        ).fetchall()
        want = [
            (
                decimal.Decimal("12.5"),
                3,
                True,
                datetime.datetime(2022, 9, 21, 4, 39, 25, tzinfo=utc),
                [1, 2],
                "007",
                datetime.datetime(2022, 9, 21, 0, 0, 0, tzinfo=utc),
            ),
            (
                decimal.Decimal("7"),
                4,
                False,
                datetime.datetime(2022, 9, 20, 23, 9, 25, tzinfo=utc),
                {"a": 1},
                "12",
                datetime.datetime(2022, 9, 21, 0, 0, 1, tzinfo=utc),
            ),
        ]
        assert rows == want, f"psycopg rows: {rows!r}"
        for amount, qty, paid, *_ in rows:
            assert isinstance(amount, numbers.Number) and not isinstance(amount, bool), amount
            assert type(qty) is int, type(qty)
            assert type(paid) is bool, type(paid)
        total = conn.execute(
            sql.SQL("SELECT sum(event_props_amount) FROM {}.charged").format(
                sql.Identifier(bi)
            )
        ).fetchone()[0]
        assert total == decimal.Decimal("19.5"), total

    engine = sqlalchemy.create_engine(url.replace("postgres://", "postgresql+psycopg://", 1))
    inspector = sqlalchemy.inspect(engine)
    views = sorted(inspector.get_view_names(schema=bi))
    assert views == ["all_events", "charged"], views
    assert inspector.get_table_names(schema=bi) == [], "the BI schema holds views only"
    types = {c["name"]: c["type"] for c in inspector.get_columns("charged", schema=bi)}
    want_types = {
        "ts": (sqlalchemy.TIMESTAMP, {"timezone": True}),
        "event_name": (sqlalchemy.TEXT, {}),
        "event_props_amount": (sqlalchemy.NUMERIC, {}),
        "event_props_qty": (sqlalchemy.BIGINT, {}),
        "event_props_paid": (sqlalchemy.BOOLEAN, {}),
        "event_props_when": (sqlalchemy.TIMESTAMP, {"timezone": True}),
        "event_props_items": (postgresql.JSONB, {}),
        "event_props_code": (sqlalchemy.TEXT, {}),
        "_source_line": (sqlalchemy.BIGINT, {}),
    }
    for name, (kind, attrs) in want_types.items():
        got = types[name]
        assert isinstance(got, kind), f"{name}: {got!r}"
        for attr, value in attrs.items():
            assert getattr(got, attr) == value, f"{name}.{attr}: {got!r}"
    # Numbers come back as Python numbers through a reflected Table too (a sum of BIGINT is
    # NUMERIC in PostgreSQL: a Decimal).
    table = sqlalchemy.Table("charged", sqlalchemy.MetaData(), schema=bi, autoload_with=engine)
    with engine.connect() as conn:
        total = conn.execute(sqlalchemy.select(sqlalchemy.func.sum(table.c.event_props_qty))).scalar()
    assert total == 7 and isinstance(total, numbers.Number), repr(total)
    print(f"typed views read by psycopg {psycopg.__version__} and SQLAlchemy {sqlalchemy.__version__}: ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Reads a typed view of a Tapline SQLite warehouse with Python's stdlib `sqlite3`, as a notebook
(or pandas' `read_sql`) would, and checks each value's Python type against its column's kind.

Usage: read_typed_views_sqlite.py WAREHOUSE.sqlite VIEW TABLE
(`bi_charged charged`; `charged charged` reads the raw table, which must fail: its numbers are str).

For every row of VIEW joined to its raw row in TABLE (by `_source_uri`, `_source_line`) and every
data column with a kind in `_tapline_columns`: integer -> int, decimal -> float, boolean -> int
0/1 (SQLite has no boolean), timestamp -> str `YYYY-MM-DDTHH:MM:SSZ`, json and text -> str, NULL
-> None; and the typed value equals the raw text read as that type. Writes one JSON line on
stdout (rows, values per Python type, per column the declared type `PRAGMA table_info` reports)
and exits 0; on the first value that does not fit, says which on stderr and exits 1.
"""

import json
import re
import sqlite3
import sys

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
# Columns the typed layer never casts (see typed_views.rs: UNCAST_EVENT_COLUMNS) or that are lineage.
UNCAST = {"ts", "profile_identity"}


def expected(kind, raw):
    """The value a typed view must give for raw text `raw` of a column of `kind`."""
    if raw is None:
        return None
    if kind == "integer":
        return int(raw)
    if kind == "decimal":
        return float(raw)
    if kind == "boolean":
        return {"true": 1, "false": 0}[raw]
    return raw


def fits(kind, value):
    if value is None:
        return True
    if kind in ("integer", "boolean"):
        return type(value) is int
    if kind == "decimal":
        return type(value) is float
    if kind == "timestamp":
        return type(value) is str and TIMESTAMP.match(value) is not None
    return type(value) is str


def main():
    path, view, table = sys.argv[1:4]
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    kinds = dict(
        conn.execute(
            "SELECT column_name, kind FROM _tapline_columns WHERE table_name = ?", (table,)
        ).fetchall()
    )
    declared = {row[1]: row[2] for row in conn.execute(f'PRAGMA table_info("{view}")')}
    columns = [c for c in declared if c in kinds]
    select = ", ".join(f'v."{c}", t."{c}"' for c in columns)
    cursor = conn.execute(
        f'SELECT {select} FROM "{view}" v JOIN "{table}" t '
        "ON t._source_uri = v._source_uri AND t._source_line = v._source_line"
    )
    rows = 0
    types = {}
    for row in cursor:
        rows += 1
        for i, column in enumerate(columns):
            value, raw = row[2 * i], row[2 * i + 1]
            kind = "text" if column in UNCAST else kinds[column] or "text"
            types[type(value).__name__] = types.get(type(value).__name__, 0) + 1
            want = expected(kind, raw)
            if kind == "timestamp" and raw is not None and column not in UNCAST:
                # The view normalises the zone and drops the fraction: check the form only.
                want = value
            if not fits(kind, value) or value != want:
                print(
                    f"{view}.{column} ({kind}): {value!r} ({type(value).__name__}) "
                    f"for raw {raw!r}",
                    file=sys.stderr,
                )
                return 1
    print(
        json.dumps(
            {
                "rows": rows,
                "types": types,
                "declared": {c: declared[c] for c in columns},
                "kinds": {c: kinds[c] for c in columns},
            },
            sort_keys=True,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reads a typed view the way a BI tool's BigQuery connector does, through Google's
`google-cloud-bigquery` client: the view's field types (tables.get) and one row, whose numbers
must come back as Python numbers. Prints what it read as JSON; exits non-zero on any mismatch.

    .venv/bin/python tests/scripts/bigquery_client_reads_typed_view.py ENDPOINT PROJECT DATASET VIEW

The expectations come on stdin as JSON: {"types": {column: REST type}, "row": {column:
[Python type name, value]}} (timestamps as UTC ISO-8601 text).
Driven by tests/tests/warehouse_bigquery_typed.rs against bqemulator.
"""

from __future__ import annotations

import datetime
import json
import sys

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery


def main() -> int:
    endpoint, project, dataset, view = sys.argv[1:5]
    want = json.load(sys.stdin)
    client = bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=endpoint),
    )
    table = client.get_table(f"{project}.{dataset}.{view}")
    types = {field.name: field.field_type for field in table.schema}
    columns = ", ".join(f"`{c}`" for c in want["row"])
    sql = f"SELECT {columns} FROM `{project}.{dataset}.{view}` ORDER BY `_source_line` LIMIT 1"
    rows = list(client.query(sql).result())
    row = {}
    for column, value in rows[0].items():
        kind = type(value).__name__
        if isinstance(value, datetime.datetime):
            value = value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        row[column] = [kind, value]
    print(json.dumps({"view_type": table.table_type, "types": types, "row": row}))
    failures = []
    if table.table_type != "VIEW":
        failures.append(f"{view} is a {table.table_type}, not a VIEW")
    for column, kind in want["types"].items():
        if types.get(column) != kind:
            failures.append(f"{column}: the client reads {types.get(column)}, want {kind}")
    for column, value in want["row"].items():
        if row.get(column) != value:
            failures.append(f"{column}: the client reads {row.get(column)}, want {value}")
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Starts bqemulator (PyPI) with the deviations Tapline meets restored to BigQuery's documented
behaviour, patched in-process; every other argument goes to `bqemulator start`.

    .venv/bin/python tests/scripts/bqemulator_launch.py --rest-port 9050 --grpc-port 0

Each patch names the BigQuery page it restores. Nothing here adds behaviour BigQuery lacks;
what the emulator cannot do (faults, RUNNING jobs, 409 races) stays with tests/src/doubles/bigquery.rs.
The version is pinned in tests/scripts/with-bqemulator.sh; a new version may move a patched
name, which fails this launcher loudly at start (see `_require`).
"""

from __future__ import annotations

import contextvars
import json
import sys
from typing import Any

import bqemulator
from bqemulator.api import app as api_app
from bqemulator.api.routes import jobs as jobs_routes
from bqemulator.api.routes import tables as tables_routes
from bqemulator.jobs import executor
from bqemulator.scripting import interpreter
from bqemulator.sql import parameters
from bqemulator.storage import engine as storage_engine
from bqemulator.storage.sql_identifiers import quoted_table_ref
from bqemulator.storage.type_map import bq_schema_to_duckdb_columns

PINNED = "1.4.0"


def _require(module: Any, name: str) -> Any:
    """The attribute a patch replaces; a missing one stops the launcher (a new emulator
    version moved it) instead of silently running unpatched."""
    if not hasattr(module, name):
        sys.exit(f"bqemulator_launch: {module.__name__}.{name} is gone (bqemulator {bqemulator.__version__}, patched for {PINNED})")
    return getattr(module, name)


# 1. Start without DuckDB's `spatial` extension. The emulator installs it at start for GEOGRAPHY
#    (a download from extensions.duckdb.org, which an offline machine cannot reach, and the
#    start fails); Tapline never uses GEOGRAPHY. Not a BigQuery behaviour, only a start-up
#    requirement of the emulator.
_require(storage_engine.DuckDBEngine, "_load_spatial")
storage_engine.DuckDBEngine._load_spatial = lambda self: None


# 2. Named query parameters inside multi-statement queries. BigQuery binds a query job's
#    `queryParameters` wherever `@name` appears in its query
#    (https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationQuery,
#    https://cloud.google.com/bigquery/docs/parameterized-queries), in a multi-statement query
#    in each statement. The emulator's script interpreter binds none (it calls
#    `bind_parameters(sql, None)`), so `@load_id` reaches DuckDB unbound. The job's parameters
#    are kept for the script's run and bound in each statement. (A script that also declares
#    variables would mix their placeholders with these; Tapline's scripts declare none.)
_JOB_PARAMETERS: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar(
    "tapline_job_parameters", default=None
)
_run_query_body = _require(executor, "_run_query_body")


async def _run_query_body_keeping_parameters(*args: Any, **kwargs: Any) -> Any:
    token = _JOB_PARAMETERS.set(kwargs.get("query_params"))
    try:
        return await _run_query_body(*args, **kwargs)
    finally:
        _JOB_PARAMETERS.reset(token)


executor._run_query_body = _run_query_body_keeping_parameters
_bind_parameters = _require(interpreter, "bind_parameters")


def _bind_job_parameters(sql: str, query_parameters: Any = None) -> Any:
    if query_parameters is None:
        query_parameters = _JOB_PARAMETERS.get()
    return parameters.bind_parameters(sql, query_parameters)


interpreter.bind_parameters = _bind_job_parameters


# 3. tables.list items carry `friendlyName`, `labels` and `timePartitioning`
#    (https://cloud.google.com/bigquery/docs/reference/rest/v2/tables/list#response-body);
#    the emulator lists ids and types only. Tapline's catalog reads the event name and the
#    `tapline` label from the listing.
_table_to_list_item = _require(tables_routes, "_table_to_list_item")


def _table_to_list_item_documented(t: Any) -> dict[str, Any]:
    item = _table_to_list_item(t)
    if t.friendly_name:
        item["friendlyName"] = t.friendly_name
    if t.labels:
        item["labels"] = dict(t.labels)
    if t.time_partitioning:
        item["timePartitioning"] = tables_routes._time_partitioning_to_rest(t.time_partitioning)
    return item


tables_routes._table_to_list_item = _table_to_list_item_documented


# 4., 5. and 7. are request/response rewrites of three routes, in one ASGI middleware around the
# app.

# HTTP status of each error reason, from https://cloud.google.com/bigquery/docs/error-messages
# (the table "Error table": reason -> HTTP code).
_STATUS_OF_REASON = {
    "accessDenied": 403,
    "backendError": 503,
    "billingNotEnabled": 403,
    "blocked": 403,
    "duplicate": 409,
    "internalError": 500,
    "invalid": 400,
    "invalidQuery": 400,
    "invalidUser": 400,
    "notFound": 404,
    "notImplemented": 501,
    "quotaExceeded": 403,
    "rateLimitExceeded": 403,
    "resourceInUse": 400,
    "resourcesExceeded": 400,
    "responseTooLarge": 403,
    "timeout": 400,
}
_STATUS_NAME = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ALREADY_EXISTS", 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE"}


def _split_path(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


class _DocumentedBigQuery:
    """4. jobs.query (POST /bigquery/v2/projects/P/queries):
       - honours `defaultDataset` ("Specifies the default datasetId and projectId to assume for
         any unqualified table names in the query",
         https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/query#QueryRequest);
         the emulator applies it for jobs.insert only, so the same rewrite runs here;
       - answers a query that failed with an HTTP error and the error envelope
         (https://cloud.google.com/bigquery/docs/error-messages: "invalidQuery ... 400"), as it
         answers every other failed call; the emulator answers 200, `jobComplete: true`, no rows
         and an `errors` array (Tapline fails closed on that too, but reads the reason
         and status BigQuery would give).
    5. tables.patch (PATCH /bigquery/v2/projects/P/datasets/D/tables/T) that adds NULLABLE
       fields adds columns to the table, which DML can use at once (adding columns to a table's
       schema definition with tables.patch,
       https://cloud.google.com/bigquery/docs/managing-table-schemas); the emulator changes
       only the metadata, so the next INSERT naming a new column fails.
    7. tables.get (GET /bigquery/v2/projects/P/datasets/D/tables/T) on a view answers the
       view's schema, the columns and types its query gives (the Table resource's `schema`,
       https://cloud.google.com/bigquery/docs/reference/rest/v2/tables#Table; a BI tool and
       Google's client read a view's field types from it); the emulator answers a view
       without one. The schema is the emulator's own answer to `SELECT * FROM` the view.
    """

    def __init__(self, app: Any, context: Any) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parts = _split_path(scope["path"])
        method = scope["method"]
        is_query = method == "POST" and len(parts) == 5 and parts[:3] == ["bigquery", "v2", "projects"] and parts[4] == "queries"
        is_patch = method == "PATCH" and len(parts) == 8 and parts[:3] == ["bigquery", "v2", "projects"] and parts[4] == "datasets" and parts[6] == "tables"
        is_get_table = method == "GET" and len(parts) == 8 and parts[:3] == ["bigquery", "v2", "projects"] and parts[4] == "datasets" and parts[6] == "tables"
        if is_get_table:
            await self._get_table_with_view_schema(scope, parts, send)
            return
        if not (is_query or is_patch):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if is_query:
            body = _with_default_dataset(body, parts[3])
        status, headers, answer = await _call(self.app, scope, body)
        if is_query and status == 200:
            status, answer = _failed_query_as_error(answer)
        if is_patch and status == 200:
            await self._add_patched_columns(parts[3], parts[5], parts[7])
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(answer)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async def _get_table_with_view_schema(self, scope: Any, parts: list[str], send: Any) -> None:
        status, headers, answer = await _call(self.app, scope, b"")
        if status == 200:
            resource = json.loads(answer)
            if resource.get("type") == "VIEW" and "schema" not in resource:
                project, dataset, table = parts[3], parts[5], parts[7]
                query = {"query": f"SELECT * FROM `{project}.{dataset}.{table}` LIMIT 0", "useLegacySql": False}
                body = json.dumps(query).encode()
                query_scope = dict(scope, method="POST", path=f"/bigquery/v2/projects/{project}/queries",
                                   raw_path=f"/bigquery/v2/projects/{project}/queries".encode(), query_string=b"")
                query_scope["headers"] = [(b"content-type", b"application/json")]
                q_status, _, q_answer = await _call(self.app, query_scope, body)
                fields = json.loads(q_answer).get("schema", {}).get("fields") if q_status == 200 else None
                if fields:
                    resource["schema"] = {"fields": fields}
                    answer = json.dumps(resource).encode()
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(answer)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async def _add_patched_columns(self, project: str, dataset: str, table: str) -> None:
        meta = self.context.catalog.get_table(project, dataset, table)
        if meta is None or meta.table_type != "TABLE":
            return
        fields = [tables_routes._field_to_rest(f) for f in meta.schema_.fields]
        target = quoted_table_ref(project, dataset, table)
        engine = self.context.engine
        async with engine.write_lock():
            present = {row[0] for row in engine.execute(f"DESCRIBE {target}").fetchall()}
            for name, duckdb_type in bq_schema_to_duckdb_columns(fields):
                if name not in present:
                    engine.execute(f'ALTER TABLE {target} ADD COLUMN "{name}" {duckdb_type}')


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _call(app: Any, scope: Any, body: bytes) -> tuple[int, list[Any], bytes]:
    """Runs the emulator's handler on `body`; returns its status, headers and whole answer."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    scope = dict(scope)
    scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
    scope["headers"].append((b"content-length", str(len(body)).encode()))
    await app(scope, receive, send)
    return start.get("status", 500), list(start.get("headers", [])), b"".join(chunks)


def _with_default_dataset(body: bytes, project: str) -> bytes:
    try:
        request = json.loads(body)
    except ValueError:
        return body
    if not isinstance(request, dict) or not isinstance(request.get("query"), str):
        return body
    request["query"] = jobs_routes._apply_default_dataset(request["query"], request, request_project_id=project)
    return json.dumps(request).encode()


def _failed_query_as_error(answer: bytes) -> tuple[int, bytes]:
    try:
        response = json.loads(answer)
    except ValueError:
        return 200, answer
    errors = response.get("errors") if isinstance(response, dict) else None
    if not errors or response.get("jobComplete") is not True:
        return 200, answer
    first = errors[0]
    reason = first.get("reason", "invalidQuery")
    status = _STATUS_OF_REASON.get(reason, 400)
    envelope = {"error": {
        "code": status,
        "message": first.get("message", ""),
        "errors": [{"reason": e.get("reason", reason), "message": e.get("message", ""), "domain": "global"} for e in errors],
        "status": _STATUS_NAME.get(status, "INVALID_ARGUMENT"),
    }}
    return status, json.dumps(envelope).encode()


# 6. A dry run runs nothing. BigQuery's `JobConfiguration.dryRun`: "If set, don't actually run
#    this job" (https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfiguration).
#    To preview a schema the emulator runs every dry-run statement it does not list as
#    destructive, multi-statement scripts included: a dry run of `SELECT 1; DELETE FROM t WHERE
#    true` deleted t's rows. Scripts join the statements it never runs (their preview is empty).
#    Tapline's `tapline query` asks a dry run for the statement type before running anything.
#    The dry run classifies a script as the executor does (more than one statement, or a
#    control-flow one, is a `SCRIPT`; it read "" and ran it) and never runs a script.
_destructive = _require(jobs_routes, "_DESTRUCTIVE_STATEMENT_TYPES")
jobs_routes._DESTRUCTIVE_STATEMENT_TYPES = frozenset(_destructive | {"SCRIPT"})
_classify = _require(jobs_routes, "classify_statement_type")
_parse_script = _require(executor, "_parse_script_or_raise")
_SqlStmt = _require(executor, "SqlStmt")


def _classify_scripts_too(bq_sql: str) -> str:
    try:
        statements = _parse_script(bq_sql).statements
    except Exception:  # noqa: BLE001 - unparseable: the emulator's own answer (a syntax error)
        return _classify(bq_sql)
    if len(statements) != 1 or not isinstance(statements[0], _SqlStmt):
        return "SCRIPT"
    return _classify(bq_sql)


jobs_routes.classify_statement_type = _classify_scripts_too


_require(jobs_routes, "_apply_default_dataset")
_require(tables_routes, "_field_to_rest")
_create_app = _require(api_app, "create_app")


def _create_documented_app(context: Any) -> Any:
    app = _create_app(context)
    app.add_middleware(_DocumentedBigQuery, context=context)
    return app


# server.py imported `create_app` by name; both names must be the patched one.
import bqemulator.server as server  # noqa: E402

api_app.create_app = _create_documented_app
_require(server, "create_app")
server.create_app = _create_documented_app


if __name__ == "__main__":
    if bqemulator.__version__ != PINNED:
        sys.exit(f"bqemulator_launch: patched for bqemulator {PINNED}, found {bqemulator.__version__}")
    from bqemulator.cli import main

    sys.argv = ["bqemulator", "start", *sys.argv[1:]]
    main()

-- The `_tapline_*` tables of a SQLite warehouse file, created where missing when it opens.
CREATE TABLE IF NOT EXISTS _tapline_loads (
    load_id       INTEGER PRIMARY KEY,
    uri           TEXT NOT NULL,
    version       TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('loading','loaded','quarantined','failed','replaced')),
    bytes         INTEGER,
    rows_loaded   INTEGER NOT NULL DEFAULT 0,
    rows_rejected INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 1,
    replaced_by   INTEGER,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    -- When the object was created in its bucket (UTC ISO-8601); NULL: unknown. Files from
    -- before freshness get it at open.
    object_created_at TEXT,
    UNIQUE (uri, version)
);
CREATE INDEX IF NOT EXISTS _tapline_loads_by_uri ON _tapline_loads (uri, status);
CREATE TABLE IF NOT EXISTS _tapline_load_tables (
    load_id     INTEGER NOT NULL,
    table_name  TEXT NOT NULL,
    rows        INTEGER NOT NULL,
    first_rowid INTEGER NOT NULL,
    last_rowid  INTEGER NOT NULL,
    PRIMARY KEY (load_id, table_name)
);
CREATE TABLE IF NOT EXISTS _tapline_rejects (
    load_id     INTEGER NOT NULL,
    uri         TEXT NOT NULL,
    line        INTEGER,
    column_name TEXT,
    reason      TEXT NOT NULL,
    raw_line    TEXT
);
CREATE INDEX IF NOT EXISTS _tapline_rejects_by_load ON _tapline_rejects (load_id);
CREATE TABLE IF NOT EXISTS _tapline_tables (
    table_name      TEXT PRIMARY KEY,
    event_name      TEXT NOT NULL UNIQUE,
    created_by_load INTEGER NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _tapline_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _tapline_columns (
    table_name    TEXT NOT NULL,
    column_name   TEXT NOT NULL,
    raw_name      TEXT NOT NULL,
    added_by_load INTEGER NOT NULL,
    added_at      TEXT NOT NULL,
    -- The widened kind of the column's values (integer, decimal, boolean, timestamp, json,
    -- text); NULL while it held only NULLs. Files from before kinds get it at open.
    kind          TEXT,
    -- The kind a user pinned (a column-types file); NULL: none. Files from before pins get it
    -- at open.
    pinned        TEXT,
    PRIMARY KEY (table_name, column_name),
    UNIQUE (table_name, raw_name)
);

#!/usr/bin/env python3
"""Benchmark `tapline load` against `gzip -dc` on the same export, in the same run.

Prints wall time of both, their ratio, rows/s, uncompressed MB/s and peak RSS of each, and
checks the issue's targets (load <= 2x gzip -dc, peak RSS <= 64 MiB) without failing on them:
timings are figures to read, not assertions. With --hostile-dir, also the peak RSS of each
hostile export (issue 14) next to a good export of the same compressed size (target <= 1.5x).
"""
import argparse
import csv
import glob
import gzip
import os
import sqlite3
import statistics
import subprocess
import sys
import time


def run(cmd, ok_codes=(0,), env=None):
    """Runs cmd in a fresh child (with `env` added to the environment); returns (wall seconds,
    peak RSS KiB of that child alone)."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.execvpe(cmd[0], cmd, dict(os.environ, **(env or {})))
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in ok_codes:
        sys.exit(f"{' '.join(cmd)} exited {code}")
    return wall, usage.ru_maxrss


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tapline", required=True)
    parser.add_argument("--tapline-no-kinds", required=True, help="tapline built with the bench-no-kind-inference feature")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--runs", type=int, default=3, help="runs of each; the median is shown")
    parser.add_argument("--small-dir", help="a smaller export of the same shape: peak RSS must not grow with size")
    parser.add_argument("--hostile-dir", help="output of `tapline-sample-exports hostile`: peak RSS of each case")
    parser.add_argument("--generator", help="tapline-sample-exports, to write good files of matching sizes")
    parser.add_argument("--parquet-dir", help="`large/` and `small/` Parquet exports (`tapline-sample-exports parquet`): peak RSS of each")
    args = parser.parse_args()

    files = sorted(glob.glob(os.path.join(args.dir, "*-Bench-Event-*.csv.gz")))
    if not files:
        sys.exit("no bench export: run make bench")
    export = files[0]
    compressed = os.path.getsize(export)
    with gzip.open(export, "rb") as f:
        uncompressed = 0
        while chunk := f.read(1 << 20):
            uncompressed += len(chunk)
    db = os.path.join(args.dir, "bench.sqlite")

    def fresh_db():
        for suffix in ("", "-journal", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)

    # Median of a few runs each, interleaved, so a noisy neighbour skews both alike.
    # The load without column-kind inference (issue 19) too, to show what inference costs.
    gz_runs, tl_runs, plain_runs = [], [], []
    load = [args.tapline, "load", export, "--warehouse", f"sqlite://{db}", "--no-progress"]
    for _ in range(args.runs):
        gz_runs.append(run(["sh", "-c", f"gzip -dc '{export}' > /dev/null"]))
        fresh_db()
        plain_runs.append(run([args.tapline_no_kinds, *load[1:]]))
        fresh_db()
        tl_runs.append(run(load))
    gz_wall = statistics.median(w for w, _ in gz_runs)
    tl_wall = statistics.median(w for w, _ in tl_runs)
    gz_rss = max(r for _, r in gz_runs)
    tl_rss = max(r for _, r in tl_runs)
    with sqlite3.connect(db) as conn:
        rows, status = conn.execute("SELECT rows_loaded, status FROM _tapline_loads").fetchone()
    if status != "loaded":
        sys.exit(f"the bench export was not loaded: {status}")
    mb = uncompressed / 1e6
    print()
    print(f"export: {export}")
    print(f"        {compressed / 1e6:.1f} MB gzip, {mb:.1f} MB CSV, {rows:,} rows loaded")
    print()
    print(f"median of {args.runs} runs each; peak RSS is the largest seen")
    header()
    line("gzip -dc (baseline)", gz_wall, gz_rss, rows, mb)
    line("tapline load sqlite", tl_wall, tl_rss, rows, mb)
    plain_wall = statistics.median(w for w, _ in plain_runs)
    line("  without kind inference", plain_wall, max(r for _, r in plain_runs), rows, mb)
    ratio = tl_wall / gz_wall
    print()
    print(f"SQLite: tapline / gzip -dc = {ratio:.2f}x (target <= 2.00x: {'met' if ratio <= 2 else 'NOT met'})")
    print(f"SQLite: peak RSS {tl_rss / 1024:.1f} MiB (target <= 64 MiB: {'met' if tl_rss <= 64 * 1024 else 'NOT met'})")
    print(f"SQLite: column-kind inference costs {100 * (tl_wall / plain_wall - 1):+.1f} % of the load's wall time")

    if args.small_dir:
        small = sorted(glob.glob(os.path.join(args.small_dir, "*-Bench-Event-*.csv.gz")))[0]
        small_db = os.path.join(args.small_dir, "bench.sqlite")
        for suffix in ("", "-journal", "-wal", "-shm"):
            if os.path.exists(small_db + suffix):
                os.remove(small_db + suffix)
        _, small_rss = run([args.tapline, "load", small, "--warehouse", f"sqlite://{small_db}", "--no-progress"])
        with sqlite3.connect(small_db) as conn:
            (small_rows,) = conn.execute("SELECT rows_loaded FROM _tapline_loads").fetchone()
        print(
            f"SQLite: peak RSS {small_rss / 1024:.1f} MiB at {small_rows:,} rows, "
            f"{tl_rss / 1024:.1f} MiB at {rows:,} rows (flat: {tl_rss / small_rss:.2f}x for {rows / small_rows:.0f}x the rows)"
        )

    if args.hostile_dir:
        bench_hostile(args, rows, compressed)

    if args.parquet_dir:
        bench_parquet(args)

    pg = os.environ.get("TAPLINE_TEST_POSTGRES_URL")
    if pg:
        bench_postgres(args, export, pg, rows, mb)
    else:
        print("\nPostgreSQL: skipped (TAPLINE_TEST_POSTGRES_URL not set; `make bench` sets it)")
    print(f"\nmachine: {os.cpu_count()} cores; timings vary run to run on shared machines")


def load_rss(tapline, path, db, ok_codes=(0, 2)):
    """Peak RSS (KiB) of loading `path` into a fresh SQLite file, and its ledger row."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    _, rss = run([tapline, "load", path, "--warehouse", f"sqlite://{db}", "--no-progress"], ok_codes)
    with sqlite3.connect(db) as conn:
        ledger = conn.execute(
            "SELECT status, rows_loaded, rows_rejected, coalesce(error, '') FROM _tapline_loads"
        ).fetchone()
    return rss, ledger


def bench_parquet(args):
    """Peak RSS and wall time of loading a Parquet export into SQLite: memory is bounded by a
    row group (100,000 rows here), so the 1,000,000-row file costs what the tenth does."""
    print("\nParquet (issue 18): `tapline load` into SQLite, row groups of 100,000 rows")
    results = {}
    for size in ("small", "large"):
        path = os.path.join(args.parquet_dir, size, "parquet")
        db = os.path.join(args.parquet_dir, f"{size}.sqlite")
        for suffix in ("", "-journal", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        wall, rss = run([args.tapline, "load", path, "--warehouse", f"sqlite://{db}", "--no-progress"])
        with sqlite3.connect(db) as conn:
            status, rows = conn.execute("SELECT status, rows_loaded FROM _tapline_loads").fetchone()
        results[size] = rss
        print(f"  {size:6}{rows:>11,} rows  {wall:6.1f} s  {rows / wall:>9,.0f} rows/s  peak RSS {rss / 1024:6.1f} MiB  {status}")
    print(f"  flat: {results['large'] / results['small']:.2f}x the peak RSS for 10x the rows")


def bench_hostile(args, bench_rows, bench_compressed):
    """Each hostile case against a good export of the same compressed size (the benchmark
    file's shape, its row count scaled from the benchmark file's bytes per row)."""
    if not args.generator:
        sys.exit("--hostile-dir needs --generator")
    cases = []
    for line in open(os.path.join(args.hostile_dir, "cases.txt")):
        fields = dict(f.split("=", 1) for f in line.split())
        cases.append((fields["case"], int(fields["compressed_bytes"]), fields["path"]))
    print()
    print("hostile exports (issue 14): peak RSS of `tapline load` into SQLite, one file per run")
    print(f"{'case':12}{'gzip KB':>9}{'hostile':>12}{'good, same size':>17}{'ratio':>8}  outcome")
    for case, size, path in cases:
        good_dir = os.path.join(args.hostile_dir, f"good-like-{case}")
        good_rows = max(1, round(size * bench_rows / bench_compressed))
        subprocess.run(
            [args.generator, "bench", "--out", good_dir, "--rows", str(good_rows)],
            check=True, stdout=subprocess.DEVNULL,
        )
        good = sorted(glob.glob(os.path.join(good_dir, "*-Bench-Event-*.csv.gz")))[0]
        good_rss, good_ledger = load_rss(args.tapline, good, os.path.join(good_dir, "bench.sqlite"), (0,))
        if good_ledger[0] != "loaded":
            sys.exit(f"the good file beside {case} was not loaded: {good_ledger}")
        bad_rss, ledger = load_rss(args.tapline, path, os.path.join(os.path.dirname(path), "bench.sqlite"))
        ratio = bad_rss / good_rss
        status, loaded, rejected, error = ledger
        outcome = f"{status}, {loaded:,} rows, {rejected:,} rejected" + (f": {error}" if error else "")
        print(
            f"{case:12}{size / 1e3:9.0f}{bad_rss / 1024:8.1f} MiB{good_rss / 1024:10.1f} MiB "
            f"({good_rows:,} rows){ratio:6.2f}x  {'met' if ratio <= 1.5 else 'NOT met'}; {outcome}"
        )


def header():
    print(f"{'':26}{'wall s':>8}{'rows/s':>12}{'MB/s (CSV)':>12}{'peak RSS':>12}")


def line(name, wall, rss, rows, mb):
    print(f"{name:26}{wall:8.2f}{rows / wall:12,.0f}{mb / wall:12.1f}{rss / 1024:9.1f} MiB")


def psql(url, sql):
    env = dict(os.environ, PGOPTIONS="-c client_min_messages=warning")
    subprocess.run(["psql", url, "-qtA", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, stdout=subprocess.DEVNULL, env=env)


def bench_postgres(args, export, url, rows, mb):
    """Tapline into PostgreSQL against the database's own bulk path on the same file:
    `gzip -dc FILE | psql -c "\\copy t from stdin with (format csv, header)"` into text columns."""
    with gzip.open(export, "rt", newline="") as f:
        columns = next(csv.reader(f))
    defs = ", ".join(f'"c{i}" text' for i in range(len(columns)))
    base_runs, tl_runs = [], []
    for i in range(args.runs):
        psql(url, f"DROP SCHEMA IF EXISTS bench_base CASCADE; CREATE SCHEMA bench_base; CREATE TABLE bench_base.t ({defs})")
        copy = f"\\copy bench_base.t from stdin with (format csv, header)"
        base_runs.append(run(["sh", "-c", f"gzip -dc '{export}' | psql '{url}' -q -v ON_ERROR_STOP=1 -c '{copy}'"]))
        psql(url, "DROP SCHEMA IF EXISTS bench_tapline CASCADE")
        sep = "&" if "?" in url else "?"
        tl_runs.append(run([args.tapline, "load", export, "--warehouse", f"{url}{sep}schema=bench_tapline", "--no-progress"]))
    base = statistics.median(w for w, _ in base_runs)
    tl = statistics.median(w for w, _ in tl_runs)
    print()
    header()
    line("gzip -dc | psql \\copy", base, max(r for _, r in base_runs), rows, mb)
    line("tapline load postgres", tl, max(r for _, r in tl_runs), rows, mb)
    ratio = tl / base
    print()
    print(f"PostgreSQL: tapline / psql \\copy = {ratio:.2f}x (target <= 1.25x: {'met' if ratio <= 1.25 else 'NOT met'})")
    psql(url, "DROP SCHEMA IF EXISTS bench_base CASCADE; DROP SCHEMA IF EXISTS bench_tapline CASCADE")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark `tapline load` against `gzip -dc` on the same export, in the same run.

Prints a stage breakdown (issue 21), each stage next to its ceiling measured in the same run:
inflate only, + tokenise, + validate (tapline-bench-stages, the loader's own code) against
`gzip -dc > /dev/null`; the SQLite writer alone against SQLite's own `INSERT ... SELECT` of the
same rows into the same table shape; the full loads against `gzip -dc` (SQLite) and the
server's own `COPY ... FROM 'file'` (PostgreSQL; and its COPY of the very rows tapline wrote,
lineage and BRIN index included: the same-rows ceiling). Then wall time, rows/s, uncompressed MB/s and
peak RSS of the loads, and the issue's targets, without failing on them: timings are figures
to read, not assertions. With --hostile-dir, also the peak RSS of each
hostile export (issue 14) next to a good export of the same compressed size (target <= 1.5x).
"""
import argparse
import csv
import glob
import gzip
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time


# Each program's own peak RSS. A child forked by this Python starts with a copy of the Python's
# resident pages, and Linux keeps the larger of that and the program's own peak across exec
# (`ru_maxrss`), so a program smaller than the Python (~12 MiB) would read as the Python's size.
# GNU time forks from a process of about 1 MiB and reports its child's figure (`%M`); checked
# against a C program printing its own VmHWM at exit: 1.4, 6.4, 32 and 104 MiB read 1.4, 6.6, 32
# and 104 MiB through GNU time, and 62, 62, 62 and 104 MiB through fork and wait4 from a 60 MiB
# Python (posix_spawn and subprocess, which use vfork, read the same).
GNU_TIME = "/usr/bin/time"


def gnu_time_works():
    """Whether GNU time is there (BSD time has no -f/-o)."""
    if not os.access(GNU_TIME, os.X_OK):
        return False
    with tempfile.NamedTemporaryFile("r", prefix="tapline-bench-time.") as out:
        probe = subprocess.run([GNU_TIME, "-f", "%M", "-o", out.name, "true"], capture_output=True)
        return probe.returncode == 0 and out.read().strip().isdigit()


PEAK_OWN = gnu_time_works()


def run(cmd, ok_codes=(0,), env=None, stdout=None):
    """Runs cmd in a fresh child (with `env` added to the environment); returns (wall seconds,
    peak RSS KiB of the program alone, CPU seconds of it and its children). With `stdout` (a
    path), the child's output goes there. The peak is the program's own through GNU time;
    without GNU time it is at least this Python's resident size (see PEAK_OWN)."""
    with tempfile.NamedTemporaryFile("r", prefix="tapline-bench-rss.") as peak:
        argv = [GNU_TIME, "-f", "%M", "-o", peak.name, *cmd] if PEAK_OWN else cmd
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            out = os.open(stdout or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
            os.execvpe(argv[0], argv, dict(os.environ, **(env or {})))
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code not in ok_codes:
            sys.exit(f"{' '.join(cmd)} exited {code}")
        # GNU time writes "Command exited with non-zero status N" first when it did.
        rss = int(peak.read().split()[-1]) if PEAK_OWN else usage.ru_maxrss
    return wall, rss, usage.ru_utime + usage.ru_stime


def rss_note():
    """How the peak RSS figures were taken."""
    if PEAK_OWN:
        return "peak RSS: each program's own, from GNU time's %M"
    python = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return f"peak RSS: no GNU time ({GNU_TIME}), so a figure under {python:.0f} MiB is this Python's size, not the program's"


def stage(stages, *args):
    """Runs one stage of tapline-bench-stages in a fresh process: (the stage's own wall seconds,
    peak RSS KiB, the stage's CPU seconds, rows)."""
    with tempfile.NamedTemporaryFile("r", prefix="tapline-bench-stage.") as out:
        _, rss, _ = run([stages, *args], stdout=out.name)
        fields = dict(kv.split("=", 1) for kv in out.read().split())
    return float(fields["seconds"]), rss, float(fields["cpu"]), int(fields["rows"])


def remove_db(db):
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tapline", required=True)
    parser.add_argument("--tapline-no-kinds", help="tapline built with the bench-no-kind-inference feature")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--runs", type=int, default=3, help="runs of each; the median is shown")
    parser.add_argument("--stages", help="tapline-bench-stages (the stage breakdown)")
    parser.add_argument("--cost-only", action="store_true", help="only the cost per GB (PostgreSQL loads and the BigQuery commit's bytes)")
    parser.add_argument("--postgres-only", action="store_true", help="only the PostgreSQL lines (both ceilings)")
    parser.add_argument("--size-dirs", nargs="*", default=[], help="exports of the same shape at other sizes: peak RSS of each SQLite load (must not grow with size); each folder is deleted after")
    parser.add_argument("--hostile-dir", help="output of `tapline-sample-exports hostile`: peak RSS of each case")
    parser.add_argument("--generator", help="tapline-sample-exports, to write good files of matching sizes")
    parser.add_argument("--json-dir", help="the bench rows as a JSON-lines export (`tapline-sample-exports bench --format json`): its SQLite load against gzip -dc of it")
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
    pg = os.environ.get("TAPLINE_TEST_POSTGRES_URL")
    if args.cost_only:
        bench_cost(args, export, pg, compressed, uncompressed)
        return
    if args.postgres_only:
        if not pg:
            sys.exit("--postgres-only needs TAPLINE_TEST_POSTGRES_URL")
        with gzip.open(export, "rt", newline="") as f:
            rows = sum(1 for _ in csv.reader(f)) - 1
        bench_postgres(args, export, pg, rows, uncompressed / 1e6)
        return
    if not (args.tapline_no_kinds and args.stages):
        sys.exit("--tapline-no-kinds and --stages are needed (but for --cost-only)")
    db = os.path.join(args.dir, "bench.sqlite")

    def fresh_db():
        for suffix in ("", "-journal", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)

    # Median of a few runs each, interleaved, so a noisy neighbour skews all alike. The load
    # without column-kind inference (issue 19) too, to show what inference costs.
    runs = {k: [] for k in ("gzip", "inflate", "tokenise", "validate", "write", "ceiling", "ceiling-rows", "load", "plain")}
    load = [args.tapline, "load", export, "--warehouse", f"sqlite://{db}", "--no-progress"]
    write_db = os.path.join(args.dir, "bench-write.sqlite")
    for _ in range(args.runs):
        runs["gzip"].append(run(["sh", "-c", f"gzip -dc '{export}' > /dev/null"]))
        for name in ("inflate", "tokenise", "validate"):
            runs[name].append(stage(args.stages, name, export))
        remove_db(write_db)
        runs["write"].append(stage(args.stages, "write", export, write_db))
        remove_db(write_db)
        remove_db(db)
        runs["plain"].append(run([args.tapline_no_kinds, *load[1:]]))
        remove_db(db)
        runs["load"].append(run(load))
        runs["ceiling"].append(stage(args.stages, "ceiling", db))
        runs["ceiling-rows"].append(stage(args.stages, "ceiling-rows", db))
    with sqlite3.connect(db) as conn:
        rows, status = conn.execute("SELECT rows_loaded, status FROM _tapline_loads").fetchone()
    if status != "loaded":
        sys.exit(f"the bench export was not loaded: {status}")
    for name in ("tokenise", "validate", "write", "ceiling", "ceiling-rows"):
        seen = {r[3] for r in runs[name]}
        if seen != {rows}:
            sys.exit(f"stage {name} saw {seen} rows, the load {rows}")
    wall = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
    rss = {k: max(r[1] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r[2] for r in v) for k, v in runs.items()}
    mb = uncompressed / 1e6
    print()
    print(f"export: {export}")
    print(f"        {compressed / 1e6:.1f} MB gzip, {mb:.1f} MB CSV, {rows:,} rows loaded")
    print()
    print(f"stage breakdown, median of {args.runs} runs each (interleaved); peak RSS is the largest seen")
    print("(wall: seconds of the stage alone; CPU: user + system seconds of every thread; ratio: to the ceiling's)")
    print(f"{'stage':34}{'wall s':>7}{'MB/s':>7}{'CPU s':>7}  {'ceiling':22}{'wall':>7}{'CPU':>7}{'ratio wall':>11}{'ratio CPU':>10}{'peak RSS':>11}")

    def stage_line(name, key, ceiling_name, ceiling_key):
        print(
            f"{name:34}{wall[key]:7.2f}{mb / wall[key]:7.0f}{cpu[key]:7.2f}  {ceiling_name:22}"
            f"{wall[ceiling_key]:7.2f}{cpu[ceiling_key]:7.2f}{wall[key] / wall[ceiling_key]:10.2f}x"
            f"{cpu[key] / cpu[ceiling_key]:9.2f}x{rss[key] / 1024:7.1f} MiB"
        )

    gz = "gzip -dc"
    stage_line("ceiling: gzip -dc > /dev/null", "gzip", gz, "gzip")
    stage_line("inflate only", "inflate", gz, "gzip")
    stage_line("inflate + tokenise", "tokenise", gz, "gzip")
    stage_line("inflate + tokenise + validate", "validate", gz, "gzip")
    stage_line("ceiling: SQLite INSERT ... SELECT", "ceiling", "INSERT ... SELECT", "ceiling")
    stage_line("  the same, rows decoded and built", "ceiling-rows", "INSERT ... SELECT", "ceiling")
    stage_line("SQLite write alone (our writer)", "write", "... SELECT WHERE 1", "ceiling-rows")
    stage_line("full load: tapline load sqlite", "load", gz, "gzip")
    stage_line("  without kind inference", "plain", gz, "gzip")
    print("  (INSERT ... SELECT copies records whole, SQLite's transfer optimisation; WHERE 1 turns it off,")
    print("   so each row is decoded and built again: the ceiling of any writer through SQL, ours included)")
    print("  (write alone replays the file's first 32 MB of parsed batches up to its row count:")
    print("   its peak RSS holds them; parsing before it and cloning them are not timed)")
    print(f"  ({rss_note()})")
    bound = max(("the parser (inflate + tokenise + validate)", cpu["validate"]), ("the writer", cpu["write"]), key=lambda x: x[1])
    print(f"  a SQLite load runs the parser and the writer on two threads: the one with more CPU bounds it, here {bound[0]}")
    print(f"  (parser {cpu['validate']:.2f} CPU s, writer {cpu['write']:.2f} CPU s; on two free cores the load takes about the larger)")
    tl_wall, gz_wall, tl_rss = wall["load"], wall["gzip"], rss["load"]
    ratio = tl_wall / gz_wall
    print()
    print(f"SQLite: tapline / gzip -dc = {ratio:.2f}x (target <= 1.00x, stretch 0.70x: {'met' if ratio <= 1 else 'NOT met'})")
    print(f"SQLite: peak RSS {tl_rss / 1024:.1f} MiB (target <= 64 MiB: {'met' if tl_rss <= 64 * 1024 else 'NOT met'})")
    print(f"SQLite: column-kind inference costs {100 * (tl_wall / wall['plain'] - 1):+.1f} % of the load's wall time")

    if args.json_dir:
        bench_json(args, rows, ratio)

    if args.size_dirs:
        bench_sizes(args, export, rows, tl_rss)

    if args.hostile_dir:
        bench_hostile(args, rows, compressed)

    if args.parquet_dir:
        bench_parquet(args)

    if pg:
        bench_postgres(args, export, pg, rows, mb)
    else:
        print("\nPostgreSQL: skipped (TAPLINE_TEST_POSTGRES_URL not set; `make bench` sets it)")
    bench_cost(args, export, pg, compressed, uncompressed)
    print(f"\nmachine: {os.cpu_count()} cores; timings vary run to run on shared machines")


def bench_sizes(args, bench_export, bench_rows, bench_rss):
    """Peak RSS of `tapline load` into SQLite at each size, beside the bench file's; each other
    size's folder (export and database) is deleted once measured, the disk being tight."""
    print()
    print("SQLite: peak RSS of `tapline load` by export size (memory must stay flat)")
    sizes = []
    for folder in args.size_dirs:
        export = sorted(glob.glob(os.path.join(folder, "*-Bench-Event-*.csv.gz")))[0]
        with gzip.open(export, "rb") as f:
            text = sum(len(c) for c in iter(lambda: f.read(1 << 20), b""))
        rss, ledger = load_rss(args.tapline, export, os.path.join(folder, "bench.sqlite"), (0,))
        if ledger[0] != "loaded":
            sys.exit(f"{export} was not loaded: {ledger}")
        sizes.append((text, ledger[1], rss))
        shutil.rmtree(folder)
    with gzip.open(bench_export, "rb") as f:
        text = sum(len(c) for c in iter(lambda: f.read(1 << 20), b""))
    sizes.append((text, bench_rows, bench_rss))
    sizes.sort()
    for text, rows, rss in sizes:
        print(f"  {text / 1e6:9.0f} MB CSV {rows:>12,} rows  peak RSS {rss / 1024:6.1f} MiB")
    print(f"  flat: {sizes[-1][2] / sizes[0][2]:.2f}x the peak RSS for {sizes[-1][0] / sizes[0][0]:.0f}x the text")


def bench_json(args, csv_rows, csv_ratio):
    """The same rows as a JSON-lines export: `tapline load` into SQLite against `gzip -dc` of
    the JSON file (median of the runs, interleaved), next to the CSV load's ratio."""
    files = sorted(glob.glob(os.path.join(args.json_dir, "*-Bench-Event-*.json.gz")))
    if not files:
        sys.exit(f"no JSON bench export in {args.json_dir}")
    export = files[0]
    with gzip.open(export, "rb") as f:
        uncompressed = 0
        while chunk := f.read(1 << 20):
            uncompressed += len(chunk)
    db = os.path.join(args.json_dir, "bench-json.sqlite")
    runs = {"gzip": [], "load": []}
    for _ in range(args.runs):
        runs["gzip"].append(run(["sh", "-c", f"gzip -dc '{export}' > /dev/null"]))
        remove_db(db)
        runs["load"].append(run([args.tapline, "load", export, "--warehouse", f"sqlite://{db}", "--no-progress"]))
    with sqlite3.connect(db) as conn:
        rows, status = conn.execute("SELECT rows_loaded, status FROM _tapline_loads").fetchone()
    if status != "loaded" or rows != csv_rows:
        sys.exit(f"the JSON bench export loaded {rows} rows ({status}), the CSV one {csv_rows}")
    wall = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r[2] for r in v) for k, v in runs.items()}
    rss = max(r[1] for r in runs["load"])
    mb = uncompressed / 1e6
    ratio = wall["load"] / wall["gzip"]
    print(f"\nJSON lines: the same {rows:,} rows, {os.path.getsize(export) / 1e6:.1f} MB gzip, {mb:.1f} MB of JSON")
    print(f"  gzip -dc > /dev/null   {wall['gzip']:6.2f} s wall {cpu['gzip']:6.2f} s CPU")
    print(f"  tapline load sqlite    {wall['load']:6.2f} s wall {cpu['load']:6.2f} s CPU  {mb / wall['load']:5.0f} MB/s  peak RSS {rss / 1024:.1f} MiB")
    print(f"SQLite (JSON): tapline / gzip -dc = {ratio:.2f}x wall, {cpu['load'] / cpu['gzip']:.2f}x CPU "
          f"(target <= 1.00x: {'met' if ratio <= 1 else 'NOT met'}; the CSV file: {csv_ratio:.2f}x)")


def load_rss(tapline, path, db, ok_codes=(0, 2)):
    """Peak RSS (KiB) of loading `path` into a fresh SQLite file, and its ledger row."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    _, rss, _ = run([tapline, "load", path, "--warehouse", f"sqlite://{db}", "--no-progress"], ok_codes)
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
        wall, rss, _ = run([args.tapline, "load", path, "--warehouse", f"sqlite://{db}", "--no-progress"])
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


def postmaster_pid(url):
    """The pid of the local PostgreSQL server's postmaster, from its data directory's
    `postmaster.pid` (reading it takes a superuser, as with-postgres.sh's is)."""
    data = subprocess.run(["psql", url, "-qtA", "-c", "SHOW data_directory"], check=True,
                          capture_output=True, text=True).stdout.strip()
    with open(os.path.join(data, "postmaster.pid")) as f:
        return f.readline().strip()


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def server_cpu(postmaster):
    """CPU seconds (user + system) of the server so far: the postmaster, its live processes
    (backends, WAL writer, checkpointer) and those that ended (in the postmaster's children's
    times once reaped). Waits until no backend is left ending, so a finished client's is
    counted. A live backend's own children (COPY FROM PROGRAM's gzip) count once it ends.
    A child reaped while /proc is being read (after the postmaster's line, before its own) would
    be counted nowhere, so a reading counts only when two scans in a row saw the same children
    and the same reaped total."""
    tick = os.sysconf("SC_CLK_TCK")
    previous = None
    for _ in range(200):
        total, ending, children, reaped = 0, False, set(), 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                f = proc_stat(pid)
            except OSError:
                continue
            if pid == postmaster:
                reaped = int(f[13]) + int(f[14])
                total += int(f[11]) + int(f[12]) + reaped
            elif f[1] == postmaster:
                total += int(f[11]) + int(f[12])
                children.add(pid)
                ending |= f[0] == "Z"
        seen = None if ending else (children, reaped)
        if seen is not None and seen == previous:
            break
        previous = seen
        time.sleep(0.01)
    return total / tick


def bench_postgres(args, export, url, rows, mb):
    """Tapline into PostgreSQL against the server's own bulk path on the same file, into text
    columns: `COPY ... FROM 'file'` of the decompressed CSV (the ceiling for any client: the server
    reads the file itself), `COPY ... FROM PROGRAM 'gzip -dc ...'`, and a client's
    `gzip -dc FILE | psql -c "\\copy t from stdin with (format csv, header)"`. The clients connect
    over loopback without TLS, as the ceiling reads its file without any network; `tapline load`
    with TLS (sslmode=require) is measured too. Beside wall time: the client's CPU seconds and the
    server's (every server process: the bound on two cores is the larger of the two).

    A second, fair ceiling isolates the client and the protocol: the server's own COPY FROM 'file'
    of exactly the rows `tapline load` wrote (every column, `ts` as timestamptz, the four lineage
    columns with their values; exported once with `COPY (SELECT *) TO` from the table tapline
    loaded) into a table of the same DDL (the BRIN index on `_load_id` included), created in the
    COPY's transaction as tapline creates it. Binary format is that ceiling (what tapline sends,
    and the server's cheapest path); the same rows as CSV, and in binary without the BRIN index,
    are lines of their own."""
    with gzip.open(export, "rt", newline="") as f:
        columns = next(csv.reader(f))
    defs = ", ".join(f'"c{i}" text' for i in range(len(columns)))
    # The server runs as another user: the decompressed copy and the export go where it can read.
    work = tempfile.mkdtemp(prefix="tapline-bench-pg.")
    os.chmod(work, 0o755)
    plain = os.path.join(work, "export.csv")
    gz_copy = os.path.join(work, "export.csv.gz")
    shutil.copyfile(export, gz_copy)
    with gzip.open(export, "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    for path in (plain, gz_copy):
        os.chmod(path, 0o644)
    fresh = f"DROP SCHEMA IF EXISTS bench_base CASCADE; CREATE SCHEMA bench_base; CREATE TABLE bench_base.t ({defs})"
    runs = {k: [] for k in ("file", "program", "client", "tapline", "tls", "same", "same_csv", "same_nobrin", "same_client")}
    same_dir = os.path.join(work, "same")
    os.mkdir(same_dir)
    os.chmod(same_dir, 0o777)  # the server writes the same rows' files here
    same_tables = []
    sep = "&" if "?" in url else "?"
    plain_url = f"{url}{sep}sslmode=disable"
    postmaster = postmaster_pid(url)
    # Autovacuum would analyse and vacuum each loaded table while the next line is measured,
    # on the same two cores: off for the bench (the server is with-postgres.sh's throwaway one).
    psql(url, "ALTER SYSTEM SET autovacuum = off")
    psql(url, "SELECT pg_reload_conf()")

    def measured(cmd):
        before = server_cpu(postmaster)
        wall, rss, cpu = run(cmd)
        return wall, rss, cpu, server_cpu(postmaster) - before

    for i in range(args.runs):
        psql(url, fresh)
        runs["file"].append(measured(["psql", plain_url, "-q", "-v", "ON_ERROR_STOP=1", "-c",
                                      f"COPY bench_base.t FROM '{plain}' WITH (FORMAT csv, HEADER)"]))
        psql(url, fresh)
        runs["program"].append(measured(["psql", plain_url, "-q", "-v", "ON_ERROR_STOP=1", "-c",
                                         f"COPY bench_base.t FROM PROGRAM 'gzip -dc {gz_copy}' WITH (FORMAT csv, HEADER)"]))
        psql(url, fresh)
        copy = "\\copy bench_base.t from stdin with (format csv, header)"
        runs["client"].append(measured(["sh", "-c", f"gzip -dc '{export}' | psql '{plain_url}' -q -v ON_ERROR_STOP=1 -c '{copy}'"]))
        for key, mode in (("tapline", "disable"), ("tls", "require")):
            psql(url, "DROP SCHEMA IF EXISTS bench_tapline CASCADE; DROP SCHEMA IF EXISTS bench_tapline_bi CASCADE")
            runs[key].append(measured([args.tapline, "load", export, "--warehouse",
                                       f"{url}{sep}schema=bench_tapline&sslmode={mode}", "--no-progress"]))
            if key == "tapline" and not same_tables:
                same_tables = export_same_rows(url, same_dir)
        for key, fmt, indexes in (("same", "binary", True), ("same_csv", "csv", True), ("same_nobrin", "binary", False)):
            psql(url, "DROP SCHEMA IF EXISTS bench_same CASCADE; CREATE SCHEMA bench_same")
            runs[key].append(measured(["psql", plain_url, "-q", "-v", "ON_ERROR_STOP=1", "-c",
                                       same_rows_copy(same_tables, same_dir, fmt, indexes)]))
        # The same binary rows sent by a client that only reads them (psql \copy): the protocol's
        # share (socket, CopyData messages) without tapline's parsing and encoding.
        psql(url, "DROP SCHEMA IF EXISTS bench_same CASCADE; CREATE SCHEMA bench_same")
        runs["same_client"].append(measured(["psql", plain_url, "-q", "-1", "-v", "ON_ERROR_STOP=1",
                                             *same_rows_client(same_tables, same_dir)]))
    shutil.rmtree(work)
    wall = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
    peak = {k: max(r[1] for r in v) for k, v in runs.items()}
    client = {k: statistics.median(r[2] for r in v) for k, v in runs.items()}
    server = {k: statistics.median(r[3] for r in v) for k, v in runs.items()}
    print()
    print(f"PostgreSQL, median of {args.runs} runs each (text columns; peak RSS is the client's;")
    print(" CPU s: user + system of the client's processes, and of every server process)")
    print(f"{'':44}{'s':>7}{'MB/s':>8}  {'to COPY FROM file':>18}{'to same rows':>13}{'client CPU':>11}{'server CPU':>11}{'peak RSS':>12}")
    for name, key in (
        ("ceiling: server COPY FROM 'file'", "file"),
        ("COPY FROM PROGRAM 'gzip -dc'", "program"),
        ("gzip -dc | psql \\copy", "client"),
        ("same-rows ceiling: server COPY, binary", "same"),
        ("  the same rows as CSV", "same_csv"),
        ("  the same rows, binary, no BRIN index", "same_nobrin"),
        ("  the same rows, binary, sent by psql \\copy", "same_client"),
        ("full load: tapline load postgres", "tapline"),
        ("  the same over TLS (sslmode=require)", "tls"),
    ):
        print(f"{name:44}{wall[key]:7.2f}{mb / wall[key]:8.0f}  {wall[key] / wall['file']:17.2f}x"
              f"{wall[key] / wall['same']:12.2f}x{client[key]:11.2f}{server[key]:11.2f}{peak[key] / 1024:8.1f} MiB")
    ratio = wall["tapline"] / wall["file"]
    fair = wall["tapline"] / wall["same"]
    print()
    print(f"PostgreSQL: tapline / server COPY FROM file = {ratio:.2f}x (target <= 1.05x: {'met' if ratio <= 1.05 else 'NOT met'});"
          f" server CPU {server['tapline'] / server['file']:.2f}x the ceiling's")
    print(f"PostgreSQL: tapline / server COPY of the same rows (lineage, BRIN) = {fair:.2f}x"
          f" (target <= 1.05x: {'met' if fair <= 1.05 else 'NOT met'}); server CPU {server['tapline'] / server['same']:.2f}x,"
          f" client + server CPU {(client['tapline'] + server['tapline']) / server['same']:.2f}x that ceiling's server CPU")
    print(f"PostgreSQL: tapline / psql \\copy = {wall['tapline'] / wall['client']:.2f}x")
    psql(url, "DROP SCHEMA IF EXISTS bench_base CASCADE; DROP SCHEMA IF EXISTS bench_tapline CASCADE;"
              " DROP SCHEMA IF EXISTS bench_tapline_bi CASCADE; DROP SCHEMA IF EXISTS bench_same CASCADE;"
              " DROP SCHEMA IF EXISTS bench_same_ddl CASCADE")
    psql(url, "ALTER SYSTEM RESET autovacuum")
    psql(url, "SELECT pg_reload_conf()")


def psql_rows(url, sql):
    out = subprocess.run(["psql", url, "-qtA", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                         capture_output=True, text=True).stdout
    return out.split()


def export_same_rows(url, folder):
    """Writes the rows of each event table `tapline load` made in schema bench_tapline to
    `folder/TABLE.binary` and `folder/TABLE.csv` (the server writes them), and keeps each table's
    DDL (columns, NOT NULLs, the BRIN index) as an empty table in schema bench_same_ddl.
    Returns the tables' names (the bench export has one event, so one table)."""
    tables = psql_rows(url, "SELECT table_name FROM bench_tapline._tapline_tables ORDER BY 1")
    ddl = ["DROP SCHEMA IF EXISTS bench_same_ddl CASCADE", "CREATE SCHEMA bench_same_ddl"]
    for t in tables:
        ddl.append(f'CREATE TABLE bench_same_ddl."{t}" (LIKE bench_tapline."{t}" INCLUDING ALL)')
        for fmt in ("binary", "csv"):
            ddl.append(f"COPY (SELECT * FROM bench_tapline.\"{t}\") TO '{folder}/{t}.{fmt}' (FORMAT {fmt})")
    psql(url, "; ".join(ddl))
    return tables


def same_rows_copy(tables, folder, fmt, indexes):
    """One transaction, as a first `tapline load` runs: create each table in schema bench_same
    with the DDL tapline gave it (without its index when `indexes` is false), then the server's
    COPY FROM the file of the rows tapline wrote there."""
    like = "INCLUDING ALL" if indexes else "INCLUDING ALL EXCLUDING INDEXES"
    steps = ["BEGIN"]
    for t in tables:
        steps.append(f'CREATE TABLE bench_same."{t}" (LIKE bench_same_ddl."{t}" {like})')
        steps.append(f"COPY bench_same.\"{t}\" FROM '{folder}/{t}.{fmt}' (FORMAT {fmt})")
    steps.append("COMMIT")
    return "; ".join(steps)


def same_rows_client(tables, folder):
    """psql arguments (run with -1, one transaction) that create each table as `same_rows_copy`
    does and send its binary rows with `\\copy` from the client."""
    argv = []
    for t in tables:
        argv += ["-c", f'CREATE TABLE bench_same."{t}" (LIKE bench_same_ddl."{t}" INCLUDING ALL)',
                 "-c", f"\\copy bench_same.\"{t}\" from '{folder}/{t}.binary' with (format binary)"]
    return argv


# Prices for the cost per GB (USD, first tier, US regions), with where and when each was read in
# tests/README.md ("Cost per GB"). Lambda gives a function CPU in proportion to its memory, one
# vCPU at 1,769 MB.
LAMBDA_ARM_PER_GB_S = 0.0000133334
LAMBDA_MB_PER_VCPU = 1769
LAMBDA_MEMORY_MB = (256, 512, 1024)
# Cloud Run, request-based billing (the export loader's: 1 vCPU, 512 MiB, infra/gcp).
CLOUD_RUN_PER_VCPU_S = 0.000024
CLOUD_RUN_PER_GIB_S = 0.0000025
CLOUD_RUN_GIB = 0.5
BIGQUERY_PER_TIB = 6.25
# An export's uri as the cloud loaders record it in every row's `_source_uri` (the bucket's name
# is an example; the rest is the bench file's name).
COST_URI_PREFIX = "gs://clevertap-exports/exports/"
# The billing minimum BigQuery applies per table a statement references (each statement of a
# script is a child job, billed on its own: tests/README.md, "BigQuery commit statements").
BIGQUERY_MIN_BYTES = 10 * 1024 * 1024
# The commit scripts' statements for a load of the bench file's shape, one a line (keyword and
# tables named), written and checked by tests/tests/warehouse_bigquery_commit.rs.
BIGQUERY_STATEMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bigquery_commit_statements.txt")


def bigquery_commit_bytes(export):
    """What the BigQuery commit script's `INSERT ... SELECT` reads from the staging table: its
    logical size (STRING: 2 bytes + UTF-8 bytes; TIMESTAMP and INT64: 8; NULL, as an empty CSV
    field is: 0), data and lineage columns apart; and the rows and columns."""
    uri = COST_URI_PREFIX + os.path.basename(export)
    lineage_row = (2 + len(uri.encode())) + 8 + 8 + 8  # _source_uri, _source_line, _load_id, _loaded_at
    data = rows = 0
    with gzip.open(export, "rt", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        ts = header.index("ts")
        for record in reader:
            rows += 1
            for i, value in enumerate(record):
                if i == ts:
                    data += 8
                elif value:
                    data += 2 + len(value.encode())
    return data, lineage_row * rows, rows, len(header)


def bigquery_commit_statements(path=BIGQUERY_STATEMENTS):
    """The commit scripts listed in `path`: {section: [(keyword, [tables named])]}."""
    sections = {}
    current = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], [])
                continue
            words = line.split()
            current.append((words[0], words[1:]))
    return sections


def bigquery_statement_bytes(keyword, tables, staging_bytes):
    """What BigQuery on demand bills one statement of a script: what it reads (the staging
    table's size for the statement that copies it; the catalog and ledger tables are small), and
    at least 10 MB per table it names and per statement; BEGIN and COMMIT read no table: 0."""
    if keyword in ("BEGIN", "COMMIT"):
        return 0
    read = staging_bytes if "staging" in tables else 0
    return max(read, BIGQUERY_MIN_BYTES * max(1, len(tables)))


def bench_cost(args, export, url, compressed, uncompressed):
    """The cost per GB of gzip export, from the loader's own CPU: `tapline load` into PostgreSQL
    (the cloud loaders write to PostgreSQL or BigQuery, and parse the same way), three runs, the
    median; Lambda's duration derived from that CPU and the vCPU share of each memory size; and
    the bytes the BigQuery commit script is billed for, computed from the staging table."""
    print()
    print("Cost per GB of gzip export (prices and their sources: tests/README.md, \"Cost per GB\")")
    gb = compressed / 1e9
    if url:
        sep = "&" if "?" in url else "?"
        loads = []
        for _ in range(args.runs):
            psql(url, "DROP SCHEMA IF EXISTS bench_cost CASCADE")
            loads.append(run([args.tapline, "load", export, "--warehouse", f"{url}{sep}schema=bench_cost", "--no-progress"]))
        psql(url, "DROP SCHEMA IF EXISTS bench_cost CASCADE")
        wall = statistics.median(r[0] for r in loads)
        cpu = statistics.median(r[2] for r in loads)
        peak = max(r[1] for r in loads)
        per_gb = cpu / gb
        print(f"  `tapline load` into PostgreSQL: {cpu:.2f} CPU s (user + system, the tapline process), "
              f"{wall:.2f} s wall, peak RSS {peak / 1024:.1f} MiB, median of {args.runs}")
        print(f"  = {per_gb:.1f} CPU s per GB of gzip ({uncompressed / compressed:.1f}x: "
              f"{cpu / (uncompressed / 1e9):.1f} CPU s per GB of CSV); wall {wall / gb:.0f} s per GB here, "
              f"the PostgreSQL server sharing this machine's cores")
        print(f"  Lambda, Arm, ${LAMBDA_ARM_PER_GB_S:.10f} per GB-s; duration DERIVED as CPU s / vCPU share "
              f"(memory / {LAMBDA_MB_PER_VCPU} MB): the client's lower bound (a slower server adds its wait):")
        for mb in LAMBDA_MEMORY_MB:
            share = mb / LAMBDA_MB_PER_VCPU
            seconds = per_gb / share
            gb_s = seconds * mb / 1024
            print(f"    {mb:5} MB ({share:.3f} vCPU): {seconds:6.0f} s per GB, {gb_s:6.1f} GB-s per GB, "
                  f"${gb_s * LAMBDA_ARM_PER_GB_S:.5f} per GB; the 900 s timeout fits {900 / seconds:.1f} GB of gzip per file")
        run_s = per_gb  # one vCPU: the parser and writer threads share it
        run_usd = run_s * CLOUD_RUN_PER_VCPU_S + run_s * CLOUD_RUN_GIB * CLOUD_RUN_PER_GIB_S
        print(f"  Cloud Run, 1 vCPU, {CLOUD_RUN_GIB} GiB, request-based: {run_s:.1f} vCPU-s and "
              f"{run_s * CLOUD_RUN_GIB:.1f} GiB-s per GB, ${run_usd:.5f} per GB")
        lambda_usd = per_gb * LAMBDA_MB_PER_VCPU / 1024 * LAMBDA_ARM_PER_GB_S
        print(f"  10 GB of gzip a day (300 GB a month), before free tiers: Lambda ${300 * lambda_usd:.2f}, "
              f"Cloud Run ${300 * run_usd:.2f} a month")
    else:
        print("  loader CPU: skipped (TAPLINE_TEST_POSTGRES_URL not set; `make bench` sets it)")
    data, lineage, rows, columns = bigquery_commit_bytes(export)
    staging = data + lineage
    scripts = bigquery_commit_statements()
    print(f"  BigQuery commit: the staging table read by INSERT ... SELECT: {staging / 1e6:.0f} MB for {rows:,} rows "
          f"({data / 1e6:.0f} MB data, {lineage / 1e6:.0f} MB lineage, computed, not measured)")
    for section, statements in scripts.items():
        billed = sum(bigquery_statement_bytes(k, t, staging) for k, t in statements)
        floors = billed - staging
        per_million = billed / rows * 1e6
        print(f"  {section}: {len(statements)} statements ({os.path.basename(BIGQUERY_STATEMENTS)}), "
              f"{billed / 1e6:.0f} MB billed = {staging / 1e6:.0f} MB read + {floors / 1e6:.0f} MB of 10 MB minimums; "
              f"{per_million / 1e6:.0f} MB per million rows, {billed / compressed:.2f} bytes billed per byte of gzip, "
              f"${billed / 2**40 * BIGQUERY_PER_TIB / gb:.4f} per GB of gzip")
    steady = sum(bigquery_statement_bytes(k, t, staging) for k, t in scripts["next load"])
    print(f"  10 GB of gzip a day, before the free TiB: BigQuery ${300 * steady / compressed / 2**40 * 1e9 * BIGQUERY_PER_TIB:.2f} a month "
          f"(next loads; the bench file has {columns} columns, and the statement count does not grow with them)")

if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark `tapline load` against `gzip -dc` on the same export, in the same run.

Prints wall time of both, their ratio, rows/s, uncompressed MB/s and peak RSS of each, and
checks the issue's targets (load <= 2x gzip -dc, peak RSS <= 64 MiB) without failing on them:
timings are figures to read, not assertions.
"""
import argparse
import glob
import gzip
import os
import sqlite3
import statistics
import sys
import time


def run(cmd):
    """Runs cmd in a fresh child; returns (wall seconds, peak RSS KiB of that child alone)."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.execvp(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(cmd)} exited {code}")
    return wall, usage.ru_maxrss


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tapline", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--runs", type=int, default=3, help="runs of each; the median is shown")
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
    gz_runs, tl_runs = [], []
    for _ in range(args.runs):
        gz_runs.append(run(["sh", "-c", f"gzip -dc '{export}' > /dev/null"]))
        fresh_db()
        tl_runs.append(run([args.tapline, "load", export, "--warehouse", f"sqlite://{db}", "--no-progress"]))
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
    print(f"{'':22}{'wall s':>8}{'rows/s':>12}{'MB/s (CSV)':>12}{'peak RSS':>12}")
    print(f"{'gzip -dc (baseline)':22}{gz_wall:8.2f}{rows / gz_wall:12,.0f}{mb / gz_wall:12.1f}{gz_rss / 1024:9.1f} MiB")
    print(f"{'tapline load sqlite':22}{tl_wall:8.2f}{rows / tl_wall:12,.0f}{mb / tl_wall:12.1f}{tl_rss / 1024:9.1f} MiB")
    ratio = tl_wall / gz_wall
    print()
    print(f"ratio tapline / gzip -dc: {ratio:.2f}x (target <= 2.00x: {'met' if ratio <= 2 else 'NOT met'})")
    print(f"peak RSS: {tl_rss / 1024:.1f} MiB (target <= 64 MiB: {'met' if tl_rss <= 64 * 1024 else 'NOT met'})")
    print(f"machine: {os.cpu_count()} cores; timings vary run to run on shared machines")


if __name__ == "__main__":
    main()

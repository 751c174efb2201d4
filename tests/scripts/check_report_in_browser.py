"""Opens an HTML report in headless Chromium and checks what a reader would see.

    check_report_in_browser.py CHROMIUM REPORT.html WORKDIR

- the page renders its completeness grid (the DOM after parsing has `<table id="grid">` with
  cells of each status class given by --expect-class);
- no request left the page: Chromium's net log lists no request whose network isolation key is
  the page's (file://) for a URL other than the report itself (the browser's own background
  requests, to Google's services, carry other keys and are not the page's);
- the screenshot shows the grid: it holds pixels of the colours of a complete and of a bad cell.

Exit 0 when all hold; 1 with the reason otherwise.
"""

import json
import os
import struct
import subprocess
import sys
import zlib

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,900",
]

# The grid's colours (report.rs STYLE): complete, and missing chunk / mismatch / no export.
COMPLETE = (0xB7, 0xE1, 0xB0)
BAD = (0xF2, 0xA7, 0xA0)


def fail(reason):
    print(f"check_report_in_browser: {reason}")
    sys.exit(1)


def chromium(browser, workdir, *args):
    profile = os.path.join(workdir, "profile")
    run = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        timeout=120,
    )
    if run.returncode != 0:
        fail(f"chromium exited {run.returncode}: {run.stderr.decode(errors='replace')[-500:]}")
    return run.stdout.decode(errors="replace")


def png_pixels(path):
    """RGB(A) rows of an 8-bit truecolour PNG (what Chromium writes), with the stdlib only."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail("the screenshot is not a PNG")
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            if depth != 8 or colour not in (2, 6):
                fail(f"unexpected PNG format (depth {depth}, colour type {colour})")
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        filt, line = raw[i], bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if filt == 1:
                line[x] = (line[x] + a) & 255
            elif filt == 2:
                line[x] = (line[x] + b) & 255
            elif filt == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return rows, channels


def count_colour(rows, channels, rgb):
    n = 0
    for row in rows:
        for x in range(0, len(row), channels):
            if tuple(row[x : x + 3]) == rgb:
                n += 1
    return n


def main():
    if len(sys.argv) != 4:
        fail("usage: check_report_in_browser.py CHROMIUM REPORT.html WORKDIR")
    browser, report, workdir = sys.argv[1:]
    url = "file://" + os.path.abspath(report)
    dom = chromium(browser, workdir, "--dump-dom", url)
    if '<table id="grid">' not in dom:
        fail("the rendered page has no completeness grid")
    for cls in ("ok", "bad"):
        if f'class="{cls}"' not in dom:
            fail(f"the grid has no {cls} cell")
    netlog = os.path.join(workdir, "net.json")
    shot = os.path.join(workdir, "shot.png")
    chromium(browser, workdir, f"--log-net-log={netlog}", f"--screenshot={shot}", url)
    log = json.load(open(netlog))
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    left = sorted(
        {
            e["params"]["url"]
            for e in log["events"]
            if names.get(e["type"]) == "URL_REQUEST_START_JOB"
            and "file://" in e.get("params", {}).get("network_isolation_key", "")
            and not e["params"].get("url", "").startswith("file:")
        }
    )
    if left:
        fail(f"the page made requests: {left[:5]}")
    rows, channels = png_pixels(shot)
    complete, bad = count_colour(rows, channels, COMPLETE), count_colour(rows, channels, BAD)
    if complete < 50 or bad < 50:
        fail(f"the screenshot shows no grid (complete-coloured pixels {complete}, bad {bad})")
    print(f"grid rendered ({complete} complete and {bad} bad pixels), no request left the page")


if __name__ == "__main__":
    main()

"""Opens an HTML report in headless Chromium and checks what a reader would see.

    check_report_in_browser.py CHROMIUM REPORT.html WORKDIR [--cells CELLS.json]

- the page renders its completeness grid (the DOM after parsing has `<table id="grid">` with
  cells of class `ok` and `bad`); with `--cells`, every grid cell as the browser parsed it is
  written to CELLS.json as {"event", "day", "class", "status", "title"} (the status is read from
  the cell's title, `<event> on <day>: <status>…`), for the caller to compare with what it expects;
- no request left the page: Chromium's net log lists no request whose network isolation key is
  the page's (file://) for a URL other than the report itself (the browser's own background
  requests, to Google's services, carry other keys and are not the page's);
- the screenshot shows the grid: it holds pixels of the colour of each cell class the DOM has
  (complete, bad, and late when a late cell is there).

Exit 0 when all hold; 1 with the reason otherwise.
"""

import json
import os
import re
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
# Late (the day is not over).
LATE = (0xF7, 0xE3, 0xA1)

# The statuses a cell's title can give (status.rs `DayStatus::as_str`), longest first.
STATUSES = ["count mismatch", "missing chunk", "no export", "no count", "complete", "late"]


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


def grid_cells(dom):
    """The grid's cells as the browser serialised them: class and title of each `<td>` that has
    a title, inside `<table id="grid">`."""
    grid = dom.split('<table id="grid">', 1)[1].split("</table>", 1)[0]
    cells = []
    for cls, title in re.findall(r'<td class="([a-z]+)" title="([^"]*)">', grid):
        title = (
            title.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
            .replace("&#39;", "'").replace("&amp;", "&")
        )
        match = re.match(r"(.*?) on (\d{4}-\d{2}-\d{2}): (.*)$", title)
        if not match:
            fail(f"a grid cell's title does not name its event and day: {title!r}")
        event, day, rest = match.groups()
        status = next((s for s in STATUSES if rest.startswith(s)), None)
        if status is None:
            fail(f"a grid cell's title names no status: {title!r}")
        cells.append({"event": event, "day": day, "class": cls, "status": status, "title": title})
    return cells


def main():
    args = sys.argv[1:]
    cells_out = None
    if len(args) == 5 and args[3] == "--cells":
        cells_out = args[4]
        args = args[:3]
    if len(args) != 3:
        fail("usage: check_report_in_browser.py CHROMIUM REPORT.html WORKDIR [--cells CELLS.json]")
    browser, report, workdir = args
    url = "file://" + os.path.abspath(report)
    dom = chromium(browser, workdir, "--dump-dom", url)
    if '<table id="grid">' not in dom:
        fail("the rendered page has no completeness grid")
    for cls in ("ok", "bad"):
        if f'class="{cls}"' not in dom:
            fail(f"the grid has no {cls} cell")
    cells = grid_cells(dom)
    if cells_out:
        with open(cells_out, "w") as out:
            json.dump(cells, out, indent=1)
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
    late = ""
    if any(c["class"] == "late" for c in cells):
        n = count_colour(rows, channels, LATE)
        if n < 50:
            fail(f"the grid has a late cell but the screenshot shows none (late pixels {n})")
        late = f", {n} late"
    print(
        f"grid rendered ({complete} complete, {bad} bad{late} pixels), "
        f"{len(cells)} cells, no request left the page"
    )


if __name__ == "__main__":
    main()

"""Waits until URL answers HTTP (any status), at most SECONDS; exits 1 naming WHAT otherwise.

    python3 tests/scripts/wait-for-http.py URL SECONDS WHAT

Bounded, so a server that fails to start fails the run instead of hanging it.
"""
import sys
import time
import urllib.error
import urllib.request

url, seconds, what = sys.argv[1], float(sys.argv[2]), sys.argv[3]
deadline = time.time() + seconds
while True:
    try:
        urllib.request.urlopen(url, timeout=2)
        break
    except urllib.error.HTTPError:
        break  # it answered
    except Exception:
        if time.time() > deadline:
            sys.exit(f"{what} did not start within {seconds:.0f} s")
        time.sleep(0.1)

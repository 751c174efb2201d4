"""Verifies captured relay deliveries with the `standardwebhooks` and `svix` libraries.

Reads JSON on stdin: {"secrets": ["whsec_…", …], "deliveries": [{"headers": {name: value},
"body": "<the body as received>"}]}. Writes JSON on stdout: for each delivery and secret, what
each library made of it: {"results": [[{"standardwebhooks": "ok" | "<error class>", "svix": …}]]}.
The caller asserts the outcome; this script only reports it, and exits 0 unless it cannot run.
"""

import json
import sys

import standardwebhooks
import svix.webhooks


def outcome(verify):
    try:
        verify()
        return "ok"
    except Exception as err:  # the libraries raise their own classes; report which
        return type(err).__name__


def main():
    request = json.load(sys.stdin)
    results = []
    for delivery in request["deliveries"]:
        headers = delivery["headers"]
        body = delivery["body"]
        per_secret = []
        for secret in request["secrets"]:
            per_secret.append(
                {
                    "standardwebhooks": outcome(
                        lambda: standardwebhooks.Webhook(secret).verify(body, headers)
                    ),
                    "svix": outcome(lambda: svix.webhooks.Webhook(secret).verify(body, headers)),
                }
            )
        results.append(per_secret)
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()

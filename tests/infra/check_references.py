#!/usr/bin/env python3
"""Offline reference check for Terraform modules that `terraform validate` cannot reach.

The Google provider cannot be installed offline, so infra/gcp gets no `terraform validate`. This
catches the mistakes validate would have caught without a provider schema: a var/local/resource/
data/module output that is not declared, a counted resource's attribute read without an index
(or an uncounted one indexed), and a module call whose arguments do not match the module's variables.
Attribute names of provider resources are checked by check_schema.py, against the providers' schemas.

    .venv/bin/python tests/infra/check_references.py infra/gcp/examples/complete infra/gcp
Uses the HCL parser that checkov installs (python-hcl2).
"""

import json
import re
import sys
from pathlib import Path

import hcl2

META_ARGUMENTS = {"source", "version", "count", "for_each", "providers", "depends_on", "__start_line__", "__end_line__"}


def load(directory: Path) -> dict:
    """Declarations of one module directory, and its whole text as parsed JSON (for references)."""
    module = {"variables": {}, "locals": set(), "resources": {}, "data": set(), "outputs": set(), "calls": {}, "text": ""}
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle)
        # A moved block's `from` is, by design, an address no longer declared (Terraform checks both ends).
        module["text"] += json.dumps({kind: blocks for kind, blocks in parsed.items() if kind != "moved"})
        for block in parsed.get("variable", []):
            for name, body in block.items():
                module["variables"][name] = "default" in body
        for block in parsed.get("locals", []):
            module["locals"].update(k for k in block if not k.startswith("__"))
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    module["resources"][f"{kind}.{name}"] = "count" in body or "for_each" in body
        for block in parsed.get("data", []):
            for kind, named in block.items():
                module["data"].update(f"data.{kind}.{name}" for name in named)
        for block in parsed.get("output", []):
            module["outputs"].update(block)
        for block in parsed.get("module", []):
            module["calls"].update(block)
    return module


def problems_in(directory: Path) -> list[str]:
    module = load(directory)
    text = module["text"]
    found = []
    for name in sorted(set(re.findall(r"\bvar\.(\w+)", text)) - set(module["variables"])):
        found.append(f"var.{name} is not declared")
    for name in sorted(set(re.findall(r"\blocal\.(\w+)", text)) - module["locals"]):
        found.append(f"local.{name} is not declared")
    for ref in sorted(set(re.findall(r"\bdata\.\w+\.\w+", text)) - module["data"]):
        found.append(f"{ref} is not declared")
    for kind, name, after in re.findall(r"(?<![\w.])((?:google|aws)_\w+)\.(\w+)(.?)", text):
        address = f"{kind}.{name}"
        if address not in module["resources"]:
            found.append(f"{address} is not declared")
        elif module["resources"][address] and after == ".":
            # Whole-object uses (depends_on, `for … in`, values()) need no index; attributes do.
            found.append(f"{address} has count/for_each but its attributes are read without an index")
        elif not module["resources"][address] and after == "[":
            found.append(f"{address} has no count/for_each but is indexed")
    for call, body in module["calls"].items():
        source = body["source"][0] if isinstance(body["source"], list) else body["source"]
        child = load((directory / source).resolve())
        arguments = {k for k in body if k not in META_ARGUMENTS}
        for name in sorted(arguments - set(child["variables"])):
            found.append(f"module.{call} passes {name}, which {source} does not declare")
        for name in sorted(n for n, has_default in child["variables"].items() if not has_default and n not in arguments):
            found.append(f"module.{call} does not pass required variable {name}")
        for output in sorted(set(re.findall(rf"\bmodule\.{call}\.(\w+)", text)) - child["outputs"]):
            found.append(f"module.{call}.{output} is not an output of {source}")
    return sorted(set(found))


def main(directories: list[str]) -> int:
    failed = False
    for directory in directories:
        problems = problems_in(Path(directory))
        print(f"references in {directory}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print(f"  {problem}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

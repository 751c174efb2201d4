#!/usr/bin/env python3
"""Offline reference check for Terraform modules that `terraform validate` cannot reach.

The Google provider cannot be installed offline, so infra/gcp gets no `terraform validate`. This
catches the mistakes validate would have caught without a provider schema: a var/local/resource/
data/module output that is not declared, a counted resource's attribute read without an index
(or an uncounted one indexed), a module call whose arguments do not match the module's variables,
and a `moved` block whose ends are not an old (undeclared) and a new (declared) address.
Attribute names of provider resources are checked by check_schema.py, against the providers' schemas.

    .venv/bin/python tests/infra/check_references.py infra/gcp/examples/complete infra/gcp
Uses the HCL parser that checkov installs (python-hcl2).

For infra/gcp it also asserts the relay's wiring (issue 15), since no plan can show it offline:
the values derived from the inputs alone (derived.tf: the Pub/Sub settings derived from the retry
schedule, the warehouse detection, the TAPLINE_HTTP_* map) are evaluated by terraform itself, with
no provider, for chosen inputs; the rest (which service gets which variable, secret and grant) is
asserted on the parsed blocks, and the variable names against the Rust constants that read them.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import hcl2

ROOT = Path(__file__).resolve().parents[2]

META_ARGUMENTS = {"source", "version", "count", "for_each", "providers", "depends_on", "__start_line__", "__end_line__"}


def load(directory: Path) -> dict:
    """Declarations of one module directory, and its whole text as parsed JSON (for references)."""
    module = {"variables": {}, "locals": set(), "resources": {}, "data": set(), "outputs": set(), "calls": {}, "moved": [], "text": ""}
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
        for block in parsed.get("moved", []):
            module["moved"].append((one(block["from"]).strip("${}"), one(block["to"]).strip("${}")))
    return module


# A moved block's end: [module.NAME[INDEX].]TYPE.NAME[KEY].
MOVED_ADDRESS = re.compile(r'^(?:module\.(\w+)(\[[^\]]+\])?\.)?((?:google|aws)_\w+\.\w+)(\[[^\]]+\])?$')


def moved_problems(directory: Path, module: dict) -> list[str]:
    """Each `moved` block leaves an address no longer declared for one that is, with an index
    exactly where the resource (or module call) has count/for_each: Terraform checks this at plan
    time, which GCP never gets offline."""
    found = []
    for source, target in module["moved"]:
        ends = {"from": MOVED_ADDRESS.match(source), "to": MOVED_ADDRESS.match(target)}
        if not all(ends.values()):
            found.append(f"moved {source} -> {target}: not a resource address this check reads")
            continue
        for end, match in ends.items():
            call, call_index, resource, key = match.groups()
            declared = module["resources"]
            if call:
                body = module["calls"].get(call)
                if body is None:
                    found.append(f"moved {end} {match.string}: no module.{call}")
                    continue
                counted = "count" in body or "for_each" in body
                if counted != (call_index is not None):
                    found.append(f"moved {end} {match.string}: module.{call} {'has' if counted else 'has no'} count/for_each")
                source_dir = one(body["source"])
                declared = load((directory / source_dir).resolve())["resources"]
            exists = resource in declared
            if end == "from" and exists:
                found.append(f"moved from {match.string}: {resource} is still declared")
            elif end == "to" and not exists:
                found.append(f"moved to {match.string}: {resource} is not declared")
            elif end == "to" and declared[resource] != (key is not None):
                found.append(f"moved to {match.string}: {resource} {'has' if declared[resource] else 'has no'} count/for_each")
    return found


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
    found += moved_problems(directory, module)
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


def one(value):
    """A parsed attribute: python-hcl2 wraps each value in a one-item list."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def blocks(directory: Path, kind: str) -> dict:
    """Every `resource` (or `data`) of the module as {"type.name": body}; `locals` as {name: value};
    `module` calls as {name: body}."""
    found = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle)
        for block in parsed.get(kind, []):
            if kind == "locals":
                found.update({k: one(v) for k, v in block.items() if not k.startswith("__")})
                continue
            if kind == "module":
                found.update(block)
                continue
            for type_, named in block.items():
                for name, body in named.items():
                    found[f"{type_}.{name}"] = body
    return found


# The evaluation cases of derived.tf: (extra -var arguments, expected locals or the error's text).
SVIX = ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]
DERIVED_CASES = [
    # The default (Svix's) schedule: pushes every 5 s at first, at most every 600 s, and 75 of
    # them: 66 to span 10 h (+10 %) at 600 s, 7 to ramp from 5 s to 600 s, 2 to spare.
    ([], {"min_backoff": 5, "max_backoff": 600, "max_delivery_attempts": 75}),
    # The tests' shortened schedule: Pub/Sub's least, 5.
    (["-var", 'webhook_relay_retry_schedule=["1s","2s"]'], {"min_backoff": 1, "max_backoff": 2, "max_delivery_attempts": 5}),
    (["-var", 'webhook_relay_retry_schedule=["1s","10h"]'], {"min_backoff": 1, "max_backoff": 600, "max_delivery_attempts": 78}),
    (["-var", 'webhook_relay_retry_schedule=["11h"]'], "webhook_relay_retry_schedule: at least one wait"),
    (["-var", 'webhook_relay_retry_schedule=["5d"]'], "webhook_relay_retry_schedule: at least one wait"),
    (["-var", "webhook_relay_retry_schedule=[]"], "webhook_relay_retry_schedule: at least one wait"),
    # The replaced inputs stop the plan with what to use instead.
    (["-var", 'webhook_relay_secret_names=["ALERTS_TOKEN"]'], "webhook_relay_route_secret_names"),
    (["-var", "webhook_relay_max_delivery_attempts=30"], "derived from webhook_relay_retry_schedule"),
    # A route with a warehouse destination, found in the TOML; none without.
    (["-var", 'webhook_relay_config=[[routes.destinations]]\ntype = "warehouse"\n'], {"has_warehouse": True}),
    (["-var", "webhook_relay_config=[[routes.destinations]]\ntype = 'warehouse'\n"], {"has_warehouse": True}),
    (["-var", 'webhook_relay_config=[[routes.destinations]]\ntype = "slack"\n'], {"has_warehouse": False}),
    # TAPLINE_HTTP_*: only what was set; every one of them when all are.
    ([], {"http_env": {}}),
    (["-var", "http_server_limits={max_connections = 200}"], {"http_env": {"TAPLINE_HTTP_MAX_CONNECTIONS": "200"}}),
    (["-var", "http_server_limits={header_timeout_secs = 0}"], "http_server_limits: each a whole number"),
    (["-var", "webhook_relay_max_instances=0"], "webhook_relay_max_instances: a whole number"),
]
ALL_HTTP_LIMITS = "http_server_limits={header_timeout_secs=5, request_timeout_secs=20, idle_timeout_secs=4, max_connections=300, shutdown_grace_secs=7}"


def derived_problems(directory: Path) -> list[str]:
    """Evaluates derived.tf with variables.tf, for each case, with terraform and no provider."""
    if not (directory / "derived.tf").exists():
        return [f"{directory}/derived.tf is missing: nothing derives the relay's Pub/Sub settings"]
    found = []
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        for name in ("variables.tf", "derived.tf"):
            (work_dir / name).write_text((directory / name).read_text())
        (work_dir / "outputs.tf").write_text(
            'output "derived" {\n  value = {\n'
            "    min_backoff = local.relay_min_backoff_secs, max_backoff = local.relay_max_backoff_secs\n"
            "    max_delivery_attempts = local.relay_max_delivery_attempts, has_warehouse = local.relay_config_has_warehouse\n"
            "    http_env = local.http_env\n  }\n}\n"
        )
        env = dict(os.environ, TF_IN_AUTOMATION="1", TF_DATA_DIR=str(work_dir / ".terraform"))
        run = lambda *args: subprocess.run(["terraform", f"-chdir={work}", *args], capture_output=True, text=True, env=env)  # noqa: E731
        init = run("init", "-input=false", "-backend=false", "-no-color")
        if init.returncode != 0:
            return [f"derived.tf: terraform init failed: {init.stderr.strip()}"]
        required = ["-var", "project_id=p", "-var", "region=r", "-var", "export_bucket_name=b", "-var", "export_loader_image=i"]
        cases = DERIVED_CASES + [(["-var", ALL_HTTP_LIMITS], {"http_env": "every TAPLINE_HTTP_* constant"})]
        for extra, expected in cases:
            applied = run("apply", "-auto-approve", "-input=false", "-no-color", "-state", str(work_dir / "state"), *required, *extra)
            label = " ".join(extra[1::2]) or "defaults"
            if isinstance(expected, str):
                if applied.returncode == 0 or expected not in " ".join(applied.stderr.split()):
                    found.append(f"derived.tf with {label}: expected the error {expected!r}, got: {applied.stderr.strip() or 'no error'}")
                continue
            if applied.returncode != 0:
                found.append(f"derived.tf with {label}: {applied.stderr.strip()}")
                continue
            output = run("output", "-state", str(work_dir / "state"), "-json", "derived")
            values = json.loads(output.stdout)
            if expected == {"http_env": "every TAPLINE_HTTP_* constant"}:
                expected = {"http_env": {name: values["http_env"].get(name) for name in http_constants()}}
                if sorted(values["http_env"]) != sorted(http_constants()) or None in expected["http_env"].values():
                    found.append(f"derived.tf: http_env sets {sorted(values['http_env'])}, the server reads {sorted(http_constants())}")
                continue
            for key, want in expected.items():
                if values.get(key) != want:
                    found.append(f"derived.tf with {label}: {key} is {values.get(key)!r}, expected {want!r}")
    return found


def rust_sources() -> str:
    """The Rust code of shared/ and functions/, as one text: constants are looked up by name, not
    by the file that holds them today."""
    files = sorted(ROOT.glob("shared/src/**/*.rs")) + sorted(ROOT.glob("functions/*/src/**/*.rs"))
    return "\n".join(path.read_text() for path in files)


def http_constants() -> list[str]:
    """The TAPLINE_HTTP_* variables the shared HTTP server reads."""
    return sorted(set(re.findall(r'pub const ENV_\w+: &str = "(TAPLINE_HTTP_\w+)";', rust_sources())))


def gcp_relay_problems(directory: Path) -> list[str]:
    """The relay's GCP wiring, on the parsed blocks (what derived.tf yields is checked above)."""
    found = derived_problems(directory)
    resources = blocks(directory, "resource")
    locals_ = blocks(directory, "locals")
    variables = {}
    for block in hcl2.load((directory / "variables.tf").open()).get("variable", []):
        variables.update(block)

    def expect(condition: bool, what: str) -> None:
        if not condition:
            found.append(what)

    services = blocks(directory, "module")

    def service(name: str) -> dict:
        """A Cloud Run service's module call (modules/cloud_run_service)."""
        call = services.get(name, {})
        expect(one(call.get("source")) == "./modules/cloud_run_service", f"module.{name} is not a modules/cloud_run_service call")
        return call

    def env_of(name: str) -> str:
        """A Cloud Run service's env list, as one text."""
        return json.dumps(service(name).get("env"))

    def takes_map(name: str, local: str) -> bool:
        """The service's env lists every entry of local.<local> (a map NAME → value)."""
        return re.search(rf"\[for (\w+) , (\w+) in local\.{local} : \{{'name': '\$\{{\1\}}', 'value': '\$\{{\2\}}'\}}\]", env_of(name)) is not None

    # 1. The retry schedule: the same variable as on AWS, to the worker, the subscription's
    #    settings derived from it (derived.tf), never set apart from it.
    schedule = variables.get("webhook_relay_retry_schedule", {})
    expect(one(schedule.get("default")) == SVIX, f"webhook_relay_retry_schedule defaults to {one(schedule.get('default'))}, not Svix's schedule")
    aws_variables = ROOT / "infra/aws/variables.tf"
    if aws_variables.exists():
        aws = {}
        for block in hcl2.load(aws_variables.open()).get("variable", []):
            aws.update(block)
        expect(
            json.dumps(schedule.get("validation")) == json.dumps(aws.get("webhook_relay_retry_schedule", {}).get("validation")),
            "webhook_relay_retry_schedule is not validated as on AWS",
        )
    common = str(locals_.get("relay_common_env"))
    worker_env, endpoint_env = str(locals_.get("relay_worker_env")), str(locals_.get("relay_endpoint_env"))
    expect("'TAPLINE_RELAY_RETRY_SCHEDULE': '${jsonencode(var.webhook_relay_retry_schedule)}'" in common, "the relay services do not get TAPLINE_RELAY_RETRY_SCHEDULE from webhook_relay_retry_schedule")
    expect("local.relay_common_env" in worker_env and "local.relay_common_env" in endpoint_env, "a relay service misses the common env (schedule, config, HTTP limits)")
    max_var = re.search(r'ENV_MAX_DELIVERY_ATTEMPTS: &str = "(\w+)"', rust_sources()).group(1)
    expect(f"'{max_var}': '${{tostring(local.relay_max_delivery_attempts)}}'" in worker_env, f"the worker does not get {max_var} from the subscription's max_delivery_attempts")
    expect("'TAPLINE_RELAY_TOPIC': '${google_pubsub_topic.relay_delivery[0].id}'" in worker_env, "the worker does not get the delivery topic it publishes retries to")
    subscription = resources.get("google_pubsub_subscription.relay_delivery", {})
    retry = one(subscription.get("retry_policy", [{}]))
    expect(
        (one(retry.get("minimum_backoff")), one(retry.get("maximum_backoff"))) == ("${local.relay_min_backoff_secs}s", "${local.relay_max_backoff_secs}s"),
        f"the subscription's retry policy is not derived from the schedule: {retry}",
    )
    expect(
        one(one(subscription.get("dead_letter_policy", [{}])).get("max_delivery_attempts")) == "${local.relay_max_delivery_attempts}",
        "the subscription's max_delivery_attempts is not derived from the schedule",
    )
    retries_grant = resources.get("google_pubsub_topic_iam_member.webhook_relay_worker_retries", {})
    expect(
        one(retries_grant.get("topic")) == "${google_pubsub_topic.relay_delivery[0].name}" and "webhook_relay_worker" in str(retries_grant.get("member")),
        "the worker may not publish to the delivery topic",
    )
    everything_else = json.dumps([resources, locals_])
    for replaced in ("webhook_relay_max_delivery_attempts", "webhook_relay_secret_names"):
        expect(f"var.{replaced}" not in everything_else, f"var.{replaced} is replaced but still used")

    # 2. Wiring gaps: no TAPLINE_WAREHOUSE on the endpoint, its instance cap, the worker's warehouse
    #    password, the worker's BigQuery grant on its own dataset only, the HTTP limits everywhere.
    # The endpoint parses its config in endpoint mode (config.rs): no destination settings at all.
    expect("TAPLINE_WAREHOUSE" not in endpoint_env, "the endpoint gets TAPLINE_WAREHOUSE, which only the worker reads")
    expect(one(service("webhook_relay").get("max_instance_count")) == "${var.webhook_relay_max_instances}", "the endpoint's max_instance_count is not set from webhook_relay_max_instances")
    instances = one(variables.get("webhook_relay_max_instances", {}).get("default"))
    expect(isinstance(instances, int) and 1 <= instances <= 100, f"webhook_relay_max_instances defaults to {instances}")
    worker = env_of("webhook_relay_worker")
    expect(
        "TAPLINE_WAREHOUSE_PASSWORD" in worker and "warehouse-password" in worker and "local.relay_has_warehouse" in worker,
        "the worker gets no PostgreSQL password secret for a warehouse destination",
    )
    expect("local.relay_has_warehouse ? ['webhook_relay_worker']" in str(locals_.get("secrets")), "the worker may not read the warehouse password")
    expect("webhook_relay_worker" not in str(locals_.get("warehouse_writers")), "the worker is a writer of the whole dataset")
    # The worker's one data grant is dataEditor on the relay's own dataset (webhook_events, its
    # ledger and staging tables); the loaders' dataset stays out of its reach.
    worker_dataset = "${google_bigquery_dataset.webhooks[0].dataset_id}"
    for address, body in resources.items():
        if address.startswith("google_bigquery_dataset_iam") or address.startswith("google_project_iam"):
            if "webhook_relay_worker" not in str(body.get("member")):
                continue
            allowed = "jobUser" in str(body.get("role")) or one(body.get("dataset_id")) == worker_dataset
            expect(allowed, f"{address} grants the worker more than jobs and its own dataset")
    dataset_grant = resources.get("google_bigquery_dataset_iam_member.webhook_relay_worker", {})
    expect(
        one(dataset_grant.get("dataset_id")) == worker_dataset
        and one(dataset_grant.get("role")) == "roles/bigquery.dataEditor",
        "the worker's BigQuery role is not granted on the relay's own dataset",
    )
    expect(
        one(resources.get("google_bigquery_dataset.webhooks", {}).get("dataset_id")) == "${local.webhooks_dataset_id}",
        "the relay's dataset is not made by Terraform",
    )
    expect(
        "TAPLINE_WAREHOUSE': '${local.relay_warehouse_url}'" in str(env_of("webhook_relay_worker")) or "local.relay_warehouse_url" in str(locals_.get("relay_worker_env")),
        "the worker's TAPLINE_WAREHOUSE is not the relay's dataset",
    )
    for name in ("export_loader", "api_puller"):
        expect(takes_map(name, "http_env"), f"{name} does not get the TAPLINE_HTTP_* limits")
    expect("merge(local.http_env," in common, "the relay services do not get the TAPLINE_HTTP_* limits")
    for name, env_local in (("webhook_relay", "relay_endpoint_env"), ("webhook_relay_worker", "relay_worker_env")):
        expect(takes_map(name, env_local), f"{name} does not take its env from local.{env_local}")

    # 3. Least secrets: route tokens to the endpoint only (and the alerts job's to the puller),
    #    destination credentials to the worker only; each service's map holds its own.
    secrets = str(locals_.get("secrets"))
    expect(
        "for name in local.relay_route_secret_names : relay-${name} => concat(['webhook_relay'],local.alerts_via_relay && name == var.api_puller_alerts_relay_token_secret_name ? ['api_puller'] : [])}" in secrets.replace('"', ""),
        "route secrets are not readable by the endpoint alone",
    )
    expect(
        "for name in local.relay_destination_secret_names : relay-${name} => ['webhook_relay_worker']" in secrets.replace('"', ""),
        "destination secrets are not readable by the worker alone",
    )
    expect("'TAPLINE_RELAY_SECRET_ARNS': '${jsonencode(local.relay_route_secret_versions)}'" in endpoint_env, "the endpoint's secret map is not the route secrets'")
    expect("'TAPLINE_RELAY_SECRET_ARNS': '${jsonencode(local.relay_destination_secret_versions)}'" in worker_env, "the worker's secret map is not the destination secrets'")
    expect("local.relay_route_secret_versions" in json.dumps(blocks(directory, "locals").get("alerts_relay_env")), "the api-puller's relay token is not a route secret")

    # 4. The sweep's rolling window comes from sweep_window_days, as on AWS.
    sweep = json.dumps(resources.get("google_cloud_scheduler_job.sweep", {}))
    expect("'window_days': '${var.sweep_window_days}'" in sweep, "the sweep's body does not carry window_days from sweep_window_days")
    return found


def main(directories: list[str]) -> int:
    failed = False
    for directory in directories:
        problems = problems_in(Path(directory))
        if Path(directory).resolve() == (ROOT / "infra/gcp").resolve():
            problems += gcp_relay_problems(Path(directory))
        print(f"references in {directory}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print(f"  {problem}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

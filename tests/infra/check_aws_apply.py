#!/usr/bin/env python3
"""Applies infra/aws/examples/complete to a moto server, checks what exists, then destroys it.

Run by tests/scripts/infra-check.sh inside tests/scripts/with-moto.sh, which exports
AWS_ENDPOINT_URL and test credentials. Needs TF_CLI_CONFIG_FILE pointing at the provider mirror.
moto stores Lambda functions without running them, so the zips are tiny stand-ins.
"""

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "infra/aws/examples/complete"
WORK = ROOT / ".tmp/infra-check/aws-apply"
REGION = "us-west-2"  # CleverTap us1's export region: no region-mismatch warning
PREFIX = "tapline-check"
BUCKET = "tapline-check-exports"
EXPORT_PREFIX = "clevertap/"
FUNCTIONS = ["export-loader", "api-puller", "webhook-relay", "webhook-relay-worker"]
ROUTE_SECRETS = ["ALERTS_TOKEN"]
DESTINATION_SECRETS = ["SLACK_ALERTS_URL", "CRM_SIGNING_KEY"]
RELAY_SECRETS = ROUTE_SECRETS + DESTINATION_SECRETS
# Not the defaults (10, 2, 100, 100), so that each shows where it lands.
LOADER_RESERVED, PULLER_RESERVED, RELAY_RESERVED, REFUSED_THRESHOLD = 7, 3, 40, 25
# The relay's refused-request log line (router.rs), which the refused-requests metric counts.
REFUSED_MESSAGE = "Webhook refused: not authorized."
ALARM_TOPIC = f"arn:aws:sns:{REGION}:123456789012:tapline-check-ops"
ALERT_RULES = '[{"name": "charged-floor", "event": "Charged", "when": "below", "count": 500}]'
# The report job's page, in a bucket of its own (the function puts that one object only).
REPORT_URI = "s3://tapline-check-reports/tapline/report.html"

failures: list[str] = []


def check(condition: bool, what: str, detail: object = "") -> None:
    print(f"  {'ok  ' if condition else 'FAIL'} {what}" + (f": {detail}" if not condition and detail != "" else ""))
    if not condition:
        failures.append(what)


def terraform(*args: str) -> None:
    env = dict(os.environ, TF_DATA_DIR=str(WORK / "tf-data"), TF_IN_AUTOMATION="1")
    cmd = ["terraform", f"-chdir={EXAMPLE}", *args, "-no-color"]
    started = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    print(f"$ terraform {' '.join(args[:1])} ... ({time.monotonic() - started:.0f} s, exit {done.returncode})")
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-6000:] + done.stderr[-6000:])
        raise SystemExit(f"terraform {args[0]} failed")
    (WORK / f"{args[0]}.log").write_text(done.stdout + done.stderr)
    for line in done.stdout.splitlines():
        if line.startswith(("Apply complete", "Destroy complete")):
            print("  " + line)


def stand_in_zips() -> Path:
    zips = WORK / "zips"
    for function in FUNCTIONS:
        path = zips / function / "bootstrap.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("bootstrap", "#!/bin/sh\necho stand-in for the offline check\n")
    return zips


# Not the default (7), so that the variable's way to the payload shows.
SWEEP_WINDOW_DAYS = 30

# Not the default, so that the derivation shows: 4 waits → 5 attempts → maxReceiveCount 5.
RETRY_SCHEDULE = ["5s", "5m", "2h", "10h"]


def tf_vars(endpoint: str, zips: Path) -> list[str]:
    values = {
        "aws_endpoint": endpoint,
        "region": REGION,
        "clevertap_region": "us1",
        "name_prefix": PREFIX,
        "export_bucket_name": BUCKET,
        "export_prefix": EXPORT_PREFIX,
        "clevertap_account_id": "TEST-ACCOUNT",
        "warehouse_url": "postgres://tapline@db.invalid/analytics?schema=clevertap",
        "lambda_zip_dir": str(zips),
        "webhook_relay_route_secret_names": json.dumps(ROUTE_SECRETS),
        "webhook_relay_destination_secret_names": json.dumps(DESTINATION_SECRETS),
        "export_loader_reserved_concurrency": str(LOADER_RESERVED),
        "api_puller_reserved_concurrency": str(PULLER_RESERVED),
        "webhook_relay_reserved_concurrency": str(RELAY_RESERVED),
        "webhook_relay_refused_alarm_threshold": str(REFUSED_THRESHOLD),
        "alarm_actions": json.dumps([ALARM_TOPIC]),
        "api_puller_events": json.dumps(["Charged"]),
        "api_puller_jobs": json.dumps(["events", "counts", "alerts"]),
        "api_puller_alert_rules": ALERT_RULES,
        "api_puller_alerts_relay_route": "alerts",
        "api_puller_alerts_relay_token_secret_name": "ALERTS_TOKEN",
        "api_puller_report_uri": REPORT_URI,
        "webhook_relay_retry_schedule": json.dumps(RETRY_SCHEDULE),
        "sweep_window_days": str(SWEEP_WINDOW_DAYS),
        # moto ignores SQS RedriveAllowPolicy, and the provider waits for it forever.
        "restrict_dead_letter_sources": "false",
    }
    return [arg for key, value in values.items() for arg in ("-var", f"{key}={value}")]


# Plans Terraform must refuse, each for its precondition's reason: (what, extra -var, message).
REFUSED_PLANS = [
    (
        "a secret named as both a route and a destination secret",
        {"webhook_relay_destination_secret_names": json.dumps([*DESTINATION_SECRETS, ROUTE_SECRETS[0]])},
        "A relay secret is either a route secret",
    ),
    (
        "the loader's reserved concurrency below its SQS mapping's maximum",
        {"export_loader_reserved_concurrency": "1"},  # the example keeps the maximum's default, 5
        "export_loader_reserved_concurrency must be at least export_loader_max_concurrency",
    ),
    (
        # A precondition the function's module checks for its caller (modules/lambda_function).
        "the alerts job without its rules",
        {"api_puller_alert_rules": ""},
        "api_puller_jobs includes alerts: set api_puller_alert_rules.",
    ),
    (
        "export suffixes S3 would refuse as overlapping",
        {"export_suffixes": json.dumps([".gz", ".csv.gz"])},
        "export_suffixes: at least one, and none may end another",
    ),
    (
        "a relay retry schedule longer than SQS keeps a message",
        {"webhook_relay_retry_schedule": json.dumps(["10h"] * 34)},  # 340 h + 10 % jitter > 14 days
        "webhook_relay_retry_schedule spans more than SQS keeps a message",
    ),
    (
        # The example passes the cloud mode and both timeouts through; its defaults (worker 60 s,
        # loader 300 s) would cut the worker off while it waits for a sweep.
        "the relay invoking the loader with a worker timeout below the loader's",
        {"webhook_relay_invokes_loader_and_puller": "true"},
        "webhook_relay_worker_timeout_seconds must exceed export_loader_timeout_seconds",
    ),
]


def refused_plans(variables: list[str], state: Path) -> None:
    """Each REFUSED_PLANS case fails `terraform plan` with its own message (nothing applied)."""
    env = dict(os.environ, TF_DATA_DIR=str(WORK / "tf-data"), TF_IN_AUTOMATION="1")
    for what, extra, message in REFUSED_PLANS:
        overrides = [arg for key, value in extra.items() for arg in ("-var", f"{key}={value}")]
        cmd = ["terraform", f"-chdir={EXAMPLE}", "plan", "-input=false", "-refresh=false", "-no-color",
               f"-state={state}", *variables, *overrides]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        said = " ".join((done.stdout + done.stderr).split())
        check(done.returncode != 0 and message in said, f"plan refused: {what}", said[-600:])


def policy_of(iam, role: str) -> dict:
    document = iam.get_role_policy(RoleName=role, PolicyName="tapline")["PolicyDocument"]
    return json.loads(document) if isinstance(document, str) else document


def statements(policy: dict) -> dict[str, dict]:
    return {s["Sid"]: s for s in policy["Statement"]}


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def assert_deployment(endpoint: str) -> None:
    session = boto3.Session(region_name=REGION)
    s3 = session.client("s3", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    lam = session.client("lambda", endpoint_url=endpoint)
    iam = session.client("iam", endpoint_url=endpoint)
    scheduler = session.client("scheduler", endpoint_url=endpoint)
    secrets = session.client("secretsmanager", endpoint_url=endpoint)
    logs = session.client("logs", endpoint_url=endpoint)
    cloudwatch = session.client("cloudwatch", endpoint_url=endpoint)

    queue_url = sqs.get_queue_url(QueueName=f"{PREFIX}-export-events")["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    dlq_url = sqs.get_queue_url(QueueName=f"{PREFIX}-export-events-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bucket_arn = f"arn:aws:s3:::{BUCKET}"

    print("bucket")
    notification = s3.get_bucket_notification_configuration(Bucket=BUCKET)
    queues = notification.get("QueueConfigurations", [])
    check(len(queues) == 3, "one notification per export suffix", queues)
    for config in queues:
        rules = {r["Name"].lower(): r["Value"] for r in config["Filter"]["Key"]["FilterRules"]}
        check(config["QueueArn"] == queue["QueueArn"], f"notification {config.get('Id')} targets the export queue", config["QueueArn"])
        check(config["Events"] == ["s3:ObjectCreated:*"], f"notification {config.get('Id')} on object created", config["Events"])
        check(rules.get("prefix") == EXPORT_PREFIX and rules.get("suffix") in (".gz", ".gzip", ".parquet"),
              f"notification {config.get('Id')} filters prefix and suffix", rules)
    bucket_policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    clevertap = statements(bucket_policy)["CleverTapWritesExports"]
    check(as_list(clevertap["Principal"]["AWS"]) == ["arn:aws:iam::062484260092:root"], "bucket policy names CleverTap's account", clevertap["Principal"])
    check(as_list(clevertap["Resource"]) == [f"{bucket_arn}/{EXPORT_PREFIX}*"], "CleverTap may write under the prefix only", clevertap["Resource"])
    check(s3.get_bucket_versioning(Bucket=BUCKET).get("Status") == "Enabled", "bucket versioning on")
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    check(all(block.values()), "public access blocked", block)

    print("export queue")
    redrive = json.loads(queue["RedrivePolicy"])
    check(redrive["deadLetterTargetArn"] == dlq_arn, "export queue redrives to its DLQ", redrive)
    check(int(redrive["maxReceiveCount"]) == 5, "after 5 receives", redrive)
    check(queue["VisibilityTimeout"] == "1800", "visibility timeout is six times the loader timeout", queue["VisibilityTimeout"])
    queue_policy = statements(json.loads(queue["Policy"]))["ExportBucketNotifications"]
    check(queue_policy["Principal"] == {"Service": "s3.amazonaws.com"}, "only S3 may send", queue_policy["Principal"])
    check(json.dumps(queue_policy["Condition"]).count(bucket_arn) == 1, "only from the export bucket", queue_policy["Condition"])

    print("functions")
    for function in FUNCTIONS:
        config = lam.get_function_configuration(FunctionName=f"{PREFIX}-{function}")
        check(config["Runtime"] == "provided.al2023" and config["Architectures"] == ["arm64"],
              f"{function}: provided.al2023 on arm64", (config["Runtime"], config["Architectures"]))
        group = [g for g in logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{PREFIX}-{function}")["logGroups"]
                 if g["logGroupName"] == f"/aws/lambda/{PREFIX}-{function}"]
        check(len(group) == 1 and group[0].get("retentionInDays") == 90, f"{function}: log group with retention", group)
    loader_env = lam.get_function_configuration(FunctionName=f"{PREFIX}-export-loader")["Environment"]["Variables"]
    check(loader_env.get("TAPLINE_WAREHOUSE_SECRET_ARN", "").startswith("arn:aws:secretsmanager:"), "export-loader gets the warehouse secret by ARN", loader_env)
    relay_env = lam.get_function_configuration(FunctionName=f"{PREFIX}-webhook-relay")["Environment"]["Variables"]
    check(relay_env.get("TAPLINE_RELAY_QUEUE_URL", "").endswith(f"/{PREFIX}-relay-delivery"), "webhook-relay gets its delivery queue", relay_env)
    check(sorted(json.loads(relay_env["TAPLINE_RELAY_SECRET_ARNS"])) == sorted(ROUTE_SECRETS),
          "webhook-relay gets its route secrets' ARNs only", relay_env["TAPLINE_RELAY_SECRET_ARNS"])
    check("TAPLINE_RELAY_CONFIG_TOML" in relay_env, "webhook-relay gets its TOML configuration", relay_env)
    worker_env = lam.get_function_configuration(FunctionName=f"{PREFIX}-webhook-relay-worker")["Environment"]["Variables"]
    check(worker_env.get("TAPLINE_RELAY_QUEUE_URL", "").endswith(f"/{PREFIX}-relay-delivery")
          and worker_env.get("TAPLINE_RELAY_DEAD_LETTER_QUEUE_URL", "").endswith(f"/{PREFIX}-relay-delivery-dlq"),
          "webhook-relay-worker gets its queue and dead-letter queue", worker_env)
    check(sorted(json.loads(worker_env["TAPLINE_RELAY_SECRET_ARNS"])) == sorted(DESTINATION_SECRETS),
          "webhook-relay-worker gets its destination secrets' ARNs only", worker_env["TAPLINE_RELAY_SECRET_ARNS"])
    url = lam.get_function_url_config(FunctionName=f"{PREFIX}-webhook-relay")
    check(url["AuthType"] == "NONE", "relay function URL (app-level auth)", url["AuthType"])
    puller_env = lam.get_function_configuration(FunctionName=f"{PREFIX}-api-puller")["Environment"]["Variables"]
    relay_arns = json.loads(relay_env["TAPLINE_RELAY_SECRET_ARNS"])
    check(puller_env.get("TAPLINE_PULL_JOBS") == "events,counts,alerts,report"
          and json.loads(puller_env.get("TAPLINE_ALERT_RULES", "null")) == json.loads(ALERT_RULES),
          "api-puller runs the alerts job with its rules", puller_env)
    check(puller_env.get("TAPLINE_ALERTS_RELAY_URL") == f"{url['FunctionUrl']}hooks/alerts"
          and puller_env.get("TAPLINE_ALERTS_RELAY_HEADER") == "X-Tapline-Token"
          and puller_env.get("TAPLINE_ALERTS_RELAY_TOKEN_SECRET_ARN") == relay_arns["ALERTS_TOKEN"],
          "api-puller posts breaches to the relay's alerts route with the route's token secret", puller_env)

    print("event source mappings")
    all_mappings = lam.list_event_source_mappings()["EventSourceMappings"]

    def mappings_of(function: str) -> list:
        return [m for m in all_mappings if m["FunctionArn"].endswith(f":function:{PREFIX}-{function}")]

    mappings = mappings_of("export-loader")
    check(len(mappings) == 1 and mappings[0]["EventSourceArn"] == queue["QueueArn"], "export-loader consumes the export queue", mappings)
    if mappings:
        mapping = lam.get_event_source_mapping(UUID=mappings[0]["UUID"])
        check(mapping.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], "export mapping reports batch item failures", mapping.get("FunctionResponseTypes"))
    worker = mappings_of("webhook-relay-worker")
    check(len(worker) == 1 and worker[0]["EventSourceArn"].endswith(f":{PREFIX}-relay-delivery"), "worker consumes the relay queue", worker)
    if worker:
        mapping = lam.get_event_source_mapping(UUID=worker[0]["UUID"])
        check(mapping.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], "relay mapping reports batch item failures", mapping.get("FunctionResponseTypes"))
    relay_queue_url = sqs.get_queue_url(QueueName=f"{PREFIX}-relay-delivery")["QueueUrl"]
    relay_redrive = json.loads(sqs.get_queue_attributes(QueueUrl=relay_queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    check(relay_redrive["deadLetterTargetArn"].endswith(f":{PREFIX}-relay-delivery-dlq"), "relay queue redrives to its DLQ", relay_redrive)
    check(int(relay_redrive["maxReceiveCount"]) == len(RETRY_SCHEDULE) + 1,
          "relay queue's maxReceiveCount is the retry schedule's attempts (waits + 1)", relay_redrive)
    check(json.loads(relay_env.get("TAPLINE_RELAY_RETRY_SCHEDULE", "null")) == RETRY_SCHEDULE
          and worker_env.get("TAPLINE_RELAY_RETRY_SCHEDULE") == relay_env.get("TAPLINE_RELAY_RETRY_SCHEDULE"),
          "both relay functions get the retry schedule the queue is derived from", worker_env)

    print("schedules")
    loader_arn = lam.get_function_configuration(FunctionName=f"{PREFIX}-export-loader")["FunctionArn"]
    sweep = scheduler.get_schedule(Name=f"{PREFIX}-export-sweep")
    check(sweep["Target"]["Arn"] == loader_arn, "sweep invokes the export-loader", sweep["Target"]["Arn"])
    check(json.loads(sweep["Target"]["Input"]) == {"tapline": "sweep", "uri": f"s3://{BUCKET}/{EXPORT_PREFIX}", "window_days": SWEEP_WINDOW_DAYS}, "sweep payload names the export prefix and the window", sweep["Target"].get("Input"))
    check(sweep["Target"].get("DeadLetterConfig", {}).get("Arn", "").endswith(f":{PREFIX}-schedules-dlq"), "sweep dead-letters to the schedules DLQ", sweep["Target"].get("DeadLetterConfig"))
    pull = scheduler.get_schedule(Name=f"{PREFIX}-api-pull")
    check(pull["Target"]["Arn"].endswith(f":function:{PREFIX}-api-puller"), "daily pull invokes the api-puller", pull["Target"]["Arn"])
    check(pull["ScheduleExpression"].startswith("cron("), "pull is a cron schedule", pull["ScheduleExpression"])

    print("IAM: every grant names its resource")
    loader = statements(policy_of(iam, f"{PREFIX}-export-loader"))
    check(as_list(loader["ReadExports"]["Resource"]) == [f"{bucket_arn}/{EXPORT_PREFIX}*"], "loader reads the export prefix only", loader["ReadExports"])
    check(as_list(loader["ListExportPrefix"]["Resource"]) == [bucket_arn]
          and loader["ListExportPrefix"]["Condition"]["StringLike"]["s3:prefix"] in (f"{EXPORT_PREFIX}*", [f"{EXPORT_PREFIX}*"]),
          "loader lists the export prefix only", loader["ListExportPrefix"])
    check(as_list(loader["ConsumeExportQueue"]["Resource"]) == [queue["QueueArn"]], "loader consumes its queue only", loader["ConsumeExportQueue"])
    check(as_list(loader["ReadWarehousePassword"]["Resource"]) == [loader_env["TAPLINE_WAREHOUSE_SECRET_ARN"]], "loader reads the warehouse secret only", loader["ReadWarehousePassword"])
    check(as_list(loader["WriteOwnLogs"]["Resource"])[0].split(":log-group:")[1] == f"/aws/lambda/{PREFIX}-export-loader:*", "loader writes its own log group only", loader["WriteOwnLogs"])
    relay_worker = statements(policy_of(iam, f"{PREFIX}-webhook-relay-worker"))
    relay_queue_arn = sqs.get_queue_attributes(QueueUrl=relay_queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    check(as_list(relay_worker["ConsumeDeliveryQueue"]["Resource"]) == [relay_queue_arn]
          and "sqs:ChangeMessageVisibility" in as_list(relay_worker["ConsumeDeliveryQueue"]["Action"]),
          "relay worker consumes (and sets backoffs on) its queue only", relay_worker["ConsumeDeliveryQueue"])
    check([r.split(":")[-1] for r in as_list(relay_worker["DeadLetterDeliveries"]["Resource"])] == [f"{PREFIX}-relay-delivery-dlq"]
          and as_list(relay_worker["DeadLetterDeliveries"]["Action"]) == ["sqs:SendMessage"],
          "relay worker sends to its dead-letter queue only", relay_worker["DeadLetterDeliveries"])
    check(as_list(relay_worker["HoldBackDeliveries"]["Resource"]) == [relay_queue_arn]
          and as_list(relay_worker["HoldBackDeliveries"]["Action"]) == ["sqs:SendMessage"],
          "relay worker re-sends held-back deliveries to its own queue only", relay_worker["HoldBackDeliveries"])
    payload_bucket = relay_env.get("TAPLINE_RELAY_PAYLOAD_BUCKET", "")
    check(payload_bucket.startswith(f"{PREFIX}-relay-payloads-") and worker_env.get("TAPLINE_RELAY_PAYLOAD_BUCKET") == payload_bucket,
          "both relay functions get the payload bucket (claim-check)", payload_bucket)
    payload_objects = f"arn:aws:s3:::{payload_bucket}/payloads/*"
    relay_endpoint = statements(policy_of(iam, f"{PREFIX}-webhook-relay"))
    check(as_list(relay_endpoint["StoreLargePayloads"]["Resource"]) == [payload_objects]
          and as_list(relay_endpoint["StoreLargePayloads"]["Action"]) == ["s3:PutObject"],
          "relay endpoint only writes payload objects", relay_endpoint["StoreLargePayloads"])
    check(as_list(relay_worker["ReadLargePayloads"]["Resource"]) == [payload_objects]
          and as_list(relay_worker["ReadLargePayloads"]["Action"]) == ["s3:GetObject"],
          "relay worker only reads payload objects", relay_worker["ReadLargePayloads"])
    check(as_list(relay_worker["DedupeClaims"]["Resource"]) == [f"arn:aws:s3:::{payload_bucket}/dedupe/*"]
          and sorted(as_list(relay_worker["DedupeClaims"]["Action"])) == ["s3:GetObject", "s3:PutObject"],
          "relay worker claims deliveries under dedupe/ only", relay_worker["DedupeClaims"])
    check(as_list(relay_worker["AttemptRecords"]["Resource"]) == [f"arn:aws:s3:::{payload_bucket}/attempts/*"]
          and as_list(relay_worker["ListAttemptRecords"]["Condition"]["StringLike"]["s3:prefix"]) == ["attempts/*"],
          "relay worker writes, reads and lists attempt records under attempts/ only",
          [relay_worker["AttemptRecords"], relay_worker["ListAttemptRecords"]])
    rules = s3.get_bucket_lifecycle_configuration(Bucket=payload_bucket)["Rules"]
    expire = next(r for r in rules if r["ID"] == "expire-payloads")
    check(expire["Status"] == "Enabled" and expire["Expiration"]["Days"] >= 15,
          "payload objects expire after the queues' retention (14 days), not before", expire)
    attempts_rule = next(r for r in rules if r["ID"] == "expire-attempt-records")
    check(attempts_rule["Expiration"]["Days"] >= 15, "attempt records outlive the retries", attempts_rule)
    check("TAPLINE_WAREHOUSE" not in relay_env and "TAPLINE_WAREHOUSE_SECRET_ARN" not in relay_env
          and worker_env.get("TAPLINE_WAREHOUSE") and worker_env.get("TAPLINE_WAREHOUSE_SECRET_ARN"),
          "the endpoint has neither the warehouse URL nor its password; the worker both", sorted(relay_env))
    roles = [f"{PREFIX}-{function}" for function in FUNCTIONS] + [f"{PREFIX}-scheduler"]
    for role in roles:
        for statement in policy_of(iam, role)["Statement"]:
            resources, actions = as_list(statement["Resource"]), as_list(statement["Action"])
            check("*" not in resources and not any(a.endswith(":*") or a == "*" for a in actions),
                  f"{role} {statement['Sid']}: no wildcard action or resource", statement)
    print("IAM: each relay function reads its own secrets only")
    secret_arns = {n: secrets.describe_secret(SecretId=f"{PREFIX}/relay/{n}")["ARN"] for n in RELAY_SECRETS}
    route_arns = sorted(secret_arns[n] for n in ROUTE_SECRETS)
    destination_arns = sorted(secret_arns[n] for n in DESTINATION_SECRETS)
    check(sorted(json.loads(relay_env["TAPLINE_RELAY_SECRET_ARNS"]).values()) == route_arns
          and sorted(json.loads(worker_env["TAPLINE_RELAY_SECRET_ARNS"]).values()) == destination_arns,
          "each relay function's TAPLINE_RELAY_SECRET_ARNS holds the ARNs of its own secrets",
          [relay_env["TAPLINE_RELAY_SECRET_ARNS"], worker_env["TAPLINE_RELAY_SECRET_ARNS"]])

    def readable_secrets(role: str) -> list[str]:
        return sorted(r for st in policy_of(iam, role)["Statement"]
                      if "secretsmanager:GetSecretValue" in as_list(st["Action"])
                      for r in as_list(st["Resource"]))

    check(readable_secrets(f"{PREFIX}-webhook-relay") == route_arns,
          "the endpoint's role reads the route secrets, and no destination secret or warehouse password",
          readable_secrets(f"{PREFIX}-webhook-relay"))
    check(readable_secrets(f"{PREFIX}-webhook-relay-worker") == sorted(destination_arns + [worker_env["TAPLINE_WAREHOUSE_SECRET_ARN"]]),
          "the worker's role reads the destination secrets and the warehouse password, and no route secret",
          readable_secrets(f"{PREFIX}-webhook-relay-worker"))

    puller = statements(policy_of(iam, f"{PREFIX}-api-puller"))
    check(sorted(as_list(puller["ReadSecrets"]["Resource"])) == sorted([
              puller_env["CLEVERTAP_PASSCODE_SECRET_ARN"], puller_env["TAPLINE_WAREHOUSE_SECRET_ARN"],
              relay_arns["ALERTS_TOKEN"]]),
          "api-puller reads its passcode, the warehouse password and the alerts route token only", puller["ReadSecrets"])
    relay_dlq_url = sqs.get_queue_url(QueueName=f"{PREFIX}-relay-delivery-dlq")["QueueUrl"]
    relay_dlq_arn = sqs.get_queue_attributes(QueueUrl=relay_dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    check(puller_env.get("TAPLINE_REPORT_URI") == REPORT_URI
          and puller_env.get("TAPLINE_REPORT_RELAY_QUEUE") == relay_dlq_url,
          "api-puller's report goes to its object and lists the relay's dead-letter queue", puller_env)
    check(as_list(puller["PutReport"]["Action"]) == ["s3:PutObject"]
          and as_list(puller["PutReport"]["Resource"]) == [f"arn:aws:s3:::{REPORT_URI[len('s3://'):]}"],
          "api-puller puts the report object only", puller.get("PutReport"))
    check(sorted(as_list(puller["ListRelayDeadLetters"]["Action"])) == ["sqs:ChangeMessageVisibility", "sqs:ReceiveMessage"]
          and as_list(puller["ListRelayDeadLetters"]["Resource"]) == [relay_dlq_arn],
          "api-puller receives and releases the relay's dead letters, and never deletes them", puller.get("ListRelayDeadLetters"))
    scheduler_policy = statements(policy_of(iam, f"{PREFIX}-scheduler"))
    check(sorted(as_list(scheduler_policy["InvokeScheduledFunctions"]["Resource"])) == sorted([loader_arn, pull["Target"]["Arn"]]),
          "scheduler invokes the loader and the puller only", scheduler_policy["InvokeScheduledFunctions"])

    print("secrets and alarms")
    names = {s["Name"] for s in secrets.list_secrets()["SecretList"]}
    expected = {f"{PREFIX}/warehouse-password", f"{PREFIX}/clevertap-passcode"} | {f"{PREFIX}/relay/{n}" for n in RELAY_SECRETS}
    check(expected <= names, "secrets exist (empty until filled)", names)
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNamePrefix=PREFIX)["MetricAlarms"]}
    check(f"{PREFIX}-export-events-dlq-not-empty" in alarms, "alarm on the export DLQ", sorted(alarms))
    check(all(f"{PREFIX}-{f}-errors" in alarms for f in FUNCTIONS), "error alarm per function", sorted(alarms))

    print("blast radius: reserved concurrency, the refused-requests alarm")
    reserved = {f: lam.get_function_concurrency(FunctionName=f"{PREFIX}-{f}").get("ReservedConcurrentExecutions")
                for f in FUNCTIONS}
    check(reserved == {"export-loader": LOADER_RESERVED, "api-puller": PULLER_RESERVED,
                       "webhook-relay": RELAY_RESERVED, "webhook-relay-worker": None},
          "reserved concurrency: the loader's and the puller's share, the endpoint's cap (the worker is capped by its mapping)",
          reserved)
    relay_group = f"/aws/lambda/{PREFIX}-webhook-relay"
    filters = logs.describe_metric_filters(logGroupName=relay_group)["metricFilters"]
    pattern = f'{{ $.message = "{REFUSED_MESSAGE}" }}'
    check(len(filters) == 2 and all(f["filterPattern"] == pattern for f in filters),
          "metric filters match the relay's refused-request log line", filters)
    transformations = sorted((t["metricNamespace"], t["metricName"], t["metricValue"])
                             for f in filters for t in f["metricTransformations"])
    namespace = f"Tapline/{PREFIX}"
    check(transformations == [(namespace, "WebhookRelayRefusedRequests", "$.held_back"),
                              (namespace, "WebhookRelayRefusedRequests", "1")],
          "refused requests counted as the lines plus the refusals each held back", transformations)
    # Found by content, not by the file that holds it today (the relay's router).
    writers = [path for path in sorted(ROOT.glob("shared/src/**/*.rs")) + sorted(ROOT.glob("functions/*/src/**/*.rs"))
               if f'"{REFUSED_MESSAGE}"' in (text := path.read_text()) and "held_back," in text]
    check(len(writers) == 1, "the relay still writes that message with held_back (its router)", writers)
    refused = alarms.get(f"{PREFIX}-webhook-relay-refused-requests", {})
    check((refused.get("Namespace"), refused.get("MetricName"), refused.get("Statistic"), refused.get("Period"),
           refused.get("Threshold"), refused.get("ComparisonOperator"), refused.get("AlarmActions"))
          == (namespace, "WebhookRelayRefusedRequests", "Sum", 300, float(REFUSED_THRESHOLD), "GreaterThanThreshold",
              [ALARM_TOPIC]),
          "alarm on the endpoint's refused requests over 5 minutes", refused)


def main() -> int:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        raise SystemExit("AWS_ENDPOINT_URL is not set: run under tests/scripts/with-moto.sh")
    WORK.mkdir(parents=True, exist_ok=True)
    state = WORK / "terraform.tfstate"
    state.unlink(missing_ok=True)
    variables = tf_vars(endpoint, stand_in_zips())
    terraform("init", "-input=false")
    refused_plans(variables, state)
    try:
        terraform("apply", "-input=false", "-auto-approve", f"-state={state}", *variables)
        assert_deployment(endpoint)
    finally:
        # The state was just written by apply: reading every resource back first only costs time.
        terraform("destroy", "-input=false", "-auto-approve", "-refresh=false", f"-state={state}", *variables)
    if failures:
        print(f"{len(failures)} check(s) failed: {failures}", file=sys.stderr)
        return 1
    print("AWS apply check: all assertions hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())

# api-puller: pulls what exports do not carry (or everything, for accounts without exports) from
# CleverTap's API on a daily schedule (schedules.tf).

locals {
  # Breaches of the alerts job go to a relay route, whose token the api-puller reads from the
  # same secret the relay checks it against.
  alerts_via_relay = var.enable_api_puller && var.api_puller_alerts_relay_route != null
  alerts_relay_env = local.alerts_via_relay ? {
    TAPLINE_ALERTS_RELAY_URL              = "${try(aws_lambda_function_url.webhook_relay[0].function_url, "")}hooks/${var.api_puller_alerts_relay_route}"
    TAPLINE_ALERTS_RELAY_HEADER           = var.api_puller_alerts_relay_header
    TAPLINE_ALERTS_RELAY_TOKEN_SECRET_ARN = local.alerts_relay_token_arn
  } : {}
  # Empty when the name is not one of the relay's secrets: the precondition below says so.
  alerts_relay_token_arn  = lookup(local.relay_route_secret_arns, coalesce(var.api_puller_alerts_relay_token_secret_name, "-"), "")
  alerts_relay_token_arns = local.alerts_via_relay ? compact([local.alerts_relay_token_arn]) : []
  # The report job: the completeness page put at TAPLINE_REPORT_URI after each run; setting the
  # URI adds the job. Its bucket and key name the one object the function may put.
  report_object   = var.api_puller_report_uri == "" ? null : regex("^s3://([^/]+)/(.+)$", var.api_puller_report_uri)
  report_job      = var.api_puller_report_uri != "" && !contains(var.api_puller_jobs, "report") ? ["report"] : []
  api_puller_jobs = concat(var.api_puller_jobs, local.report_job)
  # With the relay deployed, the page also lists the relay's dead letters
  # (TAPLINE_REPORT_RELAY_QUEUE): the function reads its dead-letter queue and releases every
  # message at once (receive and change visibility only: nothing is deleted or sent).
  report_relay_queue = var.enable_webhook_relay && var.api_puller_report_uri != ""
}

module "api_puller" {
  source = "./modules/lambda_function"
  count  = var.enable_api_puller ? 1 : 0

  name             = local.function_names.api_puller
  description      = "Pulls CleverTap API data (events, counts, campaigns, profiles) into the warehouse."
  role_description = "Tapline api-puller Lambda."
  account_id       = local.account_id
  zip_path         = var.api_puller_zip_path
  timeout_seconds  = var.api_puller_timeout_seconds
  memory_mb        = 256
  # Its own share of the account's concurrency: a flood of the relay's public URL cannot
  # throttle the daily pull.
  reserved_concurrency = var.api_puller_reserved_concurrency

  environment = merge(
    {
      CLEVERTAP_ACCOUNT_ID          = var.clevertap_account_id
      CLEVERTAP_REGION              = var.clevertap_region
      CLEVERTAP_PASSCODE_SECRET_ARN = aws_secretsmanager_secret.clevertap_passcode[0].arn
      TAPLINE_WAREHOUSE             = var.warehouse_url
      TAPLINE_WAREHOUSE_SECRET_ARN  = local.warehouse_secret_arn
      TAPLINE_TIMEZONE              = var.timezone
      TAPLINE_PULL_EVENTS           = join(",", var.api_puller_events)
      TAPLINE_PULL_JOBS             = join(",", local.api_puller_jobs)
      TAPLINE_PULL_LOOKBACK_DAYS    = tostring(var.api_puller_lookback_days)
      TAPLINE_ALERT_RULES           = var.api_puller_alert_rules
      TAPLINE_LOG                   = var.log_level
    },
    local.alerts_relay_env,
    var.api_puller_report_uri == "" ? {} : { TAPLINE_REPORT_URI = var.api_puller_report_uri },
    local.report_relay_queue ? { TAPLINE_REPORT_RELAY_QUEUE = aws_sqs_queue.relay_delivery_dlq[0].url } : {},
    # Pinned column types, only when given: unset keeps the warehouse's stored pins.
    var.column_types == "" ? {} : { TAPLINE_COLUMN_TYPES = var.column_types },
  )
  policy_json = data.aws_iam_policy_document.api_puller[0].json

  preconditions = [
    {
      condition     = !contains(var.api_puller_jobs, "alerts") || var.api_puller_alert_rules != ""
      error_message = "api_puller_jobs includes alerts: set api_puller_alert_rules."
    },
    {
      condition     = !contains(var.api_puller_jobs, "report") || var.api_puller_report_uri != ""
      error_message = "api_puller_jobs includes report: set api_puller_report_uri."
    },
    {
      condition = var.api_puller_alerts_relay_route == null || (
        var.enable_webhook_relay && contains(var.webhook_relay_route_secret_names, coalesce(var.api_puller_alerts_relay_token_secret_name, "-"))
      )
      error_message = "api_puller_alerts_relay_route needs enable_webhook_relay and api_puller_alerts_relay_token_secret_name, one of webhook_relay_route_secret_names."
    },
  ]

  tracing_mode       = var.tracing_mode
  log_retention_days = var.log_retention_days
  enable_alarms      = var.enable_alarms
  alarm_actions      = var.alarm_actions
  tags               = local.tags

  #checkov:skip=CKV_AWS_116:Scheduled runs that fail after the scheduler's retries go to the schedules' DLQ (schedules.tf).
  #checkov:skip=CKV_AWS_117:Reaches CleverTap's public API and the warehouse over TLS; no private resources.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (only secrets' ARNs); the default Lambda key encrypts it at rest.
}

# Its passcode, the warehouse password, the alerts route's token, the report object; the module
# adds its log group.
data "aws_iam_policy_document" "api_puller" {
  count = var.enable_api_puller ? 1 : 0

  statement {
    sid       = "ReadSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat([aws_secretsmanager_secret.clevertap_passcode[0].arn, local.warehouse_secret_arn], local.alerts_relay_token_arns)
  }

  # The report job replaces one object, whole: no read, list or delete, no other key.
  dynamic "statement" {
    for_each = local.report_object == null ? [] : [local.report_object]
    content {
      sid       = "PutReport"
      actions   = ["s3:PutObject"]
      resources = ["arn:aws:s3:::${statement.value[0]}/${statement.value[1]}"]
    }
  }

  # The report lists the relay's dead letters: received and released again, never deleted.
  dynamic "statement" {
    for_each = local.report_relay_queue ? [1] : []
    content {
      sid       = "ListRelayDeadLetters"
      actions   = ["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility"]
      resources = [aws_sqs_queue.relay_delivery_dlq[0].arn]
    }
  }
}

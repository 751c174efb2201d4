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
}

resource "aws_lambda_function" "api_puller" {
  count            = var.enable_api_puller ? 1 : 0
  function_name    = local.function_names.api_puller
  description      = "Pulls CleverTap API data (events, counts, campaigns, profiles) into the warehouse."
  role             = aws_iam_role.function["api_puller"].arn
  filename         = var.api_puller_zip_path
  source_code_hash = filebase64sha256(var.api_puller_zip_path)
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  timeout          = var.api_puller_timeout_seconds
  memory_size      = 256
  tags             = local.tags
  # Its own share of the account's concurrency (-1: none reserved): a flood of the relay's
  # public URL cannot throttle the daily pull.
  reserved_concurrent_executions = coalesce(var.api_puller_reserved_concurrency, -1)

  environment {
    variables = merge({
      CLEVERTAP_ACCOUNT_ID          = var.clevertap_account_id
      CLEVERTAP_REGION              = var.clevertap_region
      CLEVERTAP_PASSCODE_SECRET_ARN = aws_secretsmanager_secret.clevertap_passcode[0].arn
      TAPLINE_WAREHOUSE             = var.warehouse_url
      TAPLINE_WAREHOUSE_SECRET_ARN  = local.warehouse_secret_arn
      TAPLINE_TIMEZONE              = var.timezone
      TAPLINE_PULL_EVENTS           = join(",", var.api_puller_events)
      TAPLINE_PULL_JOBS             = join(",", var.api_puller_jobs)
      TAPLINE_PULL_LOOKBACK_DAYS    = tostring(var.api_puller_lookback_days)
      TAPLINE_ALERT_RULES           = var.api_puller_alert_rules
      TAPLINE_LOG                   = var.log_level
    }, local.alerts_relay_env)
  }

  lifecycle {
    precondition {
      condition     = !contains(var.api_puller_jobs, "alerts") || var.api_puller_alert_rules != ""
      error_message = "api_puller_jobs includes alerts: set api_puller_alert_rules."
    }
    precondition {
      condition = var.api_puller_alerts_relay_route == null || (
        var.enable_webhook_relay && contains(var.webhook_relay_route_secret_names, coalesce(var.api_puller_alerts_relay_token_secret_name, "-"))
      )
      error_message = "api_puller_alerts_relay_route needs enable_webhook_relay and api_puller_alerts_relay_token_secret_name, one of webhook_relay_route_secret_names."
    }
  }

  tracing_config {
    mode = var.tracing_mode
  }

  # The log group first, so Lambda never makes its own without retention. The role's policy may
  # come later: nothing invokes the function before its triggers, which wait for the policy.
  depends_on = [aws_cloudwatch_log_group.function]

  #checkov:skip=CKV_AWS_116:Scheduled runs that fail after the scheduler's retries go to the schedules' DLQ (schedules.tf).
  #checkov:skip=CKV_AWS_117:Reaches CleverTap's public API and the warehouse over TLS; no private resources.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (only secrets' ARNs); the default Lambda key encrypts it at rest.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile and signed zips from CI; cargo-lambda zips are built and deployed by the same operator.
}

# api-puller: pulls what exports do not carry (or everything, for accounts without exports) from
# CleverTap's API on a daily schedule (schedules.tf).

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

  environment {
    variables = {
      CLEVERTAP_ACCOUNT_ID          = var.clevertap_account_id
      CLEVERTAP_REGION              = var.clevertap_region
      CLEVERTAP_PASSCODE_SECRET_ARN = aws_secretsmanager_secret.clevertap_passcode[0].arn
      TAPLINE_WAREHOUSE             = var.warehouse_url
      TAPLINE_WAREHOUSE_SECRET_ARN  = local.warehouse_secret_arn
      TAPLINE_TIMEZONE              = var.timezone
      TAPLINE_PULL_EVENTS           = join(",", var.api_puller_events)
      TAPLINE_PULL_JOBS             = join(",", var.api_puller_jobs)
      TAPLINE_PULL_LOOKBACK_DAYS    = tostring(var.api_puller_lookback_days)
      TAPLINE_LOG                   = var.log_level
    }
  }

  tracing_config {
    mode = var.tracing_mode
  }

  # The log group first, so Lambda never makes its own without retention. The role's policy may
  # come later: nothing invokes the function before its triggers, which wait for the policy.
  depends_on = [aws_cloudwatch_log_group.function]

  #checkov:skip=CKV_AWS_116:Scheduled runs that fail after the scheduler's retries go to the schedules' DLQ (schedules.tf).
  #checkov:skip=CKV_AWS_115:Invoked once a day by one schedule; reserved concurrency would take from the account pool for nothing.
  #checkov:skip=CKV_AWS_117:Reaches CleverTap's public API and the warehouse over TLS; no private resources.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (only secrets' ARNs); the default Lambda key encrypts it at rest.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile and signed zips from CI; cargo-lambda zips are built and deployed by the same operator.
}

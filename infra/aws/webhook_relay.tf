# Webhook relay: CleverTap → function URL → webhook-relay (authenticates the route by its secret
# header, enqueues, answers 200 within CleverTap's 3–5 s) → SQS → webhook-relay-worker (delivers
# to Slack/HTTP/CleverTap/warehouse; failures come back per message, then go to the DLQ).
# Two functions because the endpoint is an HTTP handler (lambda_http) and the worker an SQS
# handler: each gets only its own permissions and timeout.

locals {
  # The retry schedule in seconds, and the attempts it allows: the delivery queue's
  # maxReceiveCount follows from it (queues.tf), never set apart from it.
  relay_retry_waits_secs = [
    for wait in var.webhook_relay_retry_schedule :
    tonumber(regex("^[0-9]+", wait)) * lookup({ s = 1, m = 60, h = 3600 }, regex("[smh]$", wait))
  ]
  relay_max_attempts = length(var.webhook_relay_retry_schedule) + 1

  relay_common_env = {
    # The default schedule of every route (TAPLINE_RELAY_RETRY_SCHEDULE wins over the TOML's).
    TAPLINE_RELAY_RETRY_SCHEDULE = jsonencode(var.webhook_relay_retry_schedule)
    TAPLINE_RELAY_CONFIG_TOML    = var.webhook_relay_config
    TAPLINE_LOG                  = var.log_level
    # Bodies too large for an SQS message go here (relay_payloads.tf). one(): null without the
    # relay, where nothing reads this map (an index would fail the plan).
    TAPLINE_RELAY_PAYLOAD_BUCKET = one(module.relay_payloads[*].bucket)
  }
}

resource "aws_lambda_function" "webhook_relay" {
  count            = var.enable_webhook_relay ? 1 : 0
  function_name    = local.function_names.webhook_relay
  description      = "Accepts CleverTap webhooks on a function URL and queues them for delivery."
  role             = aws_iam_role.function["webhook_relay"].arn
  filename         = var.webhook_relay_zip_path
  source_code_hash = filebase64sha256(var.webhook_relay_zip_path)
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  timeout          = var.webhook_relay_timeout_seconds
  memory_size      = 256
  tags             = local.tags
  # The cap of the public endpoint (-1: none): a flood of its URL gets 429s past it instead of
  # the account's whole unreserved concurrency.
  reserved_concurrent_executions = coalesce(var.webhook_relay_reserved_concurrency, -1)

  environment {
    variables = merge(local.relay_common_env, {
      TAPLINE_RELAY_QUEUE_URL = aws_sqs_queue.relay_delivery[0].url
      # JSON map NAME → ARN of the route tokens only. No TAPLINE_WAREHOUSE either: the endpoint
      # checks destinations' shape and never reads their secrets.
      TAPLINE_RELAY_SECRET_ARNS = jsonencode(local.relay_route_secret_arns)
    })
  }

  tracing_config {
    mode = var.tracing_mode
  }

  # Public as soon as its URL exists: it must be able to enqueue from the first request.
  depends_on = [aws_cloudwatch_log_group.function, aws_iam_role_policy.function]

  #checkov:skip=CKV_AWS_116:Invoked synchronously by the function URL: a failure is an HTTP error CleverTap retries; accepted webhooks are already in SQS with a DLQ.
  #checkov:skip=CKV_AWS_117:Talks only to SQS, S3 and Secrets Manager over TLS; no private resources.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (config without secrets, secrets' ARNs); the default Lambda key encrypts it at rest.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile and signed zips from CI; cargo-lambda zips are built and deployed by the same operator.
}

resource "aws_lambda_function_url" "webhook_relay" {
  count         = var.enable_webhook_relay ? 1 : 0
  function_name = aws_lambda_function.webhook_relay[0].function_name
  # CleverTap cannot sign requests with SigV4: the relay authenticates each route by its secret
  # header (or Basic auth), compared in constant time.
  authorization_type = "NONE"

  #checkov:skip=CKV_AWS_258:CleverTap's webhook sender cannot sign with SigV4; the function authenticates every route by secret header.
}

# Since October 2025 a new function URL also needs lambda:InvokeFunction, limited to calls made
# through the URL (the lambda:InvokedViaFunctionUrl condition). hashicorp/aws 5.100, the version
# the offline checks run, cannot express that condition, and an unconditioned public
# InvokeFunction would let anyone with AWS credentials invoke the relay directly; the README's
# Deploy section adds the statement with the AWS CLI after the first apply.
resource "aws_lambda_permission" "webhook_relay_url" {
  count                  = var.enable_webhook_relay ? 1 : 0
  statement_id           = "FunctionUrlPublicInvoke"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.webhook_relay[0].function_name
  principal              = "*"
  function_url_auth_type = "NONE"

  #checkov:skip=CKV_AWS_301:Public by design: CleverTap's webhook sender calls the URL from the internet and cannot sign; the relay authenticates each route by secret header.
}

resource "aws_lambda_function" "webhook_relay_worker" {
  count            = var.enable_webhook_relay ? 1 : 0
  function_name    = local.function_names.webhook_relay_worker
  description      = "Delivers queued webhooks to their destinations (Slack, HTTP, CleverTap, warehouse)."
  role             = aws_iam_role.function["webhook_relay_worker"].arn
  filename         = var.webhook_relay_worker_zip_path
  source_code_hash = filebase64sha256(var.webhook_relay_worker_zip_path)
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  timeout          = var.webhook_relay_worker_timeout_seconds
  memory_size      = 256
  tags             = local.tags

  environment {
    variables = merge(local.relay_common_env, {
      # The worker sets a failed delivery's visibility to its backoff on the delivery queue, and
      # sends permanent failures (with the attempt's outcome) to the dead-letter queue itself.
      TAPLINE_RELAY_QUEUE_URL             = aws_sqs_queue.relay_delivery[0].url
      TAPLINE_RELAY_DEAD_LETTER_QUEUE_URL = aws_sqs_queue.relay_delivery_dlq[0].url
      # JSON map NAME → ARN of the destinations' secrets only (never a route token).
      TAPLINE_RELAY_SECRET_ARNS = jsonencode(local.relay_destination_secret_arns)
      # The URL without its password, which comes from TAPLINE_WAREHOUSE_SECRET_ARN.
      TAPLINE_WAREHOUSE            = var.warehouse_url
      TAPLINE_WAREHOUSE_SECRET_ARN = local.warehouse_secret_arn
    })
  }

  tracing_config {
    mode = var.tracing_mode
  }

  # The queue mapping (below) waits for the role's policy; the function need not.
  depends_on = [aws_cloudwatch_log_group.function]

  #checkov:skip=CKV_AWS_116:Fed by the delivery queue, whose redrive policy dead-letters what keeps failing.
  #checkov:skip=CKV_AWS_115:Concurrency is capped by the event source mapping's maximum_concurrency (Slack allows about one message per second per webhook).
  #checkov:skip=CKV_AWS_117:Reaches public destinations (Slack, CleverTap, HTTP) over TLS; no private resources.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (config without secrets, secrets' ARNs); the default Lambda key encrypts it at rest.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile and signed zips from CI; cargo-lambda zips are built and deployed by the same operator.
}

resource "aws_lambda_event_source_mapping" "webhook_relay_worker" {
  count                   = var.enable_webhook_relay ? 1 : 0
  event_source_arn        = aws_sqs_queue.relay_delivery[0].arn
  function_name           = aws_lambda_function.webhook_relay_worker[0].arn
  batch_size              = 10
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = 2
  }

  # Lambda checks the role may read the queue when the mapping is created.
  depends_on = [aws_iam_role_policy.function]
}

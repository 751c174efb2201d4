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

  # The export-status destination's cloud mode: the worker invokes the loader's sweep and the
  # puller's reconcile job (Lambda Invoke, RequestResponse) instead of reading buckets and the
  # warehouse itself.
  relay_invokes_jobs = var.enable_webhook_relay && var.webhook_relay_invokes_loader_and_puller && var.enable_api_puller
  relay_jobs_env = local.relay_invokes_jobs ? {
    TAPLINE_EXPORT_LOADER_TARGET = "lambda:${module.export_loader.function_name}"
    TAPLINE_API_PULLER_TARGET    = "lambda:${module.api_puller[0].function_name}"
  } : {}

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

module "webhook_relay" {
  source = "./modules/lambda_function"
  count  = var.enable_webhook_relay ? 1 : 0

  name             = local.function_names.webhook_relay
  description      = "Accepts CleverTap webhooks on a function URL and queues them for delivery."
  role_description = "Tapline webhook-relay Lambda."
  account_id       = local.account_id
  zip_path         = var.webhook_relay_zip_path
  timeout_seconds  = var.webhook_relay_timeout_seconds
  memory_mb        = 256
  # The cap of the public endpoint: a flood of its URL gets 429s past it instead of the
  # account's whole unreserved concurrency.
  reserved_concurrency = var.webhook_relay_reserved_concurrency

  environment = merge(local.relay_common_env, {
    TAPLINE_RELAY_QUEUE_URL = aws_sqs_queue.relay_delivery[0].url
    # JSON map NAME → ARN of the route tokens only. No TAPLINE_WAREHOUSE either: the endpoint
    # checks destinations' shape and never reads their secrets.
    TAPLINE_RELAY_SECRET_ARNS = jsonencode(local.relay_route_secret_arns)
  })
  policy_json = data.aws_iam_policy_document.webhook_relay[0].json

  tracing_mode       = var.tracing_mode
  log_retention_days = var.log_retention_days
  enable_alarms      = var.enable_alarms
  alarm_actions      = var.alarm_actions
  tags               = local.tags

  #checkov:skip=CKV_AWS_116:Invoked synchronously by the function URL: a failure is an HTTP error CleverTap retries; accepted webhooks are already in SQS with a DLQ.
  #checkov:skip=CKV_AWS_117:Talks only to SQS, S3 and Secrets Manager over TLS; no private resources.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (config without secrets, secrets' ARNs); the default Lambda key encrypts it at rest.
}

# Accept: check the route token, enqueue (large bodies to S3); the module adds its log group.
data "aws_iam_policy_document" "webhook_relay" {
  count = var.enable_webhook_relay ? 1 : 0

  statement {
    sid       = "EnqueueDeliveries"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.relay_delivery[0].arn]
  }

  statement {
    # Bodies too large for an SQS message (claim-check): written once, never read back here.
    sid       = "StoreLargePayloads"
    actions   = ["s3:PutObject"]
    resources = ["${module.relay_payloads[0].arn}/payloads/*"]
  }

  dynamic "statement" {
    # Route tokens only: the public endpoint never holds a destination's credentials.
    for_each = length(local.relay_route_secret_arns) > 0 ? [1] : []
    content {
      sid       = "ReadRouteSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = values(local.relay_route_secret_arns)
    }
  }
}

resource "aws_lambda_function_url" "webhook_relay" {
  count         = var.enable_webhook_relay ? 1 : 0
  function_name = module.webhook_relay[0].function_name
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
  function_name          = module.webhook_relay[0].function_name
  principal              = "*"
  function_url_auth_type = "NONE"

  #checkov:skip=CKV_AWS_301:Public by design: CleverTap's webhook sender calls the URL from the internet and cannot sign; the relay authenticates each route by secret header.
}

module "webhook_relay_worker" {
  source = "./modules/lambda_function"
  count  = var.enable_webhook_relay ? 1 : 0

  name             = local.function_names.webhook_relay_worker
  description      = "Delivers queued webhooks to their destinations (Slack, HTTP, CleverTap, warehouse)."
  role_description = "Tapline webhook-relay-worker Lambda."
  account_id       = local.account_id
  zip_path         = var.webhook_relay_worker_zip_path
  timeout_seconds  = var.webhook_relay_worker_timeout_seconds
  memory_mb        = 256

  environment = merge(local.relay_common_env, {
    # The worker sets a failed delivery's visibility to its backoff on the delivery queue, and
    # sends permanent failures (with the attempt's outcome) to the dead-letter queue itself.
    TAPLINE_RELAY_QUEUE_URL             = aws_sqs_queue.relay_delivery[0].url
    TAPLINE_RELAY_DEAD_LETTER_QUEUE_URL = aws_sqs_queue.relay_delivery_dlq[0].url
    # JSON map NAME → ARN of the destinations' secrets only (never a route token).
    TAPLINE_RELAY_SECRET_ARNS = jsonencode(local.relay_destination_secret_arns)
    # The URL without its password, which comes from TAPLINE_WAREHOUSE_SECRET_ARN.
    TAPLINE_WAREHOUSE            = var.warehouse_url
    TAPLINE_WAREHOUSE_SECRET_ARN = local.warehouse_secret_arn
  }, local.relay_jobs_env)
  policy_json = data.aws_iam_policy_document.webhook_relay_worker[0].json

  preconditions = [
    {
      condition     = !var.webhook_relay_invokes_loader_and_puller || var.enable_api_puller
      error_message = "webhook_relay_invokes_loader_and_puller needs enable_api_puller: the puller runs the reconcile job."
    },
    {
      # A delivery waits for the loader's sweep (RequestResponse): a worker stopped first would
      # retry a sweep that is still running.
      condition     = !var.webhook_relay_invokes_loader_and_puller || var.webhook_relay_worker_timeout_seconds > var.export_loader_timeout_seconds
      error_message = "webhook_relay_invokes_loader_and_puller: webhook_relay_worker_timeout_seconds must exceed export_loader_timeout_seconds (the worker waits for the sweep)."
    },
  ]

  tracing_mode       = var.tracing_mode
  log_retention_days = var.log_retention_days
  enable_alarms      = var.enable_alarms
  alarm_actions      = var.alarm_actions
  tags               = local.tags

  #checkov:skip=CKV_AWS_116:Fed by the delivery queue, whose redrive policy dead-letters what keeps failing.
  #checkov:skip=CKV_AWS_115:Concurrency is capped by the event source mapping's maximum_concurrency (Slack allows about one message per second per webhook).
  #checkov:skip=CKV_AWS_117:Reaches public destinations (Slack, CleverTap, HTTP) over TLS; no private resources.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (config without secrets, secrets' ARNs); the default Lambda key encrypts it at rest.
}

# Consume the delivery queue, reach destinations; the module adds its log group.
data "aws_iam_policy_document" "webhook_relay_worker" {
  count = var.enable_webhook_relay ? 1 : 0

  statement {
    sid       = "ConsumeDeliveryQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
    resources = [aws_sqs_queue.relay_delivery[0].arn]
  }

  statement {
    # The bodies the endpoint stored in S3 because they did not fit an SQS message.
    sid       = "ReadLargePayloads"
    actions   = ["s3:GetObject"]
    resources = ["${module.relay_payloads[0].arn}/payloads/*"]
  }

  statement {
    # Deduplication: a conditional put claims each delivery, a HEAD reads an existing claim.
    sid       = "DedupeClaims"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${module.relay_payloads[0].arn}/dedupe/*"]
  }

  statement {
    # Every failed attempt that will be retried is recorded, so that a dead letter lists them all.
    sid       = "AttemptRecords"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${module.relay_payloads[0].arn}/attempts/*"]
  }

  statement {
    sid       = "ListAttemptRecords"
    actions   = ["s3:ListBucket"]
    resources = [module.relay_payloads[0].arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["attempts/*"]
    }
  }

  statement {
    # A paused destination's deliveries are sent again, delayed until the pause ends.
    sid       = "HoldBackDeliveries"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.relay_delivery[0].arn]
  }

  statement {
    # Permanent failures go to the dead-letter queue at once, with the attempt's outcome.
    sid       = "DeadLetterDeliveries"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.relay_delivery_dlq[0].arn]
  }

  dynamic "statement" {
    # The export-status destination's cloud mode: these two functions, nothing else.
    for_each = local.relay_invokes_jobs ? [1] : []
    content {
      sid       = "InvokeSweepAndReconcile"
      actions   = ["lambda:InvokeFunction"]
      resources = [module.export_loader.arn, module.api_puller[0].arn]
    }
  }

  statement {
    # Destinations' URLs, signing keys and passcodes, and the warehouse password; never a
    # route token (the worker authenticates no one).
    sid       = "ReadDestinationSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat(values(local.relay_destination_secret_arns), [local.warehouse_secret_arn])
  }
}

resource "aws_lambda_event_source_mapping" "webhook_relay_worker" {
  count                   = var.enable_webhook_relay ? 1 : 0
  event_source_arn        = aws_sqs_queue.relay_delivery[0].arn
  function_name           = module.webhook_relay_worker[0].arn
  batch_size              = 10
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = 2
  }

  # Lambda checks the role may read the queue when the mapping is created: the function (its
  # ARN, above) is made after its role's policy.
}

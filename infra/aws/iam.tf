# One role per function and one for the scheduler, each naming exactly the bucket prefix, queue,
# secrets and log group it uses. No wildcard actions, no "*" resources.

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    # Only Lambda acting for this account may take these roles (confused-deputy guard).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each           = local.enabled_functions
  name               = local.function_names[each.key]
  description        = "Tapline ${replace(each.key, "_", "-")} Lambda."
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

locals {
  log_stream_arns = { for key, group in aws_cloudwatch_log_group.function : key => "${group.arn}:*" }
  # Each relay function's own secrets, and only those, in its TAPLINE_RELAY_SECRET_ARNS and policy.
  relay_route_secret_arns       = { for name, secret in aws_secretsmanager_secret.relay : name => secret.arn if local.relay_secret_readers[name] == "endpoint" }
  relay_destination_secret_arns = { for name, secret in aws_secretsmanager_secret.relay : name => secret.arn if local.relay_secret_readers[name] == "worker" }

  function_policies = merge(
    { export_loader = data.aws_iam_policy_document.export_loader.json },
    var.enable_api_puller ? { api_puller = data.aws_iam_policy_document.api_puller[0].json } : {},
    var.enable_webhook_relay ? {
      webhook_relay        = data.aws_iam_policy_document.webhook_relay[0].json
      webhook_relay_worker = data.aws_iam_policy_document.webhook_relay_worker[0].json
    } : {},
  )
}

resource "aws_iam_role_policy" "function" {
  for_each = local.enabled_functions
  name     = "tapline"
  role     = aws_iam_role.function[each.key].id
  policy   = local.function_policies[each.key]
}

# --- export-loader: read export objects, list the prefix (sweep), consume the export queue ---

data "aws_iam_policy_document" "export_loader" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.log_stream_arns.export_loader]
  }

  statement {
    sid       = "ReadExports"
    actions   = ["s3:GetObject"]
    resources = [local.export_objects_arn]
  }

  statement {
    # The sweep lists the prefix to find exports whose notification was lost.
    sid       = "ListExportPrefix"
    actions   = ["s3:ListBucket"]
    resources = [local.export_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.export_prefix}*"]
    }
  }

  statement {
    sid       = "ConsumeExportQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.export_events.arn]
  }

  statement {
    sid       = "ReadWarehousePassword"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.warehouse_secret_arn]
  }
}

# --- api-puller: its passcode, the warehouse, the alerts route's token ----------------------

data "aws_iam_policy_document" "api_puller" {
  count = var.enable_api_puller ? 1 : 0

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.log_stream_arns.api_puller]
  }

  statement {
    sid       = "ReadSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat([aws_secretsmanager_secret.clevertap_passcode[0].arn, local.warehouse_secret_arn], local.alerts_relay_token_arns)
  }
}

# --- webhook-relay: accept (check the route token, enqueue) ----------------------------------

data "aws_iam_policy_document" "webhook_relay" {
  count = var.enable_webhook_relay ? 1 : 0

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.log_stream_arns.webhook_relay]
  }

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

# --- webhook-relay-worker: consume the delivery queue, reach destinations --------------------

data "aws_iam_policy_document" "webhook_relay_worker" {
  count = var.enable_webhook_relay ? 1 : 0

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.log_stream_arns.webhook_relay_worker]
  }

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

  statement {
    # Destinations' URLs, signing keys and passcodes, and the warehouse password; never a
    # route token (the worker authenticates no one).
    sid       = "ReadDestinationSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat(values(local.relay_destination_secret_arns), [local.warehouse_secret_arn])
  }
}

# --- EventBridge Scheduler: invoke the sweep and the api-puller -------------------------------

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${var.name_prefix}-scheduler"
  description        = "EventBridge Scheduler invoking the Tapline sweep and api-puller."
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid     = "InvokeScheduledFunctions"
    actions = ["lambda:InvokeFunction"]
    resources = concat(
      [aws_lambda_function.export_loader.arn],
      var.enable_api_puller ? [aws_lambda_function.api_puller[0].arn] : [],
    )
  }

  statement {
    sid       = "DeadLetterFailedInvocations"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.schedules_dlq.arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "tapline"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

# SQS: export notifications (S3 → queue → export-loader), the relay's accepted webhooks
# (function URL → queue → worker), each with a dead-letter queue, and the dead-letter queue of
# scheduled invocations that kept failing.

# --- Export notifications --------------------------------------------------------------------

resource "aws_sqs_queue" "export_events_dlq" {
  name                      = "${var.name_prefix}-export-events-dlq"
  message_retention_seconds = var.dead_letter_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = local.tags
}

resource "aws_sqs_queue" "export_events" {
  name = "${var.name_prefix}-export-events"
  # AWS advises six times the function timeout for an SQS event source, so a batch being retried
  # by Lambda is not handed out again meanwhile.
  visibility_timeout_seconds = min(6 * var.export_loader_timeout_seconds, 43200)
  message_retention_seconds  = 1209600
  sqs_managed_sse_enabled    = true
  policy                     = data.aws_iam_policy_document.export_events_queue.json
  tags                       = local.tags

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.export_events_dlq.arn
    maxReceiveCount     = var.export_queue_max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "export_events_dlq" {
  # Only the export queue may dead-letter here, so the DLQ's alarm means "an export failed".
  count     = var.restrict_dead_letter_sources ? 1 : 0
  queue_url = aws_sqs_queue.export_events_dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.export_events.arn]
  })
}

locals {
  # Built from the name, so the queue can carry its own policy (one create instead of a queue and
  # then a policy, each of which waits for SQS to settle).
  export_events_queue_arn = "arn:${local.partition}:sqs:${local.region}:${local.account_id}:${var.name_prefix}-export-events"
}

data "aws_iam_policy_document" "export_events_queue" {
  statement {
    sid       = "ExportBucketNotifications"
    actions   = ["sqs:SendMessage"]
    resources = [local.export_events_queue_arn]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    # Only our bucket, in our account (bucket names are global and can change hands).
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [local.export_bucket_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# --- Webhook relay delivery ------------------------------------------------------------------

resource "aws_sqs_queue" "relay_delivery_dlq" {
  count                     = var.enable_webhook_relay ? 1 : 0
  name                      = "${var.name_prefix}-relay-delivery-dlq"
  message_retention_seconds = var.dead_letter_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = local.tags
}

resource "aws_sqs_queue" "relay_delivery" {
  count                      = var.enable_webhook_relay ? 1 : 0
  name                       = "${var.name_prefix}-relay-delivery"
  visibility_timeout_seconds = 6 * var.webhook_relay_worker_timeout_seconds
  # 14 days, SQS's longest: the retry schedule's horizon (with +10 % jitter) must fit in it.
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = local.tags

  # One receive per attempt: the worker dead-letters itself, with the outcome, at its last
  # attempt; the redrive policy is the safety net for a delivery it never settles.
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.relay_delivery_dlq[0].arn
    maxReceiveCount     = local.relay_max_attempts
  })

  lifecycle {
    precondition {
      condition     = sum(local.relay_retry_waits_secs) * 1.1 < 1209600
      error_message = "webhook_relay_retry_schedule spans more than SQS keeps a message (14 days)."
    }
  }
}

resource "aws_sqs_queue_redrive_allow_policy" "relay_delivery_dlq" {
  count     = var.enable_webhook_relay && var.restrict_dead_letter_sources ? 1 : 0
  queue_url = aws_sqs_queue.relay_delivery_dlq[0].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.relay_delivery[0].arn]
  })
}

# --- Scheduled invocations -------------------------------------------------------------------

resource "aws_sqs_queue" "schedules_dlq" {
  # EventBridge Scheduler puts an invocation here once its retries are spent, so a failed sweep
  # or pull is visible (alarmed) instead of lost.
  name                      = "${var.name_prefix}-schedules-dlq"
  message_retention_seconds = var.dead_letter_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = local.tags
}

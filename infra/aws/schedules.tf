# EventBridge Scheduler: the sweep (the export-loader over the whole export prefix, so a lost
# notification never means a lost file) and the daily api-puller run. Failed invocations are
# retried, then dead-lettered to the schedules' DLQ (alarmed).

resource "aws_scheduler_schedule" "sweep" {
  name                         = "${var.name_prefix}-export-sweep"
  description                  = "Sweeps ${local.export_uri} for exports not loaded yet."
  schedule_expression          = var.sweep_schedule
  schedule_expression_timezone = var.schedule_timezone

  flexible_time_window {
    mode = "OFF"
  }

  #checkov:skip=CKV_AWS_297:The schedule holds a bucket URI and a function ARN, nothing secret; the AWS owned key encrypts it.

  target {
    arn      = module.export_loader.arn
    role_arn = aws_iam_role.scheduler.arn
    # The export-loader's scheduled-sweep payload.
    input = jsonencode({ tapline = "sweep", uri = local.export_uri, window_days = var.sweep_window_days })

    retry_policy {
      maximum_retry_attempts = var.schedule_max_retry_attempts
    }

    dead_letter_config {
      arn = aws_sqs_queue.schedules_dlq.arn
    }
  }

  # The scheduler's role and the invoked function's role must allow the run before it starts
  # (the function, whose ARN is the target, is made after its role's policy).
  depends_on = [aws_iam_role_policy.scheduler]
}

resource "aws_scheduler_schedule" "api_puller" {
  count                        = var.enable_api_puller ? 1 : 0
  name                         = "${var.name_prefix}-api-pull"
  description                  = "Runs the CleverTap API pull."
  schedule_expression          = var.api_puller_schedule
  schedule_expression_timezone = var.schedule_timezone

  flexible_time_window {
    mode = "OFF"
  }

  #checkov:skip=CKV_AWS_297:The schedule holds a function ARN and a fixed payload, nothing secret; the AWS owned key encrypts it.

  target {
    arn      = module.api_puller[0].arn
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({ tapline = "pull" })

    retry_policy {
      maximum_retry_attempts = var.schedule_max_retry_attempts
    }

    dead_letter_config {
      arn = aws_sqs_queue.schedules_dlq.arn
    }
  }

  # The scheduler's role and the invoked function's role must allow the run before it starts
  # (the function, whose ARN is the target, is made after its role's policy).
  depends_on = [aws_iam_role_policy.scheduler]
}

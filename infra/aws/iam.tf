# The scheduler's role. Each function's role and policy come with it (modules/lambda_function),
# its statements in the function's file: each names exactly the bucket prefix, queue, secrets and
# log group it uses. No wildcard actions, no "*" resources.

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
      [module.export_loader.arn],
      var.enable_api_puller ? [module.api_puller[0].arn] : [],
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

# One Tapline Lambda function and what belongs to it alone: its role (Lambda of this account
# only) with one inline policy, its log group with retention, and its Errors alarm. The caller
# writes the policy's statements; the module adds the one on its own log group. Code is a
# cargo-lambda bootstrap.zip (provided.al2023, arm64). Triggers stay with the caller.

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    # Only Lambda acting for this account may take the role (confused-deputy guard).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [var.account_id]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = var.name
  description        = var.role_description
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  # The caller's statements, after the module's (a statement of Sid WriteOwnLogs would replace it).
  override_policy_documents = [var.policy_json]
}

resource "aws_iam_role_policy" "this" {
  name   = "tapline"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}

# Made before the function, so Lambda never creates an unmanaged group with infinite retention,
# and so the role can be limited to this group.
resource "aws_cloudwatch_log_group" "this" {
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags

  #checkov:skip=CKV_AWS_158:Logs carry no secrets or payload bodies at info level (STYLE.md); CloudWatch's own encryption is enough.
  #checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable (90 days by default); the warehouse ledger, not the logs, is the record of what was loaded.
}

resource "aws_lambda_function" "this" {
  function_name    = var.name
  description      = var.description
  role             = aws_iam_role.this.arn
  filename         = var.zip_path
  source_code_hash = filebase64sha256(var.zip_path)
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  timeout          = var.timeout_seconds
  memory_size      = var.memory_mb
  tags             = var.tags
  # -1: none reserved.
  reserved_concurrent_executions = coalesce(var.reserved_concurrency, -1)

  environment {
    variables = var.environment
  }

  tracing_config {
    mode = var.tracing_mode
  }

  lifecycle {
    precondition {
      condition     = alltrue([for check in var.preconditions : check.condition])
      error_message = join(" ", [for check in var.preconditions : check.error_message if !check.condition])
    }
  }

  # The log group first (above); the policy too, so the function can work from its first
  # invocation (a function URL is public as soon as it exists), and so every trigger that
  # references the function also waits for the policy (an SQS mapping is checked against it).
  depends_on = [aws_cloudwatch_log_group.this, aws_iam_role_policy.this]

  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile and signed zips from CI; cargo-lambda zips are built and deployed by the same operator.
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  count               = var.enable_alarms ? 1 : 0
  alarm_name          = "${var.name}-errors"
  alarm_description   = "${var.name} failed (an error or a timeout): see its log group."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = var.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
}

# export-loader: S3 notification → SQS → this function, with partial batch responses so only the
# failed objects come back (and, after export_queue_max_receive_count tries, go to the DLQ).

resource "aws_lambda_function" "export_loader" {
  function_name    = local.function_names.export_loader
  description      = "Loads CleverTap exports from ${local.export_uri} into the warehouse, exactly once."
  role             = aws_iam_role.function["export_loader"].arn
  filename         = var.export_loader_zip_path
  source_code_hash = filebase64sha256(var.export_loader_zip_path)
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  timeout          = var.export_loader_timeout_seconds
  memory_size      = var.export_loader_memory_mb
  tags             = local.tags
  # Its own share of the account's concurrency (-1: none reserved): a flood of the relay's
  # public URL cannot throttle loads.
  reserved_concurrent_executions = coalesce(var.export_loader_reserved_concurrency, -1)

  environment {
    variables = {
      TAPLINE_WAREHOUSE = var.warehouse_url
      # Intended contract: the function reads this secret at cold start and puts its value in as
      # the URL's password (README, Deploy).
      TAPLINE_WAREHOUSE_SECRET_ARN = local.warehouse_secret_arn
      TAPLINE_TIMEZONE             = var.timezone
      TAPLINE_MAX_REJECT_RATIO     = tostring(var.max_reject_ratio)
      TAPLINE_LOG                  = var.log_level
    }
  }

  tracing_config {
    mode = var.tracing_mode
  }

  lifecycle {
    precondition {
      # Fewer would throttle the SQS mapping's own invocations back into the queue (and the DLQ).
      condition     = var.export_loader_reserved_concurrency == null ? true : var.export_loader_reserved_concurrency >= var.export_loader_max_concurrency
      error_message = "export_loader_reserved_concurrency must be at least export_loader_max_concurrency (or null)."
    }
  }

  # The log group first, so Lambda never makes its own without retention. The role's policy may
  # come later: nothing invokes the function before its triggers, which wait for the policy.
  depends_on = [aws_cloudwatch_log_group.function]

  #checkov:skip=CKV_AWS_116:Failures are dead-lettered where they arise: the export queue's DLQ for notifications, the schedules' DLQ for sweeps.
  #checkov:skip=CKV_AWS_117:The warehouse is reached over TLS (sslmode=verify-full); a VPC attachment is a fork's choice when the database is private.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (only a secret's ARN); the default Lambda key encrypts it at rest.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile and signed zips from CI; cargo-lambda zips are built and deployed by the same operator.
}

resource "aws_lambda_event_source_mapping" "export_loader" {
  event_source_arn = aws_sqs_queue.export_events.arn
  function_name    = aws_lambda_function.export_loader.arn
  batch_size       = var.export_loader_batch_size
  # The loader answers with the messages whose object failed; the rest are deleted.
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.export_loader_max_concurrency
  }

  # Lambda checks the role may read the queue when the mapping is created.
  depends_on = [aws_iam_role_policy.function]
}

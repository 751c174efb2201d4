# export-loader: S3 notification → SQS → this function, with partial batch responses so only the
# failed objects come back (and, after export_queue_max_receive_count tries, go to the DLQ).

module "export_loader" {
  source = "./modules/lambda_function"

  name             = local.function_names.export_loader
  description      = "Loads CleverTap exports from ${local.export_uri} into the warehouse, exactly once."
  role_description = "Tapline export-loader Lambda."
  account_id       = local.account_id
  zip_path         = var.export_loader_zip_path
  timeout_seconds  = var.export_loader_timeout_seconds
  memory_mb        = var.export_loader_memory_mb
  # Its own share of the account's concurrency: a flood of the relay's public URL cannot
  # throttle loads.
  reserved_concurrency = var.export_loader_reserved_concurrency

  environment = merge(
    {
      TAPLINE_WAREHOUSE = var.warehouse_url
      # Intended contract: the function reads this secret at cold start and puts its value in as
      # the URL's password (README, Deploy).
      TAPLINE_WAREHOUSE_SECRET_ARN = local.warehouse_secret_arn
      TAPLINE_TIMEZONE             = var.timezone
      TAPLINE_MAX_REJECT_RATIO     = tostring(var.max_reject_ratio)
      TAPLINE_LOG                  = var.log_level
    },
    # Pinned column types, only when given: unset keeps the warehouse's stored pins.
    var.column_types == "" ? {} : { TAPLINE_COLUMN_TYPES = var.column_types },
  )
  policy_json = data.aws_iam_policy_document.export_loader.json

  preconditions = [{
    # Fewer would throttle the SQS mapping's own invocations back into the queue (and the DLQ).
    condition     = var.export_loader_reserved_concurrency == null ? true : var.export_loader_reserved_concurrency >= var.export_loader_max_concurrency
    error_message = "export_loader_reserved_concurrency must be at least export_loader_max_concurrency (or null)."
  }]

  tracing_mode       = var.tracing_mode
  log_retention_days = var.log_retention_days
  enable_alarms      = var.enable_alarms
  alarm_actions      = var.alarm_actions
  tags               = local.tags

  #checkov:skip=CKV_AWS_116:Failures are dead-lettered where they arise: the export queue's DLQ for notifications, the schedules' DLQ for sweeps.
  #checkov:skip=CKV_AWS_117:The warehouse is reached over TLS (sslmode=verify-full); a VPC attachment is a fork's choice when the database is private.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (only a secret's ARN); the default Lambda key encrypts it at rest.
}

# Read export objects, list the prefix (sweep), consume the export queue, read the warehouse
# password; the module adds the function's own log group.
data "aws_iam_policy_document" "export_loader" {
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

resource "aws_lambda_event_source_mapping" "export_loader" {
  event_source_arn = aws_sqs_queue.export_events.arn
  function_name    = module.export_loader.arn
  batch_size       = var.export_loader_batch_size
  # The loader answers with the messages whose object failed; the rest are deleted.
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.export_loader_max_concurrency
  }

  # Lambda checks the role may read the queue when the mapping is created: the function (its
  # ARN, above) is made after its role's policy.
}

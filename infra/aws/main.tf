# Tapline on AWS: CleverTap exports land in S3, S3 announces them on SQS, the export-loader Lambda
# loads them into the warehouse exactly once; EventBridge Scheduler runs a sweep (a lost
# notification never means a lost file) and the API puller; the webhook relay answers CleverTap on
# a function URL and delivers through its own SQS queue. One file per job (export_loader.tf,
# api_puller.tf, webhook_relay.tf), each function from modules/lambda_function (role, policy, log
# group, errors alarm); topic files: export_bucket.tf, queues.tf, secrets.tf, iam.tf (scheduler),
# relay_payloads.tf, schedules.tf, alarms.tf, moved.tf; hardened buckets from modules/secure_bucket.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  export_bucket_name = var.create_export_bucket ? module.export_bucket[0].id : var.export_bucket_name
  export_bucket_arn  = "arn:${local.partition}:s3:::${local.export_bucket_name}"
  # Objects CleverTap writes and the loader reads: everything under the prefix ("" = whole bucket).
  export_objects_arn = "${local.export_bucket_arn}/${var.export_prefix}*"
  export_uri         = "s3://${local.export_bucket_name}/${var.export_prefix}"

  function_names = {
    export_loader        = "${var.name_prefix}-export-loader"
    api_puller           = "${var.name_prefix}-api-puller"
    webhook_relay        = "${var.name_prefix}-webhook-relay"
    webhook_relay_worker = "${var.name_prefix}-webhook-relay-worker"
  }
  # Functions this deployment runs, by key of function_names.
  enabled_functions = toset(concat(
    ["export_loader"],
    var.enable_api_puller ? ["api_puller"] : [],
    var.enable_webhook_relay ? ["webhook_relay", "webhook_relay_worker"] : [],
  ))

  # The warehouse secret: one the module made, or one the caller owns.
  warehouse_secret_arn = var.warehouse_secret_arn != null ? var.warehouse_secret_arn : aws_secretsmanager_secret.warehouse[0].arn

  tags = merge({ "tapline:deployment" = var.name_prefix }, var.tags)
}

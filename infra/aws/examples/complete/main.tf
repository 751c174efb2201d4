# A complete Tapline deployment on AWS: every function, trigger, queue, schedule, secret and alarm.
#   make package   # the zips, from the repository root
#   cd infra/aws/examples/complete && terraform init && terraform apply -var-file=my.tfvars
# The offline check (tests/scripts/infra-check.sh) applies this root to a moto server by setting
# aws_endpoint; left null it talks to AWS with the usual credential chain.

provider "aws" {
  region = var.region

  # Only for a local AWS emulator (moto): every service at one endpoint, no real account behind it.
  skip_credentials_validation = var.aws_endpoint != null
  skip_requesting_account_id  = var.aws_endpoint != null
  skip_metadata_api_check     = var.aws_endpoint != null
  skip_region_validation      = var.aws_endpoint != null
  s3_use_path_style           = var.aws_endpoint != null

  dynamic "endpoints" {
    for_each = var.aws_endpoint != null ? [var.aws_endpoint] : []
    content {
      cloudwatch     = endpoints.value
      iam            = endpoints.value
      lambda         = endpoints.value
      logs           = endpoints.value
      s3             = endpoints.value
      scheduler      = endpoints.value
      secretsmanager = endpoints.value
      sqs            = endpoints.value
      sts            = endpoints.value
    }
  }

  default_tags {
    tags = { "tapline:example" = "complete" }
  }
}

locals {
  # cargo lambda build writes <dir>/<function>/bootstrap.zip; by default the repository's target/.
  lambda_zip_dir = coalesce(var.lambda_zip_dir, "${path.root}/../../../../target/lambda-arm64")
}

module "tapline" {
  source = "../.."

  name_prefix          = var.name_prefix
  export_bucket_name   = var.export_bucket_name
  create_export_bucket = var.create_export_bucket
  export_prefix        = var.export_prefix
  export_suffixes      = var.export_suffixes
  clevertap_region     = var.clevertap_region
  clevertap_account_id = var.clevertap_account_id
  timezone             = var.timezone
  warehouse_url        = var.warehouse_url

  export_loader_zip_path        = "${local.lambda_zip_dir}/export-loader/bootstrap.zip"
  api_puller_zip_path           = "${local.lambda_zip_dir}/api-puller/bootstrap.zip"
  webhook_relay_zip_path        = "${local.lambda_zip_dir}/webhook-relay/bootstrap.zip"
  webhook_relay_worker_zip_path = "${local.lambda_zip_dir}/webhook-relay-worker/bootstrap.zip"
  enable_api_puller             = var.enable_api_puller
  enable_webhook_relay          = var.enable_webhook_relay

  api_puller_events                         = var.api_puller_events
  api_puller_jobs                           = var.api_puller_jobs
  api_puller_report_uri                     = var.api_puller_report_uri
  api_puller_alert_rules                    = var.api_puller_alert_rules
  api_puller_alerts_relay_route             = var.api_puller_alerts_relay_route
  api_puller_alerts_relay_token_secret_name = var.api_puller_alerts_relay_token_secret_name

  webhook_relay_config                   = var.webhook_relay_config
  webhook_relay_route_secret_names       = var.webhook_relay_route_secret_names
  webhook_relay_destination_secret_names = var.webhook_relay_destination_secret_names
  webhook_relay_retry_schedule           = var.webhook_relay_retry_schedule
  webhook_relay_reserved_concurrency     = var.webhook_relay_reserved_concurrency
  webhook_relay_refused_alarm_threshold  = var.webhook_relay_refused_alarm_threshold
  webhook_relay_worker_timeout_seconds   = var.webhook_relay_worker_timeout_seconds

  # CleverTap's export status → the loader's sweep of that export → the puller's reconcile of
  # its days (terraform.tfvars.example shows the route).
  webhook_relay_invokes_loader_and_puller = var.webhook_relay_invokes_loader_and_puller
  export_loader_timeout_seconds           = var.export_loader_timeout_seconds

  sweep_window_days = var.sweep_window_days

  export_loader_reserved_concurrency = var.export_loader_reserved_concurrency
  api_puller_reserved_concurrency    = var.api_puller_reserved_concurrency

  restrict_dead_letter_sources = var.restrict_dead_letter_sources
  enable_alarms                = var.enable_alarms
  alarm_actions                = var.alarm_actions
}

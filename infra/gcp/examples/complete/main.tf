# A complete Tapline deployment on Google Cloud.
#   (build and push the images: see the README's Deploy section)
#   cd infra/gcp/examples/complete && terraform init && terraform apply -var-file=my.tfvars

provider "google" {
  project = var.project_id
  region  = var.region
}

module "tapline" {
  source = "../.."

  project_id           = var.project_id
  region               = var.region
  export_bucket_name   = var.export_bucket_name
  export_prefix        = var.export_prefix
  bigquery_location    = var.bigquery_location
  timezone             = var.timezone
  clevertap_account_id = var.clevertap_account_id
  clevertap_region     = var.clevertap_region
  api_puller_events    = var.api_puller_events

  api_puller_jobs                           = var.api_puller_jobs
  api_puller_report_uri                     = var.api_puller_report_uri
  api_puller_alert_rules                    = var.api_puller_alert_rules
  api_puller_alerts_relay_route             = var.api_puller_alerts_relay_route
  api_puller_alerts_relay_token_secret_name = var.api_puller_alerts_relay_token_secret_name

  export_loader_image = var.export_loader_image
  api_puller_image    = var.api_puller_image
  webhook_relay_image = var.webhook_relay_image

  webhook_relay_config                   = var.webhook_relay_config
  webhook_relay_route_secret_names       = var.webhook_relay_route_secret_names
  webhook_relay_destination_secret_names = var.webhook_relay_destination_secret_names
  webhook_relay_retry_schedule           = var.webhook_relay_retry_schedule
}

# Cloud Scheduler with OIDC tokens: the sweep (a lost object event never means a lost file) and
# the daily API pull. Both post the same JSON payloads as on AWS.

resource "google_cloud_scheduler_job" "sweep" {
  project          = var.project_id
  region           = var.region
  name             = "${var.name_prefix}-export-sweep"
  description      = "Sweeps ${local.export_uri} for exports not loaded yet."
  schedule         = var.sweep_schedule
  time_zone        = var.schedule_timezone
  attempt_deadline = "900s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "60s"
  }

  http_target {
    http_method = "POST"
    # The loader takes CloudEvents on `/` and sweeps on `/sweep`.
    uri     = "${module.export_loader.uri}/sweep"
    headers = { "Content-Type" = "application/json" }
    body    = base64encode(jsonencode({ tapline = "sweep", uri = local.export_uri, window_days = var.sweep_window_days }))

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = module.export_loader.uri
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_cloud_scheduler_job" "api_puller" {
  count            = local.enable_api_puller ? 1 : 0
  project          = var.project_id
  region           = var.region
  name             = "${var.name_prefix}-api-pull"
  description      = "Runs the CleverTap API pull."
  schedule         = var.api_puller_schedule
  time_zone        = var.schedule_timezone
  attempt_deadline = "1800s"

  retry_config {
    retry_count          = 2
    min_backoff_duration = "300s"
  }

  http_target {
    http_method = "POST"
    uri         = "${module.api_puller[0].uri}/"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode({ tapline = "pull" }))

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = module.api_puller[0].uri
    }
  }

  depends_on = [google_project_service.apis]
}

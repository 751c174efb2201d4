# api-puller on Cloud Run, posted to daily by Cloud Scheduler (schedules.tf).

locals {
  # Breaches of the alerts job go to a relay route; the api-puller reads that route's token from
  # the relay's own secret (secrets.tf grants it that one secret).
  alerts_via_relay = local.enable_api_puller && local.enable_webhook_relay && var.api_puller_alerts_relay_route != null
  alerts_relay_env = local.alerts_via_relay ? {
    TAPLINE_ALERTS_RELAY_URL              = "${google_cloud_run_v2_service.webhook_relay[0].uri}/hooks/${var.api_puller_alerts_relay_route}"
    TAPLINE_ALERTS_RELAY_HEADER           = var.api_puller_alerts_relay_header
    TAPLINE_ALERTS_RELAY_TOKEN_SECRET_ARN = lookup(local.relay_route_secret_versions, coalesce(var.api_puller_alerts_relay_token_secret_name, "-"), "")
  } : {}
  alert_rules_env = var.api_puller_alert_rules != "" ? { TAPLINE_ALERT_RULES = var.api_puller_alert_rules } : {}
}

resource "google_service_account" "api_puller" {
  count        = local.enable_api_puller ? 1 : 0
  project      = var.project_id
  account_id   = "${var.name_prefix}-api-puller"
  display_name = "Tapline api-puller (CleverTap API to BigQuery)"
}

resource "google_cloud_run_v2_service" "api_puller" {
  count               = local.enable_api_puller ? 1 : 0
  project             = var.project_id
  name                = "${var.name_prefix}-api-puller"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  labels              = local.labels
  deletion_protection = false

  template {
    service_account                  = google_service_account.api_puller[0].email
    max_instance_request_concurrency = 1
    # A pull pages through CleverTap cursors; Cloud Scheduler waits up to 30 minutes.
    timeout = "1800s"

    scaling {
      # One pull at a time: CleverTap limits concurrent requests per account.
      max_instance_count = 1
    }

    containers {
      image = var.api_puller_image

      resources {
        limits = { cpu = "1", memory = "512Mi" }
      }

      env {
        name  = "CLEVERTAP_ACCOUNT_ID"
        value = var.clevertap_account_id
      }
      env {
        name  = "CLEVERTAP_REGION"
        value = var.clevertap_region
      }
      env {
        # Same variable name as on AWS; here a Secret Manager version name.
        name  = "CLEVERTAP_PASSCODE_SECRET_ARN"
        value = "${google_secret_manager_secret.secrets["clevertap-passcode"].id}/versions/latest"
      }
      env {
        name  = "TAPLINE_WAREHOUSE"
        value = local.warehouse_url
      }
      env {
        name  = "TAPLINE_TIMEZONE"
        value = var.timezone
      }
      env {
        name  = "TAPLINE_PULL_EVENTS"
        value = join(",", var.api_puller_events)
      }
      env {
        name  = "TAPLINE_PULL_JOBS"
        value = join(",", var.api_puller_jobs)
      }
      env {
        name  = "TAPLINE_PULL_LOOKBACK_DAYS"
        value = tostring(var.api_puller_lookback_days)
      }
      env {
        name  = "TAPLINE_LOG"
        value = var.log_level
      }
      # The HTTP server's timeouts and connection cap (http_server_limits), when set.
      dynamic "env" {
        for_each = local.http_env
        content {
          name  = env.key
          value = env.value
        }
      }
      # The alerts job: its rules, and the relay route breaches are posted to.
      dynamic "env" {
        for_each = merge(local.alert_rules_env, local.alerts_relay_env)
        content {
          name  = env.key
          value = env.value
        }
      }
      # A PostgreSQL warehouse's password, as for the export loader.
      dynamic "env" {
        for_each = var.warehouse_password_secret ? [1] : []
        content {
          name = "TAPLINE_WAREHOUSE_PASSWORD"
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.secrets["warehouse-password"].secret_id
              version = "latest"
            }
          }
        }
      }
    }
  }

  # The passcode is read at start: its accessor binding must exist before a revision starts.
  depends_on = [google_project_service.apis, google_secret_manager_secret_iam_member.accessors]

  lifecycle {
    precondition {
      condition     = !contains(var.api_puller_jobs, "alerts") || var.api_puller_alert_rules != ""
      error_message = "api_puller_jobs includes alerts: set api_puller_alert_rules."
    }
    precondition {
      condition = var.api_puller_alerts_relay_route == null || (
        local.enable_webhook_relay && contains(var.webhook_relay_route_secret_names, coalesce(var.api_puller_alerts_relay_token_secret_name, "-"))
      )
      error_message = "api_puller_alerts_relay_route needs the webhook relay and api_puller_alerts_relay_token_secret_name, one of webhook_relay_route_secret_names."
    }
  }
}

resource "google_cloud_run_v2_service_iam_member" "api_puller_scheduler" {
  count    = local.enable_api_puller ? 1 : 0
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.api_puller[0].name
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

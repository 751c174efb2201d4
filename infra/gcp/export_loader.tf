# export-loader on Cloud Run: Eventarc delivers each finalized object in the export bucket as a
# CloudEvent; Cloud Scheduler posts the sweep (schedules.tf). Internal ingress: only Google's event
# and scheduling services (and the VPC) reach it, and only with an identity holding run.invoker.

resource "google_cloud_run_v2_service" "export_loader" {
  project  = var.project_id
  name     = "${var.name_prefix}-export-loader"
  location = var.region
  ingress  = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  labels   = local.labels
  # Removing the loader must not need a two-step apply; its state is in BigQuery.
  deletion_protection = false

  template {
    service_account = google_service_account.export_loader.email
    # One object per request: the loader streams it into BigQuery within the request.
    max_instance_request_concurrency = 1
    timeout                          = "900s"

    scaling {
      max_instance_count = var.export_loader_max_instances
    }

    containers {
      image = var.export_loader_image

      resources {
        limits = { cpu = "1", memory = "512Mi" }
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
        name  = "TAPLINE_MAX_REJECT_RATIO"
        value = tostring(var.max_reject_ratio)
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
      # A PostgreSQL warehouse's password: Cloud Run reads the secret and sets the variable; the
      # URL in TAPLINE_WAREHOUSE carries none.
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

  # The accessor binding must exist before a revision that reads the secret starts.
  depends_on = [google_project_service.apis, google_secret_manager_secret_iam_member.accessors]
}

resource "google_cloud_run_v2_service_iam_member" "export_loader_invokers" {
  # Eventarc (object events) and Cloud Scheduler (sweeps) only.
  for_each = {
    eventarc  = google_service_account.eventarc.member
    scheduler = google_service_account.scheduler.member
  }
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.export_loader.name
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_eventarc_trigger" "export_finalized" {
  project  = var.project_id
  name     = "${var.name_prefix}-export-finalized"
  location = var.region
  labels   = local.labels

  # Cloud Storage events filter by bucket only; the loader skips objects outside export_prefix
  # and files that are not CleverTap exports.
  matching_criteria {
    attribute = "type"
    value     = "google.cloud.storage.object.v1.finalized"
  }
  matching_criteria {
    attribute = "bucket"
    value     = google_storage_bucket.export.name
  }

  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.export_loader.name
      region  = var.region
      path    = "/"
    }
  }

  service_account = google_service_account.eventarc.email

  depends_on = [
    google_project_iam_member.gcs_pubsub_publisher,
    google_project_iam_member.eventarc_receiver,
    google_cloud_run_v2_service_iam_member.export_loader_invokers,
  ]
}

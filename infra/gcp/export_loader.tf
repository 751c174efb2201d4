# export-loader on Cloud Run: Eventarc delivers each finalized object in the export bucket as a
# CloudEvent; Cloud Scheduler posts the sweep (schedules.tf). Internal ingress: only Google's event
# and scheduling services (and the VPC) reach it, and only with an identity holding run.invoker.

module "export_loader" {
  source = "./modules/cloud_run_service"

  project_id                   = var.project_id
  region                       = var.region
  name                         = "${var.name_prefix}-export-loader"
  service_account_id           = "${var.name_prefix}-export-loader"
  service_account_display_name = "Tapline export-loader (reads exports, writes BigQuery)"
  ingress                      = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  labels                       = local.labels

  image  = var.export_loader_image
  memory = "512Mi"
  # One object per request: the loader streams it into BigQuery within the request.
  max_instance_request_concurrency = 1
  timeout                          = "900s"
  max_instance_count               = var.export_loader_max_instances

  env = concat(
    [
      { name = "TAPLINE_WAREHOUSE", value = local.warehouse_url },
      { name = "TAPLINE_TIMEZONE", value = var.timezone },
      { name = "TAPLINE_MAX_REJECT_RATIO", value = tostring(var.max_reject_ratio) },
      { name = "TAPLINE_LOG", value = var.log_level },
    ],
    # The HTTP server's timeouts and connection cap (http_server_limits), when set.
    [for name, value in local.http_env : { name = name, value = value }],
    # Pinned column types, only when given: unset keeps the warehouse's stored pins.
    var.column_types == "" ? [] : [{ name = "TAPLINE_COLUMN_TYPES", value = var.column_types }],
    # A PostgreSQL warehouse's password: Cloud Run reads the secret and sets the variable; the
    # URL in TAPLINE_WAREHOUSE carries none.
    var.warehouse_password_secret ? [{ name = "TAPLINE_WAREHOUSE_PASSWORD", secret = google_secret_manager_secret.secrets["warehouse-password"].secret_id }] : [],
  )

  # Eventarc (object events) and Cloud Scheduler (sweeps) only; and the relay worker (one
  # export request's sweep) in the export-status destination's cloud mode.
  invokers = merge({
    eventarc  = google_service_account.eventarc.member
    scheduler = google_service_account.scheduler.member
  }, local.relay_job_invoker)

  # The accessor binding must exist before a revision that reads the secret starts.
  start_after = [google_project_service.apis, google_secret_manager_secret_iam_member.accessors]
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
      service = module.export_loader.name
      region  = var.region
      path    = "/"
    }
  }

  service_account = google_service_account.eventarc.email

  depends_on = [
    google_project_iam_member.gcs_pubsub_publisher,
    google_project_iam_member.eventarc_receiver,
    # Eventarc's run.invoker on the service included.
    module.export_loader,
  ]
}

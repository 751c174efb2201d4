# api-puller on Cloud Run, posted to daily by Cloud Scheduler (schedules.tf).

locals {
  # Breaches of the alerts job go to a relay route; the api-puller reads that route's token from
  # the relay's own secret (secrets.tf grants it that one secret).
  alerts_via_relay = local.enable_api_puller && local.enable_webhook_relay && var.api_puller_alerts_relay_route != null
  alerts_relay_env = local.alerts_via_relay ? {
    TAPLINE_ALERTS_RELAY_URL              = "${module.webhook_relay[0].uri}/hooks/${var.api_puller_alerts_relay_route}"
    TAPLINE_ALERTS_RELAY_HEADER           = var.api_puller_alerts_relay_header
    TAPLINE_ALERTS_RELAY_TOKEN_SECRET_ARN = lookup(local.relay_route_secret_versions, coalesce(var.api_puller_alerts_relay_token_secret_name, "-"), "")
  } : {}
  alert_rules_env = var.api_puller_alert_rules != "" ? { TAPLINE_ALERT_RULES = var.api_puller_alert_rules } : {}
  # The report job: the completeness page put at TAPLINE_REPORT_URI after each run; setting the
  # URI adds the job. Its bucket and name are the one object the api-puller may write.
  report_object   = var.api_puller_report_uri == "" ? null : regex("^gs://([^/]+)/(.+)$", var.api_puller_report_uri)
  report_env      = var.api_puller_report_uri == "" ? {} : { TAPLINE_REPORT_URI = var.api_puller_report_uri }
  report_job      = var.api_puller_report_uri != "" && !contains(var.api_puller_jobs, "report") ? ["report"] : []
  api_puller_jobs = concat(var.api_puller_jobs, local.report_job)
  # With the relay deployed, the page also lists the relay's dead letters
  # (TAPLINE_REPORT_RELAY_QUEUE): pulled from their subscription and released at once, never
  # acknowledged.
  report_relay_queue = local.enable_api_puller && local.enable_webhook_relay && var.api_puller_report_uri != ""
  report_relay_env   = local.report_relay_queue ? { TAPLINE_REPORT_RELAY_QUEUE = google_pubsub_subscription.relay_dead_letters[0].id } : {}
}

module "api_puller" {
  source = "./modules/cloud_run_service"
  count  = local.enable_api_puller ? 1 : 0

  project_id                   = var.project_id
  region                       = var.region
  name                         = "${var.name_prefix}-api-puller"
  service_account_id           = "${var.name_prefix}-api-puller"
  service_account_display_name = "Tapline api-puller (CleverTap API to BigQuery)"
  ingress                      = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  labels                       = local.labels

  image                            = var.api_puller_image
  memory                           = "512Mi"
  max_instance_request_concurrency = 1
  # A pull pages through CleverTap cursors; Cloud Scheduler waits up to 30 minutes.
  timeout = "1800s"
  # One pull at a time: CleverTap limits concurrent requests per account.
  max_instance_count = 1

  env = concat(
    [
      { name = "CLEVERTAP_ACCOUNT_ID", value = var.clevertap_account_id },
      { name = "CLEVERTAP_REGION", value = var.clevertap_region },
      # Same variable name as on AWS; here a Secret Manager version name.
      { name = "CLEVERTAP_PASSCODE_SECRET_ARN", value = "${google_secret_manager_secret.secrets["clevertap-passcode"].id}/versions/latest" },
      { name = "TAPLINE_WAREHOUSE", value = local.warehouse_url },
      { name = "TAPLINE_TIMEZONE", value = var.timezone },
      { name = "TAPLINE_PULL_EVENTS", value = join(",", var.api_puller_events) },
      { name = "TAPLINE_PULL_JOBS", value = join(",", local.api_puller_jobs) },
      { name = "TAPLINE_PULL_LOOKBACK_DAYS", value = tostring(var.api_puller_lookback_days) },
      { name = "TAPLINE_LOG", value = var.log_level },
    ],
    # The HTTP server's timeouts and connection cap (http_server_limits), when set.
    [for name, value in local.http_env : { name = name, value = value }],
    # The alerts job: its rules, and the relay route breaches are posted to.
    [for name, value in merge(local.alert_rules_env, local.alerts_relay_env) : { name = name, value = value }],
    # The report job's object.
    [for name, value in merge(local.report_env, local.report_relay_env) : { name = name, value = value }],
    # Pinned column types, only when given: unset keeps the warehouse's stored pins.
    var.column_types == "" ? [] : [{ name = "TAPLINE_COLUMN_TYPES", value = var.column_types }],
    # A PostgreSQL warehouse's password, as for the export loader.
    var.warehouse_password_secret ? [{ name = "TAPLINE_WAREHOUSE_PASSWORD", secret = google_secret_manager_secret.secrets["warehouse-password"].secret_id }] : [],
  )

  # Cloud Scheduler; and the relay worker (the reconcile job) in the export-status
  # destination's cloud mode.
  invokers = merge({ scheduler = google_service_account.scheduler.member }, local.relay_job_invoker)

  preconditions = [
    {
      condition     = !contains(var.api_puller_jobs, "alerts") || var.api_puller_alert_rules != ""
      error_message = "api_puller_jobs includes alerts: set api_puller_alert_rules."
    },
    {
      condition     = !contains(var.api_puller_jobs, "report") || var.api_puller_report_uri != ""
      error_message = "api_puller_jobs includes report: set api_puller_report_uri."
    },
    {
      condition = var.api_puller_alerts_relay_route == null || (
        local.enable_webhook_relay && contains(var.webhook_relay_route_secret_names, coalesce(var.api_puller_alerts_relay_token_secret_name, "-"))
      )
      error_message = "api_puller_alerts_relay_route needs the webhook relay and api_puller_alerts_relay_token_secret_name, one of webhook_relay_route_secret_names."
    },
  ]

  # The passcode is read at start: its accessor binding must exist before a revision starts.
  start_after = [google_project_service.apis, google_secret_manager_secret_iam_member.accessors]
}

resource "google_storage_bucket_iam_member" "api_puller_report_writer" {
  # Create and replace (replacing needs delete) the report object only: the condition names it,
  # so the bucket needs uniform bucket-level access.
  count  = local.enable_api_puller && local.report_object != null ? 1 : 0
  bucket = local.report_object[0]
  role   = "roles/storage.objectUser"
  member = module.api_puller[0].service_account_member

  condition {
    title       = "tapline-report-object"
    description = "Only the completeness page the api-puller's report job writes."
    expression  = "resource.name == \"projects/_/buckets/${local.report_object[0]}/objects/${local.report_object[1]}\""
  }
}

resource "google_pubsub_subscription_iam_member" "api_puller_relay_dead_letters" {
  # The report lists the relay's dead letters: pull, then modifyAckDeadline 0 (release). The
  # subscriber role also allows acknowledging; the job never does (see pubsub_replay.rs).
  count        = local.report_relay_queue ? 1 : 0
  project      = var.project_id
  subscription = google_pubsub_subscription.relay_dead_letters[0].name
  role         = "roles/pubsub.subscriber"
  member       = module.api_puller[0].service_account_member
}

# Tapline on Google Cloud: CleverTap exports land in GCS, Eventarc announces each finalized object
# to the export-loader on Cloud Run, which loads it into BigQuery exactly once; Cloud Scheduler
# (OIDC) runs the sweep and the api-puller; the webhook relay answers CleverTap on a public Cloud
# Run service and delivers through Pub/Sub to an internal worker. One file per job
# (export_loader.tf, api_puller.tf, webhook_relay.tf), each service from modules/cloud_run_service
# (service account, service, invokers); topic files: storage.tf, schedules.tf, secrets.tf,
# bigquery.tf, moved.tf; derived.tf holds what follows from the inputs alone.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  export_uri = "gs://${google_storage_bucket.export.name}/${var.export_prefix}"
  # The typed views' dataset (bigquery.tf), named in the loaders' URL.
  bi_dataset_id = coalesce(var.bigquery_bi_dataset_id, "${var.bigquery_dataset_id}_bi")
  warehouse_url = coalesce(var.warehouse_url, "bigquery://${var.project_id}/${google_bigquery_dataset.warehouse.dataset_id}?bi_dataset=${google_bigquery_dataset.bi.dataset_id}")
  # The relay's warehouse destinations: the deployer's warehouse_url, else a dataset of their own
  # beside the module's warehouse (bigquery.tf says why).
  webhooks_dataset_id = coalesce(var.webhook_relay_bigquery_dataset_id, "${var.bigquery_dataset_id}_webhooks")
  relay_warehouse_url = var.warehouse_url != null ? var.warehouse_url : "bigquery://${var.project_id}/${local.webhooks_dataset_id}"

  enable_api_puller    = var.api_puller_image != ""
  enable_webhook_relay = var.webhook_relay_image != ""
  relay_worker_image   = var.webhook_relay_worker_image != "" ? var.webhook_relay_worker_image : var.webhook_relay_image

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  labels = merge({ "tapline-deployment" = var.name_prefix }, var.labels)

  apis = [
    "bigquery.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ]
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? toset(local.apis) : toset([])
  project  = var.project_id
  service  = each.key
  # Other workloads in the project may use these APIs: never switch them off on destroy.
  disable_on_destroy = false
}

# --- The callers' service accounts (Eventarc, Scheduler); each service has its own -------------

resource "google_service_account" "eventarc" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-eventarc"
  display_name = "Tapline Eventarc trigger (invokes the export-loader)"
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "Tapline Cloud Scheduler (invokes the sweep and the api-puller)"
}

resource "google_project_iam_member" "eventarc_receiver" {
  # Eventarc requires the trigger's identity to hold eventReceiver on the project.
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.eventarc.member
}

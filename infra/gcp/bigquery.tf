# The warehouse: one BigQuery dataset; the services write tables in it and run load jobs.

resource "google_bigquery_dataset" "warehouse" {
  project     = var.project_id
  dataset_id  = var.bigquery_dataset_id
  location    = var.bigquery_location
  description = "CleverTap data loaded by Tapline: one table per event, the ledger, rejects."
  labels      = local.labels
  # Dropping the dataset drops the loaded history: keep its tables if the deployment goes.
  delete_contents_on_destroy = false

  depends_on = [google_project_service.apis]

  #checkov:skip=CKV_GCP_81:Google-managed encryption; a CMEK needs a key ring and key policy the deployer owns.
}

# The typed views for BI tools (one per event table and all_events, each column cast to its
# inferred type), which the loaders rebuild after each load. A dataset of their own, beside the
# warehouse and in its location (a view may only read a dataset of its location), so a BI user
# can be given this dataset alone: its views are then authorised on the warehouse (README, BI).
resource "google_bigquery_dataset" "bi" {
  project     = var.project_id
  dataset_id  = local.bi_dataset_id
  location    = var.bigquery_location
  description = "Typed views over the CleverTap tables Tapline loads: numbers as numbers, times as times."
  labels      = local.labels
  # Views only: nothing is lost with them (the loaders rebuild them), but keep the module's rule.
  delete_contents_on_destroy = false

  depends_on = [google_project_service.apis]

  #checkov:skip=CKV_GCP_81:Google-managed encryption, as the warehouse's; a CMEK needs a key ring and key policy the deployer owns.
}

locals {
  # Identities that write the warehouse's tables: the loaders, over the whole dataset.
  warehouse_writers = merge(
    { export_loader = module.export_loader.service_account_member },
    local.enable_api_puller ? { api_puller = module.api_puller[0].service_account_member } : {},
  )
  # Identities that run BigQuery jobs: the writers, and the relay's worker when it writes
  # webhook_events.
  warehouse_job_users = merge(
    local.warehouse_writers,
    local.relay_writes_module_bigquery ? { webhook_relay_worker = module.webhook_relay_worker[0].service_account_member } : {},
  )
}

resource "google_bigquery_dataset_iam_member" "warehouse_writers" {
  for_each   = local.warehouse_writers
  project    = var.project_id
  dataset_id = google_bigquery_dataset.warehouse.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = each.value
}

resource "google_bigquery_dataset_iam_member" "bi_writers" {
  # The loaders create and replace the typed views there after each load.
  for_each   = local.warehouse_writers
  project    = var.project_id
  dataset_id = google_bigquery_dataset.bi.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = each.value
}

resource "google_project_iam_member" "warehouse_job_users" {
  # Load and query jobs are created at project level (no dataset-level role can grant them);
  # jobUser lets them run jobs, the data access stays limited to the grants above and below.
  for_each = local.warehouse_job_users
  project  = var.project_id
  role     = "roles/bigquery.jobUser"
  member   = each.value
}

# The relay's warehouse destinations write one table, webhook_events (warehouse_destination.rs:
# one row per delivery, keyed by its id), through the same BigQuery adapter as the loaders: it
# reads its dataset, keeps its ledger tables there and stages rows in a table of that dataset, so
# it needs dataEditor on a dataset. Giving it the loaders' dataset would let a compromised worker
# rewrite every event table; it gets a dataset of its own instead, beside the warehouse.
resource "google_bigquery_dataset" "webhooks" {
  count       = local.relay_writes_module_bigquery ? 1 : 0
  project     = var.project_id
  dataset_id  = local.webhooks_dataset_id
  location    = var.bigquery_location
  description = "Webhooks delivered by Tapline's relay (webhook_events: one row per delivery)."
  labels      = local.labels
  # Dropping the dataset drops the delivered webhooks: keep its tables if the deployment goes.
  delete_contents_on_destroy = false

  depends_on = [google_project_service.apis]

  #checkov:skip=CKV_GCP_81:Google-managed encryption, as the warehouse's; a CMEK needs a key ring and key policy the deployer owns.
}

resource "google_bigquery_dataset_iam_member" "webhook_relay_worker" {
  # The worker writes its own dataset and nothing of the loaders'.
  count      = local.relay_writes_module_bigquery ? 1 : 0
  project    = var.project_id
  dataset_id = google_bigquery_dataset.webhooks[0].dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = module.webhook_relay_worker[0].service_account_member
}

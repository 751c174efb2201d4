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

locals {
  # Identities that write the warehouse.
  warehouse_writers = merge(
    { export_loader = google_service_account.export_loader.member },
    local.enable_api_puller ? { api_puller = google_service_account.api_puller[0].member } : {},
    local.enable_webhook_relay ? { webhook_relay_worker = google_service_account.webhook_relay_worker[0].member } : {},
  )
}

resource "google_bigquery_dataset_iam_member" "warehouse_writers" {
  for_each   = local.warehouse_writers
  project    = var.project_id
  dataset_id = google_bigquery_dataset.warehouse.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = each.value
}

resource "google_project_iam_member" "warehouse_job_users" {
  # Load and query jobs are created at project level (no dataset-level role can grant them);
  # jobUser lets them run jobs, the data access stays limited to the dataset above.
  for_each = local.warehouse_writers
  project  = var.project_id
  role     = "roles/bigquery.jobUser"
  member   = each.value
}

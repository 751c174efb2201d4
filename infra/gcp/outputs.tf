output "export_bucket_name" {
  description = "Bucket to enter in CleverTap's Google Cloud Storage export settings."
  value       = google_storage_bucket.export.name
}

output "clevertap_writer_service_account" {
  description = "Service account whose key CleverTap uses to write exports (create the key with gcloud, README, Deploy)."
  value       = google_service_account.clevertap_writer.email
}

output "bigquery_dataset" {
  description = "PROJECT.DATASET holding the loaded tables (point Looker Studio, Tableau or Power BI here)."
  value       = "${var.project_id}.${google_bigquery_dataset.warehouse.dataset_id}"
}

output "bigquery_bi_dataset" {
  description = "PROJECT.DATASET of the typed views for BI tools (one per event table and all_events): what Looker Studio, Tableau or Power BI should read."
  value       = "${var.project_id}.${google_bigquery_dataset.bi.dataset_id}"
}

output "export_loader_url" {
  description = "Internal URL of the export-loader service."
  value       = module.export_loader.uri
}

output "webhook_relay_url" {
  description = "Public URL of the webhook relay; CleverTap webhooks post to <url>/hooks/<route>."
  value       = local.enable_webhook_relay ? module.webhook_relay[0].uri : null
}

output "secret_ids" {
  description = "Secrets to fill in with `gcloud secrets versions add` (created empty)."
  value       = { for key, secret in google_secret_manager_secret.secrets : key => secret.id }
}

output "export_bucket_name" {
  description = "Bucket to enter in CleverTap's GCS export settings."
  value       = module.tapline.export_bucket_name
}

output "clevertap_writer_service_account" {
  description = "Service account whose key goes into CleverTap."
  value       = module.tapline.clevertap_writer_service_account
}

output "bigquery_dataset" {
  description = "Dataset for BI tools."
  value       = module.tapline.bigquery_dataset
}

output "webhook_relay_url" {
  description = "Base URL for CleverTap webhooks."
  value       = module.tapline.webhook_relay_url
}

output "secret_ids" {
  description = "Secrets to fill in after the first apply."
  value       = module.tapline.secret_ids
}

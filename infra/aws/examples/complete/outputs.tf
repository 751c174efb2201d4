output "export_bucket_name" {
  description = "Bucket to enter in CleverTap's S3 export settings."
  value       = module.tapline.export_bucket_name
}

output "export_bucket_region" {
  description = "The bucket's region."
  value       = module.tapline.export_bucket_region
}

output "export_prefix" {
  description = "Folder to enter as the export path in CleverTap."
  value       = module.tapline.export_prefix
}

output "export_queue_url" {
  description = "Queue receiving the bucket's notifications."
  value       = module.tapline.export_queue_url
}

output "dead_letter_queue_urls" {
  description = "Dead-letter queues by purpose."
  value       = module.tapline.dead_letter_queue_urls
}

output "function_names" {
  description = "Deployed Lambda functions."
  value       = module.tapline.function_names
}

output "webhook_relay_url" {
  description = "Base URL for CleverTap webhooks (<url>hooks/<route>)."
  value       = module.tapline.webhook_relay_url
}

output "secret_arns" {
  description = "Secrets to fill in after the first apply."
  value       = module.tapline.secret_arns
}

output "export_bucket_name" {
  description = "Bucket to enter in CleverTap's S3 export settings."
  value       = local.export_bucket_name
}

output "export_bucket_region" {
  description = "The bucket's region (must match the CleverTap account's region)."
  value       = local.region
}

output "export_prefix" {
  description = "Folder to enter as the export path in CleverTap (empty: bucket root)."
  value       = var.export_prefix
}

output "clevertap_bucket_policy_json" {
  description = "The bucket policy that lets CleverTap write exports; merge it into an existing bucket's policy when create_export_bucket is false."
  value       = data.aws_iam_policy_document.export_bucket.json
}

output "export_queue_url" {
  description = "SQS queue receiving the bucket's object-created notifications."
  value       = aws_sqs_queue.export_events.url
}

output "dead_letter_queue_urls" {
  description = "Dead-letter queues by purpose (export_events, relay_delivery, schedules)."
  value = merge(
    {
      export_events = aws_sqs_queue.export_events_dlq.url
      schedules     = aws_sqs_queue.schedules_dlq.url
    },
    var.enable_webhook_relay ? { relay_delivery = aws_sqs_queue.relay_delivery_dlq[0].url } : {},
  )
}

output "function_names" {
  description = "Deployed Lambda function names by role."
  value       = { for key in local.enabled_functions : key => local.function_names[key] }
}

output "webhook_relay_url" {
  description = "Function URL of the webhook relay; CleverTap webhooks post to <url>hooks/<route>."
  value       = var.enable_webhook_relay ? aws_lambda_function_url.webhook_relay[0].function_url : null
}

output "secret_arns" {
  description = "Secrets to fill in with `aws secretsmanager put-secret-value` (the module creates them empty)."
  value = merge(
    { warehouse_password = local.warehouse_secret_arn },
    var.enable_api_puller ? { clevertap_passcode = aws_secretsmanager_secret.clevertap_passcode[0].arn } : {},
    { for name, secret in aws_secretsmanager_secret.relay : "relay/${name}" => secret.arn },
  )
}

output "name" {
  description = "The service's name."
  value       = google_cloud_run_v2_service.this.name
}

output "uri" {
  description = "The service's URL."
  value       = google_cloud_run_v2_service.this.uri
}

output "service_account_email" {
  description = "The email of the service's own service account."
  value       = google_service_account.this.email
}

output "service_account_member" {
  description = "The service account as an IAM member (serviceAccount:...), for grants on other resources."
  value       = google_service_account.this.member
}

# Secret Manager secrets, created empty: add versions with `gcloud secrets versions add` (README,
# Deploy) so values never pass through tfvars or state. Services get resource names, not values.

locals {
  secrets = merge(
    local.enable_api_puller ? { "clevertap-passcode" = [google_service_account.api_puller[0].member] } : {},
    local.enable_webhook_relay ? {
      for name in var.webhook_relay_secret_names : "relay-${name}" => [
        google_service_account.webhook_relay[0].member,
        google_service_account.webhook_relay_worker[0].member,
      ]
    } : {},
  )
  secret_accessors = merge([
    for secret, members in local.secrets : { for member in members : "${secret} ${member}" => { secret = secret, member = member } }
  ]...)
  relay_secret_versions = local.enable_webhook_relay ? {
    for name in var.webhook_relay_secret_names : name => "${google_secret_manager_secret.secrets["relay-${name}"].id}/versions/latest"
  } : {}
}

resource "google_secret_manager_secret" "secrets" {
  for_each  = local.secrets
  project   = var.project_id
  secret_id = "${var.name_prefix}-${each.key}"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "accessors" {
  # Each secret readable only by the services that use it.
  for_each  = local.secret_accessors
  project   = var.project_id
  secret_id = google_secret_manager_secret.secrets[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}

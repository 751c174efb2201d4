# Secret Manager secrets, created empty: add versions with `gcloud secrets versions add` (README,
# Deploy) so values never pass through tfvars or state. Services get resource names, not values.

locals {
  relay_route_secret_names       = local.enable_webhook_relay ? var.webhook_relay_route_secret_names : toset([])
  relay_destination_secret_names = local.enable_webhook_relay ? var.webhook_relay_destination_secret_names : toset([])

  # Secret → the services that read it (names, not emails: for_each keys must be known at plan
  # time, and a new service account's email is not).
  secrets = merge(
    local.enable_api_puller ? { "clevertap-passcode" = ["api_puller"] } : {},
    var.warehouse_password_secret ? {
      "warehouse-password" = concat(
        ["export_loader"],
        local.enable_api_puller ? ["api_puller"] : [],
        # A PostgreSQL warehouse destination: the worker writes webhook_events there.
        local.relay_has_warehouse ? ["webhook_relay_worker"] : [],
      )
    } : {},
    # Route tokens: the public endpoint checks them; the alerts job's is also read by the
    # api-puller, which sends it.
    {
      for name in local.relay_route_secret_names : "relay-${name}" => concat(
        ["webhook_relay"],
        local.alerts_via_relay && name == var.api_puller_alerts_relay_token_secret_name ? ["api_puller"] : [],
      )
    },
    # Destination credentials (Slack URLs, signing keys, CleverTap passcodes): the worker only.
    { for name in local.relay_destination_secret_names : "relay-${name}" => ["webhook_relay_worker"] },
  )
  secret_readers = merge(
    { export_loader = module.export_loader.service_account_member },
    local.enable_api_puller ? { api_puller = module.api_puller[0].service_account_member } : {},
    local.enable_webhook_relay ? {
      webhook_relay        = module.webhook_relay[0].service_account_member
      webhook_relay_worker = module.webhook_relay_worker[0].service_account_member
    } : {},
  )
  secret_accessors = merge([
    for secret, readers in local.secrets : { for reader in readers : "${secret}/${reader}" => { secret = secret, reader = reader } }
  ]...)
  # NAME → Secret Manager version, per service: TAPLINE_RELAY_SECRET_ARNS holds only its own.
  relay_route_secret_versions = {
    for name in local.relay_route_secret_names : name => "${google_secret_manager_secret.secrets["relay-${name}"].id}/versions/latest"
  }
  relay_destination_secret_versions = {
    for name in local.relay_destination_secret_names : name => "${google_secret_manager_secret.secrets["relay-${name}"].id}/versions/latest"
  }
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
  member    = local.secret_readers[each.value.reader]
}

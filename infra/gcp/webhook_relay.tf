# Webhook relay: CleverTap → public Cloud Run service (authenticates each route by its secret
# header, publishes to Pub/Sub, answers 200 within CleverTap's 3–5 s) → push subscription (OIDC)
# → internal worker service (delivers on the retry schedule: a failed delivery is published
# again, due later; the last failure is dead-lettered). Two services, as on AWS: the public one
# can only publish, and reads route tokens only.

locals {
  # A route with a warehouse destination: the worker writes webhook_events (the endpoint, in
  # endpoint mode, reads no destination settings).
  relay_has_warehouse = local.enable_webhook_relay && local.relay_config_has_warehouse
  # The module's own BigQuery dataset (not a warehouse_url of the deployer's).
  relay_writes_module_bigquery = local.relay_has_warehouse && var.warehouse_url == null

  relay_common_env = merge(local.http_env, {
    # Every route's default schedule (TAPLINE_RELAY_RETRY_SCHEDULE wins over the TOML's).
    TAPLINE_RELAY_RETRY_SCHEDULE = jsonencode(var.webhook_relay_retry_schedule)
    TAPLINE_RELAY_CONFIG_TOML    = var.webhook_relay_config
    TAPLINE_LOG                  = var.log_level
  })
  relay_endpoint_env = local.enable_webhook_relay ? merge(local.relay_common_env, {
    TAPLINE_RELAY_MODE  = "endpoint"
    TAPLINE_RELAY_TOPIC = google_pubsub_topic.relay_delivery[0].id
    # Route tokens only: the public service never holds a destination's credentials.
    # No TAPLINE_WAREHOUSE either: the endpoint's config check reads no destination's settings.
    TAPLINE_RELAY_SECRET_ARNS = jsonencode(local.relay_route_secret_versions)
  }) : {}
  relay_worker_env = local.enable_webhook_relay ? merge(local.relay_common_env, {
    TAPLINE_RELAY_MODE = "worker"
    # Retries are published again here, due later; what the worker gives up on goes to the
    # dead-letter topic with its attempt record.
    TAPLINE_RELAY_TOPIC                 = google_pubsub_topic.relay_delivery[0].id
    TAPLINE_RELAY_DEAD_LETTER_TOPIC     = google_pubsub_topic.relay_dead_letters[0].id
    TAPLINE_RELAY_MAX_DELIVERY_ATTEMPTS = tostring(local.relay_max_delivery_attempts)
    # Destination credentials only.
    TAPLINE_RELAY_SECRET_ARNS = jsonencode(local.relay_destination_secret_versions)
    # The dedupe window (the same body on a route within settings.dedupe_window_secs is
    # delivered once, by claims with GCS generation preconditions) and the attempt records
    # that dead letters list.
    TAPLINE_RELAY_DEDUPE_BUCKET = google_storage_bucket.relay_dedupe[0].name
    TAPLINE_WAREHOUSE           = local.relay_warehouse_url
  }, local.relay_jobs_env) : {}

  # The export-status destination's cloud mode: the worker POSTs the loader's /sweep and the
  # puller's reconcile job with an ID token, instead of reading buckets and the warehouse.
  relay_invokes_jobs = local.enable_webhook_relay && local.enable_api_puller && var.webhook_relay_invokes_loader_and_puller
  relay_jobs_env = local.relay_invokes_jobs ? {
    TAPLINE_EXPORT_LOADER_TARGET = module.export_loader.uri
    TAPLINE_API_PULLER_TARGET    = module.api_puller[0].uri
  } : {}
  # run.invoker on the loader and the puller for the worker's identity (their invokers maps).
  relay_job_invoker = local.relay_invokes_jobs ? { relay_worker = module.webhook_relay_worker[0].service_account_member } : {}
}

resource "google_service_account" "relay_push" {
  count        = local.enable_webhook_relay ? 1 : 0
  project      = var.project_id
  account_id   = "${var.name_prefix}-relay-push"
  display_name = "Tapline Pub/Sub push identity (invokes the relay worker)"
}

resource "google_pubsub_topic" "relay_delivery" {
  count   = local.enable_webhook_relay ? 1 : 0
  project = var.project_id
  name    = "${var.name_prefix}-relay-delivery"
  labels  = local.labels

  depends_on = [google_project_service.apis]

  #checkov:skip=CKV_GCP_83:Google-managed encryption; a CMEK needs a key ring and key policy the deployer owns.
}

resource "google_pubsub_topic" "relay_dead_letters" {
  count   = local.enable_webhook_relay ? 1 : 0
  project = var.project_id
  name    = "${var.name_prefix}-relay-dead-letters"
  labels  = local.labels

  depends_on = [google_project_service.apis]

  #checkov:skip=CKV_GCP_83:Google-managed encryption; a CMEK needs a key ring and key policy the deployer owns.
}

resource "google_pubsub_subscription" "relay_dead_letters" {
  # Without a subscription, messages published to the dead-letter topic would be dropped.
  count                      = local.enable_webhook_relay ? 1 : 0
  project                    = var.project_id
  name                       = "${var.name_prefix}-relay-dead-letters"
  topic                      = google_pubsub_topic.relay_dead_letters[0].id
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60
  labels                     = local.labels

  expiration_policy {
    ttl = "" # never expires, even when nobody pulls for a month
  }
}

module "webhook_relay" {
  source = "./modules/cloud_run_service"
  count  = local.enable_webhook_relay ? 1 : 0

  project_id                   = var.project_id
  region                       = var.region
  name                         = "${var.name_prefix}-webhook-relay"
  service_account_id           = "${var.name_prefix}-relay"
  service_account_display_name = "Tapline webhook relay endpoint (publishes accepted webhooks)"
  ingress                      = "INGRESS_TRAFFIC_ALL"
  labels                       = local.labels

  image  = var.webhook_relay_image
  memory = "256Mi"
  # CleverTap gives up after 3 to 5 s.
  timeout = "10s"
  # The endpoint is public: a flood of requests costs at most this many instances.
  max_instance_count = var.webhook_relay_max_instances

  # One image, two services: this one accepts and publishes.
  env = [for name, value in local.relay_endpoint_env : { name = name, value = value }]

  # CleverTap's webhook sender cannot present a Google identity: the service is public and
  # authenticates each route itself (secret header or Basic auth, constant-time).
  invokers = { public = "allUsers" }
  #checkov:skip=CKV_GCP_102:Public by design: CleverTap calls the relay from the internet without a Google identity; the app authenticates every route by secret.

  preconditions = [{
    condition     = length(setintersection(var.webhook_relay_route_secret_names, var.webhook_relay_destination_secret_names)) == 0
    error_message = "A relay secret is in both webhook_relay_route_secret_names and webhook_relay_destination_secret_names: each is either a route token (endpoint) or a destination's credential (worker)."
  }]

  # The route tokens are read at start: their accessor bindings must exist before a revision.
  start_after = [google_project_service.apis, google_secret_manager_secret_iam_member.accessors]
}

resource "google_pubsub_topic_iam_member" "webhook_relay_publisher" {
  count   = local.enable_webhook_relay ? 1 : 0
  project = var.project_id
  topic   = google_pubsub_topic.relay_delivery[0].name
  role    = "roles/pubsub.publisher"
  member  = module.webhook_relay[0].service_account_member
}

module "webhook_relay_worker" {
  source = "./modules/cloud_run_service"
  count  = local.enable_webhook_relay ? 1 : 0

  project_id                   = var.project_id
  region                       = var.region
  name                         = "${var.name_prefix}-webhook-relay-worker"
  service_account_id           = "${var.name_prefix}-relay-worker"
  service_account_display_name = "Tapline webhook relay worker (delivers to destinations)"
  ingress                      = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  labels                       = local.labels

  image   = local.relay_worker_image
  memory  = "256Mi"
  timeout = "60s"
  # Slack allows about one message per second per webhook.
  max_instance_count = 2

  # Takes Pub/Sub pushes on `/`; follows the retry schedule, and dead-letters permanent failures
  # and last attempts itself, with their attempt record (the subscription's dead-letter policy
  # is the safety net).
  env = concat(
    [for name, value in local.relay_worker_env : { name = name, value = value }],
    # A PostgreSQL warehouse destination's password, as for the loaders: Cloud Run reads the
    # secret and sets the variable; the URL in TAPLINE_WAREHOUSE carries none.
    var.warehouse_password_secret && local.relay_has_warehouse ? [{ name = "TAPLINE_WAREHOUSE_PASSWORD", secret = google_secret_manager_secret.secrets["warehouse-password"].secret_id }] : [],
  )

  # The push subscription's identity only.
  invokers = { relay_push = google_service_account.relay_push[0].member }

  # Through the VPC: the loader and puller it invokes accept internal traffic only.
  vpc_egress_subnetwork = local.relay_invokes_jobs ? var.webhook_relay_worker_subnetwork : null

  preconditions = [
    {
      condition     = !var.webhook_relay_invokes_loader_and_puller || (local.enable_api_puller && var.webhook_relay_worker_subnetwork != null)
      error_message = "webhook_relay_invokes_loader_and_puller needs the API puller (api_puller_image) and webhook_relay_worker_subnetwork (the loader and puller accept internal traffic only)."
    },
  ]

  # Destination secrets (and the warehouse password) are read at start.
  start_after = [google_project_service.apis, google_secret_manager_secret_iam_member.accessors]
}

resource "google_pubsub_topic_iam_member" "webhook_relay_worker_retries" {
  # The worker publishes a failed delivery again to the delivery topic, due later: the retry
  # schedule outlasts what Pub/Sub's own redelivery can wait.
  count   = local.enable_webhook_relay ? 1 : 0
  project = var.project_id
  topic   = google_pubsub_topic.relay_delivery[0].name
  role    = "roles/pubsub.publisher"
  member  = module.webhook_relay_worker[0].service_account_member
}

resource "google_pubsub_topic_iam_member" "webhook_relay_worker_dead_letters" {
  # The worker publishes what it gives up on (with the last attempt's outcome) to the
  # dead-letter topic; it publishes nowhere else but the delivery topic.
  count   = local.enable_webhook_relay ? 1 : 0
  project = var.project_id
  topic   = google_pubsub_topic.relay_dead_letters[0].name
  role    = "roles/pubsub.publisher"
  member  = module.webhook_relay_worker[0].service_account_member
}

# The worker's small objects. Dedupe claims (dedupe/): one per (route, destination, body hash),
# created only if absent (ifGenerationMatch=0) and taken over only at the generation read; they
# matter for the dedupe window (minutes), so they expire after a day, and an expired claim only
# means the next copy is delivered. Attempt records (attempts/): each failed attempt that will be
# retried, listed on the delivery's dead letter; kept as long as Pub/Sub keeps a message (7 days).
resource "google_storage_bucket" "relay_dedupe" {
  count                       = local.enable_webhook_relay ? 1 : 0
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name_prefix}-relay-dedupe"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = local.labels

  lifecycle_rule {
    condition {
      age            = 1
      matches_prefix = ["dedupe/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age            = 8
      matches_prefix = ["attempts/"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]

  #checkov:skip=CKV_GCP_62:Access logs need a separate log bucket the deployer owns; the bucket holds only claims (payload ids and hashes) and attempt records (statuses, errors without URLs).
  #checkov:skip=CKV_GCP_78:Versioning would keep every superseded claim; claims are overwritten by design and expire in a day, attempt records in eight.
}

resource "google_storage_bucket_iam_member" "relay_worker_dedupe" {
  # Create, read and overwrite claims (overwriting needs delete); in this bucket only.
  count  = local.enable_webhook_relay ? 1 : 0
  bucket = google_storage_bucket.relay_dedupe[0].name
  role   = "roles/storage.objectUser"
  member = module.webhook_relay_worker[0].service_account_member
}

resource "google_service_account_iam_member" "pubsub_mints_push_tokens" {
  # Pub/Sub signs the push OIDC token as relay_push: its service agent needs tokenCreator on that
  # account only.
  count              = local.enable_webhook_relay ? 1 : 0
  service_account_id = google_service_account.relay_push[0].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

resource "google_pubsub_subscription" "relay_delivery" {
  count                = local.enable_webhook_relay ? 1 : 0
  project              = var.project_id
  name                 = "${var.name_prefix}-relay-delivery"
  topic                = google_pubsub_topic.relay_delivery[0].id
  ack_deadline_seconds = 60
  labels               = local.labels

  push_config {
    push_endpoint = "${module.webhook_relay_worker[0].uri}/"
    oidc_token {
      service_account_email = google_service_account.relay_push[0].email
      audience              = module.webhook_relay_worker[0].uri
    }
  }

  # Derived from webhook_relay_retry_schedule (locals above): how often a held delivery is
  # pushed again, and how many pushes before the worker publishes it again fresh.
  retry_policy {
    minimum_backoff = "${local.relay_min_backoff_secs}s"
    maximum_backoff = "${local.relay_max_backoff_secs}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.relay_dead_letters[0].id
    max_delivery_attempts = local.relay_max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [google_service_account_iam_member.pubsub_mints_push_tokens]
}

# Dead-lettering is done by the Pub/Sub service agent: it must publish to the dead-letter topic
# and acknowledge on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  count   = local.enable_webhook_relay ? 1 : 0
  project = var.project_id
  topic   = google_pubsub_topic.relay_dead_letters[0].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  count        = local.enable_webhook_relay ? 1 : 0
  project      = var.project_id
  subscription = google_pubsub_subscription.relay_delivery[0].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

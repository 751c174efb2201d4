# Webhook relay: CleverTap → public Cloud Run service (authenticates each route by its secret
# header, publishes to Pub/Sub, answers 200 within CleverTap's 3–5 s) → push subscription (OIDC)
# → internal worker service (delivers; a non-2xx answer is redelivered with backoff, then
# dead-lettered). Two services, as on AWS: the public one can only publish.

resource "google_service_account" "webhook_relay" {
  count        = local.enable_webhook_relay ? 1 : 0
  project      = var.project_id
  account_id   = "${var.name_prefix}-relay"
  display_name = "Tapline webhook relay endpoint (publishes accepted webhooks)"
}

resource "google_service_account" "webhook_relay_worker" {
  count        = local.enable_webhook_relay ? 1 : 0
  project      = var.project_id
  account_id   = "${var.name_prefix}-relay-worker"
  display_name = "Tapline webhook relay worker (delivers to destinations)"
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

resource "google_cloud_run_v2_service" "webhook_relay" {
  count               = local.enable_webhook_relay ? 1 : 0
  project             = var.project_id
  name                = "${var.name_prefix}-webhook-relay"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  labels              = local.labels
  deletion_protection = false

  template {
    service_account = google_service_account.webhook_relay[0].email
    # CleverTap gives up after 3 to 5 s.
    timeout = "10s"

    containers {
      image = var.webhook_relay_image

      resources {
        limits = { cpu = "1", memory = "256Mi" }
      }

      # One image, two services: this one accepts and publishes.
      env {
        name  = "TAPLINE_RELAY_MODE"
        value = "endpoint"
      }
      env {
        name  = "TAPLINE_RELAY_TOPIC"
        value = google_pubsub_topic.relay_delivery[0].id
      }
      env {
        name  = "TAPLINE_RELAY_CONFIG_TOML"
        value = var.webhook_relay_config
      }
      env {
        name  = "TAPLINE_RELAY_SECRET_ARNS"
        value = jsonencode(local.relay_secret_versions)
      }
      env {
        name  = "TAPLINE_LOG"
        value = var.log_level
      }
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_cloud_run_v2_service_iam_member" "webhook_relay_public" {
  # CleverTap's webhook sender cannot present a Google identity: the service is public and
  # authenticates each route itself (secret header or Basic auth, constant-time).
  count    = local.enable_webhook_relay ? 1 : 0
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.webhook_relay[0].name
  role     = "roles/run.invoker"
  member   = "allUsers"

  #checkov:skip=CKV_GCP_102:Public by design: CleverTap calls the relay from the internet without a Google identity; the app authenticates every route by secret.
}

resource "google_pubsub_topic_iam_member" "webhook_relay_publisher" {
  count   = local.enable_webhook_relay ? 1 : 0
  project = var.project_id
  topic   = google_pubsub_topic.relay_delivery[0].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.webhook_relay[0].member
}

resource "google_cloud_run_v2_service" "webhook_relay_worker" {
  count               = local.enable_webhook_relay ? 1 : 0
  project             = var.project_id
  name                = "${var.name_prefix}-webhook-relay-worker"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  labels              = local.labels
  deletion_protection = false

  template {
    service_account = google_service_account.webhook_relay_worker[0].email
    timeout         = "60s"

    scaling {
      # Slack allows about one message per second per webhook.
      max_instance_count = 2
    }

    containers {
      image = local.relay_worker_image

      resources {
        limits = { cpu = "1", memory = "256Mi" }
      }

      # Takes Pub/Sub pushes on `/`; dead-letters permanent failures and last attempts itself,
      # with their attempt record (the subscription's dead-letter policy is the safety net).
      env {
        name  = "TAPLINE_RELAY_MODE"
        value = "worker"
      }
      env {
        name  = "TAPLINE_RELAY_DEAD_LETTER_TOPIC"
        value = google_pubsub_topic.relay_dead_letters[0].id
      }
      env {
        name  = "TAPLINE_RELAY_CONFIG_TOML"
        value = var.webhook_relay_config
      }
      env {
        name  = "TAPLINE_RELAY_SECRET_ARNS"
        value = jsonencode(local.relay_secret_versions)
      }
      env {
        # The dedupe window (the same body on a route within settings.dedupe_window_secs is
        # delivered once, by claims with GCS generation preconditions) and the attempt records
        # that dead letters list.
        name  = "TAPLINE_RELAY_DEDUPE_BUCKET"
        value = google_storage_bucket.relay_dedupe[0].name
      }
      env {
        name  = "TAPLINE_WAREHOUSE"
        value = local.warehouse_url
      }
      env {
        name  = "TAPLINE_LOG"
        value = var.log_level
      }
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic_iam_member" "webhook_relay_worker_dead_letters" {
  # The worker publishes what it gives up on (with the last attempt's outcome) to the
  # dead-letter topic; it publishes nowhere else.
  count   = local.enable_webhook_relay ? 1 : 0
  project = var.project_id
  topic   = google_pubsub_topic.relay_dead_letters[0].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.webhook_relay_worker[0].member
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
  member = google_service_account.webhook_relay_worker[0].member
}

resource "google_cloud_run_v2_service_iam_member" "webhook_relay_worker_push" {
  count    = local.enable_webhook_relay ? 1 : 0
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.webhook_relay_worker[0].name
  role     = "roles/run.invoker"
  member   = google_service_account.relay_push[0].member
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
    push_endpoint = "${google_cloud_run_v2_service.webhook_relay_worker[0].uri}/"
    oidc_token {
      service_account_email = google_service_account.relay_push[0].email
      audience              = google_cloud_run_v2_service.webhook_relay_worker[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.relay_dead_letters[0].id
    max_delivery_attempts = var.webhook_relay_max_delivery_attempts
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

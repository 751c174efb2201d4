# The bucket CleverTap exports into, CleverTap's writer identity, and the GCS service agent's right
# to publish the object events Eventarc delivers.

resource "google_storage_bucket" "export" {
  project                     = var.project_id
  name                        = var.export_bucket_name
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = local.labels

  # Versioning, never a retention policy: CleverTap's exports fail with 403 retentionPolicyNotMet
  # on a bucket with one. A corrected re-export overwrites a key; the ledger records generations.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.export_noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]

  #checkov:skip=CKV_GCP_62:Access logs need a separate log bucket the deployer owns; Cloud Audit Logs (data access) are the usual choice on GCP.
}

resource "google_service_account" "clevertap_writer" {
  # CleverTap writes GCS exports with a service account key the customer gives it. Create the key
  # yourself (README, Deploy): a key made here would sit in Terraform state.
  project      = var.project_id
  account_id   = "${var.name_prefix}-clevertap"
  display_name = "CleverTap export writer (key pasted into CleverTap)"
}

resource "google_storage_bucket_iam_member" "clevertap_writer" {
  bucket = google_storage_bucket.export.name
  role   = "roles/storage.objectCreator"
  member = google_service_account.clevertap_writer.member
}

resource "google_storage_bucket_iam_member" "export_loader_reader" {
  # Read and list (the sweep) the exports; nothing else in the project.
  bucket = google_storage_bucket.export.name
  role   = "roles/storage.objectViewer"
  member = module.export_loader.service_account_member
}

data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

resource "google_project_iam_member" "gcs_pubsub_publisher" {
  # GCS publishes object events to Eventarc's Pub/Sub topic as its service agent; Eventarc
  # triggers on Cloud Storage fail to create without this grant.
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

# One Tapline Cloud Run service and what belongs to it alone: its own service account, the
# service (one container, 1 CPU, env with secrets read by Cloud Run at start), and who may invoke
# it. What the identity may touch elsewhere (buckets, topics, secrets, datasets) is granted
# beside those resources, on the service_account_member output.

resource "google_service_account" "this" {
  project      = var.project_id
  account_id   = var.service_account_id
  display_name = var.service_account_display_name
}

resource "google_cloud_run_v2_service" "this" {
  project  = var.project_id
  name     = var.name
  location = var.region
  ingress  = var.ingress
  labels   = var.labels
  # Removing a service must not need a two-step apply; Tapline's state is in the warehouse.
  deletion_protection = false

  template {
    service_account                  = google_service_account.this.email
    max_instance_request_concurrency = var.max_instance_request_concurrency
    timeout                          = var.timeout

    scaling {
      max_instance_count = var.max_instance_count
    }

    # A request to an internal-only service counts as internal only when it comes through the
    # VPC: all traffic leaves through the subnetwork (which needs Private Google Access for
    # Google's APIs).
    dynamic "vpc_access" {
      for_each = var.vpc_egress_subnetwork == null ? [] : [var.vpc_egress_subnetwork]
      content {
        egress = "ALL_TRAFFIC"
        network_interfaces {
          subnetwork = vpc_access.value
        }
      }
    }

    containers {
      image = var.image

      resources {
        limits = { cpu = "1", memory = var.memory }
      }

      # In the caller's order (a reordered list is a new revision).
      dynamic "env" {
        for_each = var.env
        content {
          name  = env.value.name
          value = env.value.value
          # A secret's latest version, read by Cloud Run when an instance starts.
          dynamic "value_source" {
            for_each = env.value.secret == null ? [] : [env.value.secret]
            content {
              secret_key_ref {
                secret  = value_source.value
                version = "latest"
              }
            }
          }
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = alltrue([for check in var.preconditions : check.condition])
      error_message = join(" ", [for check in var.preconditions : check.error_message if !check.condition])
    }
  }

  # E.g. the secret accessor bindings: they must exist before a revision that reads the secrets
  # starts. A dependency on the variable, so the service account is not held back by them.
  depends_on = [var.start_after]
}

resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = var.invokers
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.this.name
  role     = "roles/run.invoker"
  member   = each.value
}

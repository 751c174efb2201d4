terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.x: google_cloud_run_v2_service with deletion_protection and the Eventarc v2 destination.
      version = "~> 6.0"
    }
  }
}

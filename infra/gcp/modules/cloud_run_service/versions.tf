terraform {
  # The same constraints as the root module (infra/gcp/versions.tf), which passes its provider in.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
  }
}

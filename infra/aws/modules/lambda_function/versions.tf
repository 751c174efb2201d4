terraform {
  # The same constraints as the root module (infra/aws/versions.tf), which passes its provider in.
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}

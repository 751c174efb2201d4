terraform {
  # 1.5 for `check` blocks (the CleverTap region warning in export_bucket.tf).
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # The version the offline checks run with (the machine image's provider mirror).
      version = "~> 5.100"
    }
  }
}

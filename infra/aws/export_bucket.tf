# The bucket CleverTap exports into, the policy that lets CleverTap write, and the notifications
# that announce each new export on the export queue.

locals {
  # CleverTap exports only to a bucket in the AWS region that matches the account's region.
  clevertap_bucket_regions = {
    eu1  = "eu-west-1"
    in1  = "ap-south-1"
    us1  = "us-west-2"
    sg1  = "ap-southeast-1"
    mec1 = "me-central-1"
    aps3 = "ap-southeast-3"
  }
}

check "export_bucket_region_matches_clevertap" {
  assert {
    condition     = lookup(local.clevertap_bucket_regions, var.clevertap_region, local.region) == local.region
    error_message = "CleverTap ${var.clevertap_region} exports only to ${lookup(local.clevertap_bucket_regions, var.clevertap_region, "?")}; this deployment is in ${local.region}."
  }
}

resource "aws_s3_bucket" "export" {
  count  = var.create_export_bucket ? 1 : 0
  bucket = var.export_bucket_name
  tags   = local.tags

  #checkov:skip=CKV_AWS_145:SSE-S3, not KMS: CleverTap writes from its own account and cannot use our KMS key unless we grant it; SSE-S3 keeps the documented setup working.
  #checkov:skip=CKV_AWS_144:Exports can be re-run from CleverTap (and the API puller covers gaps); cross-region replication doubles storage for data that is already in the warehouse.
  #checkov:skip=CKV_AWS_18:Access logging needs a separate log bucket the deployer owns; enable it there if your policy requires it.
}

resource "aws_s3_bucket_ownership_controls" "export" {
  count  = var.create_export_bucket ? 1 : 0
  bucket = aws_s3_bucket.export[0].id

  rule {
    # Objects written by CleverTap's account belong to us, whatever ACL it sends.
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "export" {
  count                   = var.create_export_bucket ? 1 : 0
  bucket                  = aws_s3_bucket.export[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "export" {
  count  = var.create_export_bucket ? 1 : 0
  bucket = aws_s3_bucket.export[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "export" {
  count  = var.create_export_bucket ? 1 : 0
  bucket = aws_s3_bucket.export[0].id

  versioning_configuration {
    # A corrected re-export overwrites the same key; the loader replaces that file's rows by
    # version (ETag), and versioning keeps the old bytes for audit until the lifecycle rule ends them.
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "export" {
  count  = var.create_export_bucket ? 1 : 0
  bucket = aws_s3_bucket.export[0].id

  rule {
    id     = "old-export-versions"
    status = "Enabled"

    filter {
      prefix = var.export_prefix
    }

    noncurrent_version_expiration {
      noncurrent_days = var.export_noncurrent_version_days
    }
  }

  rule {
    # A multipart upload CleverTap abandoned is billed until aborted, and is never an export.
    id     = "abandoned-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.export]
}

data "aws_iam_policy_document" "export_bucket" {
  statement {
    sid       = "CleverTapWritesExports"
    actions   = var.clevertap_put_actions
    resources = [local.export_objects_arn]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${var.clevertap_aws_account_id}:root"]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [local.export_bucket_arn, "${local.export_bucket_arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "export" {
  count  = var.create_export_bucket ? 1 : 0
  bucket = aws_s3_bucket.export[0].id
  policy = data.aws_iam_policy_document.export_bucket.json

  # The policy is refused while the public access block is being written.
  depends_on = [aws_s3_bucket_public_access_block.export]
}

resource "aws_s3_bucket_notification" "export" {
  # This resource owns the bucket's whole notification configuration: on an existing bucket it
  # replaces any notifications set elsewhere.
  bucket = local.export_bucket_name

  dynamic "queue" {
    for_each = toset(var.export_suffixes)
    content {
      id            = "tapline-export${replace(queue.value, ".", "-")}"
      queue_arn     = aws_sqs_queue.export_events.arn
      events        = ["s3:ObjectCreated:*"]
      filter_prefix = var.export_prefix
      filter_suffix = queue.value
    }
  }

  # S3 checks that it may send to the queue when the notification is saved: the queue carries
  # its policy from creation (queues.tf).
}

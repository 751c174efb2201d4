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

  # The export bucket's ARN from its name alone, not from module.export_bucket (as
  # local.export_bucket_arn is): the bucket policy document below is an input of that module.
  export_policy_bucket_arn = "arn:${local.partition}:s3:::${var.export_bucket_name}"
}

check "export_bucket_region_matches_clevertap" {
  assert {
    condition     = lookup(local.clevertap_bucket_regions, var.clevertap_region, local.region) == local.region
    error_message = "CleverTap ${var.clevertap_region} exports only to ${lookup(local.clevertap_bucket_regions, var.clevertap_region, "?")}; this deployment is in ${local.region}."
  }
}

# The bucket and its hardening (ownership, public access block, SSE-S3, TLS-only policy, aborted
# abandoned uploads): modules/secure_bucket.
module "export_bucket" {
  source = "./modules/secure_bucket"
  count  = var.create_export_bucket ? 1 : 0

  name = var.export_bucket_name
  tags = local.tags

  #checkov:skip=CKV_AWS_145:SSE-S3, not KMS: CleverTap writes from its own account and cannot use our KMS key unless we grant it; SSE-S3 keeps the documented setup working.
  #checkov:skip=CKV_AWS_144:Exports can be re-run from CleverTap (and the API puller covers gaps); cross-region replication doubles storage for data that is already in the warehouse.
  #checkov:skip=CKV_AWS_18:Access logging needs a separate log bucket the deployer owns; enable it there if your policy requires it.

  # A corrected re-export overwrites the same key; the loader replaces that file's rows by
  # version (ETag), and versioning keeps the old bytes for audit until the lifecycle rule ends them.
  versioning = true

  lifecycle_rules = [
    { id = "old-export-versions", prefix = var.export_prefix, noncurrent_days = var.export_noncurrent_version_days },
  ]
  # A multipart upload CleverTap abandoned is billed until aborted, and is never an export.
  abort_incomplete_multipart_upload_days = 7

  # CleverTap's write grant; the module's own DenyInsecureTransport statement takes the place of
  # this document's (same Sid, same bucket), so the policy is the one an existing bucket is given.
  policy_documents = [data.aws_iam_policy_document.export_bucket.json]
}

# The export bucket's policy: CleverTap may write under the prefix, nothing without TLS. Applied by
# module.export_bucket when the bucket is created here; otherwise the clevertap_bucket_policy_json
# output, to merge into the existing bucket's policy.
data "aws_iam_policy_document" "export_bucket" {
  statement {
    sid       = "CleverTapWritesExports"
    actions   = var.clevertap_put_actions
    resources = ["${local.export_policy_bucket_arn}/${var.export_prefix}*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${var.clevertap_aws_account_id}:root"]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [local.export_policy_bucket_arn, "${local.export_policy_bucket_arn}/*"]

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

resource "aws_s3_bucket_notification" "export" {
  # This resource owns the bucket's whole notification configuration: on an existing bucket it
  # replaces any notifications set elsewhere. local.export_bucket_name, written out: checkov
  # connects the notification to the bucket only through a direct module output (CKV2_AWS_62).
  bucket = var.create_export_bucket ? module.export_bucket[0].id : var.export_bucket_name

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

# State from before modules/secure_bucket: the same objects at their new addresses.
moved {
  from = aws_s3_bucket.export[0]
  to   = module.export_bucket[0].aws_s3_bucket.this
}

moved {
  from = aws_s3_bucket_ownership_controls.export[0]
  to   = module.export_bucket[0].aws_s3_bucket_ownership_controls.this
}

moved {
  from = aws_s3_bucket_public_access_block.export[0]
  to   = module.export_bucket[0].aws_s3_bucket_public_access_block.this
}

moved {
  from = aws_s3_bucket_server_side_encryption_configuration.export[0]
  to   = module.export_bucket[0].aws_s3_bucket_server_side_encryption_configuration.this
}

moved {
  from = aws_s3_bucket_versioning.export[0]
  to   = module.export_bucket[0].aws_s3_bucket_versioning.this[0]
}

moved {
  from = aws_s3_bucket_lifecycle_configuration.export[0]
  to   = module.export_bucket[0].aws_s3_bucket_lifecycle_configuration.this
}

moved {
  from = aws_s3_bucket_policy.export[0]
  to   = module.export_bucket[0].aws_s3_bucket_policy.this
}

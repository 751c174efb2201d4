# Webhook relay: bodies too large for an SQS message (claim-check), and the worker's dedupe claims
# (dedupe/). The endpoint stores such a
# body here (payloads/<payload id>.json) and queues a pointer; the worker reads it back. Objects
# are shared by a payload's deliveries and by its dead letters, so they are not deleted after
# delivery: the lifecycle rule expires them once no message can point at them any more (the
# delivery queue keeps a message 14 days, the dead-letter queue var.dead_letter_retention_seconds).

locals {
  relay_payload_bucket_name = "${var.name_prefix}-relay-payloads-${local.account_id}"
  relay_payload_days = ceil(
    max(1209600, var.dead_letter_retention_seconds) / 86400
  ) + 1
}

resource "aws_s3_bucket" "relay_payloads" {
  count  = var.enable_webhook_relay ? 1 : 0
  bucket = local.relay_payload_bucket_name
  tags   = local.tags

  #checkov:skip=CKV_AWS_145:SSE-S3: objects are webhook bodies the relay also holds in SQS (SSE-SQS); a KMS key would add a key policy for both functions and per-request KMS costs.
  #checkov:skip=CKV_AWS_144:Transient claim-check objects that expire within weeks; cross-region replication would copy data no reader needs.
  #checkov:skip=CKV_AWS_18:Access logging needs a separate log bucket the deployer owns; only the relay's two functions can reach this one.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to these objects: the pointer travels in the SQS message.
  #checkov:skip=CKV_AWS_21:Each key is written once (a new payload id per accept); versioning would only keep deleted objects longer.
}

resource "aws_s3_bucket_ownership_controls" "relay_payloads" {
  count  = var.enable_webhook_relay ? 1 : 0
  bucket = aws_s3_bucket.relay_payloads[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "relay_payloads" {
  count                   = var.enable_webhook_relay ? 1 : 0
  bucket                  = aws_s3_bucket.relay_payloads[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "relay_payloads" {
  count  = var.enable_webhook_relay ? 1 : 0
  bucket = aws_s3_bucket.relay_payloads[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "relay_payloads" {
  count  = var.enable_webhook_relay ? 1 : 0
  bucket = aws_s3_bucket.relay_payloads[0].id

  rule {
    id     = "expire-payloads"
    status = "Enabled"

    filter {
      prefix = "payloads/"
    }

    expiration {
      days = local.relay_payload_days
    }
  }

  rule {
    # Dedupe claims (the worker's conditional puts) matter for the dedupe window only (minutes);
    # an expired claim means the next copy is delivered, right once the window has passed.
    id     = "expire-dedupe-claims"
    status = "Enabled"

    filter {
      prefix = "dedupe/"
    }

    expiration {
      days = 1
    }
  }

  rule {
    id     = "abandoned-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "relay_payloads" {
  count = var.enable_webhook_relay ? 1 : 0

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.relay_payloads[0].arn, "${aws_s3_bucket.relay_payloads[0].arn}/*"]

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

resource "aws_s3_bucket_policy" "relay_payloads" {
  count  = var.enable_webhook_relay ? 1 : 0
  bucket = aws_s3_bucket.relay_payloads[0].id
  policy = data.aws_iam_policy_document.relay_payloads[0].json

  depends_on = [aws_s3_bucket_public_access_block.relay_payloads]
}

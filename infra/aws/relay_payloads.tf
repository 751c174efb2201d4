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

# The bucket and its hardening (ownership, public access block, SSE-S3, TLS-only policy, aborted
# abandoned uploads): modules/secure_bucket.
module "relay_payloads" {
  source = "./modules/secure_bucket"
  count  = var.enable_webhook_relay ? 1 : 0

  name = local.relay_payload_bucket_name
  tags = local.tags

  #checkov:skip=CKV_AWS_145:SSE-S3: objects are webhook bodies the relay also holds in SQS (SSE-SQS); a KMS key would add a key policy for both functions and per-request KMS costs.
  #checkov:skip=CKV_AWS_144:Transient claim-check objects that expire within weeks; cross-region replication would copy data no reader needs.
  #checkov:skip=CKV_AWS_18:Access logging needs a separate log bucket the deployer owns; only the relay's two functions can reach this one.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to these objects: the pointer travels in the SQS message.
  #checkov:skip=CKV_AWS_21:Each key is written once (a new payload id per accept); versioning would only keep deleted objects longer.
  versioning = false

  lifecycle_rules = [
    { id = "expire-payloads", prefix = "payloads/", expiration_days = local.relay_payload_days },
    # Dedupe claims (the worker's conditional puts) matter for the dedupe window only (minutes);
    # an expired claim means the next copy is delivered, right once the window has passed.
    { id = "expire-dedupe-claims", prefix = "dedupe/", expiration_days = 1 },
    # The worker's record of each failed attempt, listed on the delivery's dead letter: kept as
    # long as a delivery can still be retried (the queues' retention).
    { id = "expire-attempt-records", prefix = "attempts/", expiration_days = local.relay_payload_days },
  ]
  abort_incomplete_multipart_upload_days = 1
}

# State from before modules/secure_bucket: the same objects at their new addresses.
moved {
  from = aws_s3_bucket.relay_payloads[0]
  to   = module.relay_payloads[0].aws_s3_bucket.this
}

moved {
  from = aws_s3_bucket_ownership_controls.relay_payloads[0]
  to   = module.relay_payloads[0].aws_s3_bucket_ownership_controls.this
}

moved {
  from = aws_s3_bucket_public_access_block.relay_payloads[0]
  to   = module.relay_payloads[0].aws_s3_bucket_public_access_block.this
}

moved {
  from = aws_s3_bucket_server_side_encryption_configuration.relay_payloads[0]
  to   = module.relay_payloads[0].aws_s3_bucket_server_side_encryption_configuration.this
}

moved {
  from = aws_s3_bucket_lifecycle_configuration.relay_payloads[0]
  to   = module.relay_payloads[0].aws_s3_bucket_lifecycle_configuration.this
}

moved {
  from = aws_s3_bucket_policy.relay_payloads[0]
  to   = module.relay_payloads[0].aws_s3_bucket_policy.this
}

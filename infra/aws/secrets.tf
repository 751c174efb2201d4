# Secrets Manager entries, created empty: values are put with `aws secretsmanager put-secret-value`
# (README, Deploy) so they never pass through tfvars or Terraform state. Functions get ARNs only.

resource "aws_secretsmanager_secret" "warehouse" {
  count       = var.warehouse_secret_arn == null ? 1 : 0
  name        = "${var.name_prefix}/warehouse-password"
  description = "Password of the warehouse user in TAPLINE_WAREHOUSE (the URL carries no password)."
  tags        = local.tags

  recovery_window_in_days = var.secret_recovery_window_days

  #checkov:skip=CKV_AWS_149:The AWS managed key is enough for a value only these functions' roles may read; pass a CMK through a fork if policy demands one.
  #checkov:skip=CKV2_AWS_57:The password is set by the warehouse owner; rotate it there and put the new value (no rotation Lambda for an external database).
}

resource "aws_secretsmanager_secret" "clevertap_passcode" {
  count       = var.enable_api_puller ? 1 : 0
  name        = "${var.name_prefix}/clevertap-passcode"
  description = "CleverTap API passcode (X-CleverTap-Passcode) for the api-puller."
  tags        = local.tags

  recovery_window_in_days = var.secret_recovery_window_days

  #checkov:skip=CKV_AWS_149:The AWS managed key is enough for a value only the api-puller's role may read.
  #checkov:skip=CKV2_AWS_57:CleverTap issues the passcode in its dashboard; it cannot be rotated by a Lambda.
}

resource "aws_secretsmanager_secret" "relay" {
  for_each    = var.enable_webhook_relay ? var.webhook_relay_secret_names : toset([])
  name        = "${var.name_prefix}/relay/${each.key}"
  description = "Webhook relay secret ${each.key} (a route token or a destination URL such as a Slack incoming webhook)."
  tags        = local.tags

  recovery_window_in_days = var.secret_recovery_window_days

  #checkov:skip=CKV_AWS_149:The AWS managed key is enough for values only the relay's roles may read.
  #checkov:skip=CKV2_AWS_57:Route tokens are shared with CleverTap's webhook settings and Slack URLs are issued by Slack: rotated by hand on both sides.
}

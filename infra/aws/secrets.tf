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

locals {
  # Which relay function may read each relay secret: the endpoint its route tokens, the worker
  # its destinations' credentials. One resource for both, so that a name keeps its secret (and
  # value) when it moves between the two lists.
  relay_secret_readers = var.enable_webhook_relay ? merge(
    { for name in var.webhook_relay_route_secret_names : name => "endpoint" },
    { for name in var.webhook_relay_destination_secret_names : name => "worker" },
  ) : {}
  # Each relay function's own secrets, and only those, in its TAPLINE_RELAY_SECRET_ARNS and policy.
  relay_route_secret_arns       = { for name, secret in aws_secretsmanager_secret.relay : name => secret.arn if local.relay_secret_readers[name] == "endpoint" }
  relay_destination_secret_arns = { for name, secret in aws_secretsmanager_secret.relay : name => secret.arn if local.relay_secret_readers[name] == "worker" }
}

resource "aws_secretsmanager_secret" "relay" {
  for_each    = local.relay_secret_readers
  name        = "${var.name_prefix}/relay/${each.key}"
  description = each.value == "endpoint" ? "Webhook relay route secret ${each.key}, read by the endpoint only." : "Webhook relay destination secret ${each.key} (a URL, signing key or passcode), read by the worker only."
  tags        = local.tags

  lifecycle {
    precondition {
      condition     = length(setintersection(var.webhook_relay_route_secret_names, var.webhook_relay_destination_secret_names)) == 0
      error_message = "A relay secret is either a route secret (the endpoint reads it) or a destination secret (the worker reads it), not both: ${join(", ", setintersection(var.webhook_relay_route_secret_names, var.webhook_relay_destination_secret_names))}."
    }
  }

  recovery_window_in_days = var.secret_recovery_window_days

  #checkov:skip=CKV_AWS_149:The AWS managed key is enough for values only the relay's roles may read.
  #checkov:skip=CKV2_AWS_57:Route tokens are shared with CleverTap's webhook settings and Slack URLs are issued by Slack: rotated by hand on both sides.
}

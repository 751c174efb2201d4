# One log group per function, made before the function so Lambda never creates an unmanaged one
# with infinite retention, and so each role can be limited to its own group.

resource "aws_cloudwatch_log_group" "function" {
  for_each          = local.enabled_functions
  name              = "/aws/lambda/${local.function_names[each.key]}"
  retention_in_days = var.log_retention_days
  tags              = local.tags

  #checkov:skip=CKV_AWS_158:Logs carry no secrets or payload bodies at info level (STYLE.md); CloudWatch's own encryption is enough.
  #checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable (90 days by default); the warehouse ledger, not the logs, is the record of what was loaded.
}

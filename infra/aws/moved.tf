# State from before modules/lambda_function: each function's role, policy, log group and errors
# alarm were for_each instances keyed by function, and its Lambda a resource of its job's file;
# the same objects now live in the function's module call, nothing destroyed or recreated.

moved {
  from = aws_lambda_function.export_loader
  to   = module.export_loader.aws_lambda_function.this
}

moved {
  from = aws_iam_role.function["export_loader"]
  to   = module.export_loader.aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.function["export_loader"]
  to   = module.export_loader.aws_iam_role_policy.this
}

moved {
  from = aws_cloudwatch_log_group.function["export_loader"]
  to   = module.export_loader.aws_cloudwatch_log_group.this
}

moved {
  from = aws_cloudwatch_metric_alarm.function_errors["export_loader"]
  to   = module.export_loader.aws_cloudwatch_metric_alarm.errors[0]
}

moved {
  from = aws_lambda_function.api_puller[0]
  to   = module.api_puller[0].aws_lambda_function.this
}

moved {
  from = aws_iam_role.function["api_puller"]
  to   = module.api_puller[0].aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.function["api_puller"]
  to   = module.api_puller[0].aws_iam_role_policy.this
}

moved {
  from = aws_cloudwatch_log_group.function["api_puller"]
  to   = module.api_puller[0].aws_cloudwatch_log_group.this
}

moved {
  from = aws_cloudwatch_metric_alarm.function_errors["api_puller"]
  to   = module.api_puller[0].aws_cloudwatch_metric_alarm.errors[0]
}

moved {
  from = aws_lambda_function.webhook_relay[0]
  to   = module.webhook_relay[0].aws_lambda_function.this
}

moved {
  from = aws_iam_role.function["webhook_relay"]
  to   = module.webhook_relay[0].aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.function["webhook_relay"]
  to   = module.webhook_relay[0].aws_iam_role_policy.this
}

moved {
  from = aws_cloudwatch_log_group.function["webhook_relay"]
  to   = module.webhook_relay[0].aws_cloudwatch_log_group.this
}

moved {
  from = aws_cloudwatch_metric_alarm.function_errors["webhook_relay"]
  to   = module.webhook_relay[0].aws_cloudwatch_metric_alarm.errors[0]
}

moved {
  from = aws_lambda_function.webhook_relay_worker[0]
  to   = module.webhook_relay_worker[0].aws_lambda_function.this
}

moved {
  from = aws_iam_role.function["webhook_relay_worker"]
  to   = module.webhook_relay_worker[0].aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.function["webhook_relay_worker"]
  to   = module.webhook_relay_worker[0].aws_iam_role_policy.this
}

moved {
  from = aws_cloudwatch_log_group.function["webhook_relay_worker"]
  to   = module.webhook_relay_worker[0].aws_cloudwatch_log_group.this
}

moved {
  from = aws_cloudwatch_metric_alarm.function_errors["webhook_relay_worker"]
  to   = module.webhook_relay_worker[0].aws_cloudwatch_metric_alarm.errors[0]
}

# Alarms on what needs an operator: anything in a dead-letter queue (a file, webhook or scheduled
# run that kept failing) and any function error.

locals {
  dead_letter_queues = merge(
    {
      export_events = aws_sqs_queue.export_events_dlq.name
      schedules     = aws_sqs_queue.schedules_dlq.name
    },
    var.enable_webhook_relay ? { relay_delivery = aws_sqs_queue.relay_delivery_dlq[0].name } : {},
  )
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each            = var.enable_alarms ? local.dead_letter_queues : {}
  alarm_name          = "${each.value}-not-empty"
  alarm_description   = "Messages in ${each.value}: see the README's Operate section to inspect and redrive them."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each            = var.enable_alarms ? local.enabled_functions : toset([])
  alarm_name          = "${local.function_names[each.key]}-errors"
  alarm_description   = "${local.function_names[each.key]} failed (an error or a timeout): see its log group."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = local.function_names[each.key] }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

# Alarms on what needs an operator: anything in a dead-letter queue (a file, webhook or scheduled
# run that kept failing) and the relay endpoint refusing many requests. Each function's error
# alarm comes with it (modules/lambda_function).

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

# The relay endpoint's refused requests (401: bad or missing credentials, unknown route), from its
# structured log. The relay writes one "Webhook refused: not authorized." line per route and
# 10 s, with the refusals held back since its previous line in held_back; the two filters add up
# to every refusal (the lines, plus what they held back).
locals {
  relay_refused_pattern   = "{ $.message = \"Webhook refused: not authorized.\" }"
  relay_metrics_namespace = "Tapline/${var.name_prefix}"
  relay_refused_filters   = var.enable_webhook_relay ? { lines = "1", held_back = "$.held_back" } : {}
}

resource "aws_cloudwatch_log_metric_filter" "relay_refused" {
  for_each       = local.relay_refused_filters
  name           = "${local.function_names.webhook_relay}-refused-${each.key}"
  log_group_name = module.webhook_relay[0].log_group_name
  pattern        = local.relay_refused_pattern

  metric_transformation {
    namespace     = local.relay_metrics_namespace
    name          = "WebhookRelayRefusedRequests"
    value         = each.value
    default_value = "0"
    unit          = "Count"
  }
}

resource "aws_cloudwatch_metric_alarm" "relay_refused" {
  count               = var.enable_alarms && var.enable_webhook_relay ? 1 : 0
  alarm_name          = "${local.function_names.webhook_relay}-refused-requests"
  alarm_description   = "The relay endpoint refused more than ${var.webhook_relay_refused_alarm_threshold} requests (401) in 5 minutes: a sender with a wrong or old route secret, or someone trying secrets. Its log lines name the route and the caller's address."
  namespace           = local.relay_metrics_namespace
  metric_name         = "WebhookRelayRefusedRequests"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.webhook_relay_refused_alarm_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags

  depends_on = [aws_cloudwatch_log_metric_filter.relay_refused]
}

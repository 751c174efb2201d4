# Values derived from the inputs alone, no resource: kept apart so that the GCP reference check
# (tests/infra/check_references.py) evaluates them with terraform itself, without the Google
# provider, which cannot be installed offline.

locals {
  # The retry schedule in seconds. Pub/Sub waits at most 600 s between pushes and gives up after
  # at most 100, so the worker follows the schedule itself (shared/src/webhook_relay/queue/pubsub.rs): a push before a
  # retry is due is answered 503 (held), and a held push one short of max_delivery_attempts is
  # published again fresh. The subscription's settings follow from the schedule, never set
  # apart from it: pushes as often as the shortest wait, at most every 600 s (or the longest
  # wait when shorter), and enough of them that the longest wait (+10 % jitter) fits one
  # message at the maximum backoff, after the exponential ramp from the minimum, plus two.
  relay_retry_waits_secs = [
    for wait in var.webhook_relay_retry_schedule :
    tonumber(regex("^[0-9]+", wait)) * lookup({ s = 1, m = 60, h = 3600 }, regex("[smh]$", wait))
  ]
  relay_min_backoff_secs = min(600, max(1, min(local.relay_retry_waits_secs...)))
  relay_max_backoff_secs = min(600, max(local.relay_min_backoff_secs, max(local.relay_retry_waits_secs...)))
  relay_max_delivery_attempts = min(100, max(5,
    ceil(1.1 * max(local.relay_retry_waits_secs...) / local.relay_max_backoff_secs)
    + ceil(log(local.relay_max_backoff_secs / local.relay_min_backoff_secs, 2)) + 2
  ))

  # Whether a route has a warehouse destination (type = "warehouse" in the relay's TOML).
  relay_config_has_warehouse = length(regexall("type\\s*=\\s*[\"']warehouse[\"']", var.webhook_relay_config)) > 0

  # TAPLINE_HTTP_* of every Cloud Run service: only the limits the deployer set (the binaries'
  # defaults otherwise).
  http_env = {
    for name, value in {
      TAPLINE_HTTP_HEADER_TIMEOUT_SECS  = var.http_server_limits.header_timeout_secs
      TAPLINE_HTTP_REQUEST_TIMEOUT_SECS = var.http_server_limits.request_timeout_secs
      TAPLINE_HTTP_IDLE_TIMEOUT_SECS    = var.http_server_limits.idle_timeout_secs
      TAPLINE_HTTP_MAX_CONNECTIONS      = var.http_server_limits.max_connections
      TAPLINE_HTTP_SHUTDOWN_GRACE_SECS  = var.http_server_limits.shutdown_grace_secs
    } : name => tostring(value) if value != null
  }
}

variable "region" {
  type        = string
  description = "AWS region; CleverTap exports only to the region matching the account (eu1 → eu-west-1, in1 → ap-south-1, us1 → us-west-2, sg1 → ap-southeast-1, mec1 → me-central-1, aps3 → ap-southeast-3)."
  default     = "eu-west-1"
}

variable "aws_endpoint" {
  type        = string
  description = "Send every AWS call to this endpoint (a local moto server for the offline check). Null for AWS."
  default     = null
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name."
  default     = "tapline"
}

variable "export_bucket_name" {
  type        = string
  description = "Bucket CleverTap exports into (globally unique)."
}

variable "create_export_bucket" {
  type        = bool
  description = "Create the bucket (true) or use an existing one (false)."
  default     = true
}

variable "export_prefix" {
  type        = string
  description = "Folder CleverTap writes under (\"\" for the bucket root)."
  default     = "clevertap/"
}

variable "export_suffixes" {
  type        = list(string)
  description = "Object key suffixes that trigger a load (the module's default: text exports and Parquet)."
  default     = [".gz", ".gzip", ".parquet"]
}

variable "clevertap_region" {
  type        = string
  description = "CleverTap account region (eu1, in1, us1, sg1, mec1, aps3)."
  default     = "eu1"
}

variable "clevertap_account_id" {
  type        = string
  description = "CleverTap account id for the api-puller (not a secret)."
  default     = ""
}

variable "timezone" {
  type        = string
  description = "The CleverTap project's time zone (IANA)."
  default     = "UTC"
}

variable "warehouse_url" {
  type        = string
  description = "Warehouse URL without a password, e.g. postgres://tapline@db.example.com/analytics?schema=clevertap&sslmode=verify-full."
}

variable "lambda_zip_dir" {
  type        = string
  description = "Folder holding <function>/bootstrap.zip from cargo lambda build. Null: the repository's target/lambda-arm64."
  default     = null
}

variable "enable_api_puller" {
  type        = bool
  description = "Deploy the api-puller (needs its zip)."
  default     = true
}

variable "api_puller_events" {
  type        = list(string)
  description = "CleverTap events the daily pull fetches."
  default     = []
}

variable "api_puller_jobs" {
  type        = list(string)
  description = "What the daily pull runs: events, counts, campaigns, profiles, alerts."
  default     = ["events", "counts"]
}

variable "api_puller_report_uri" {
  type        = string
  description = "Where the report job puts the completeness page (s3://BUCKET/KEY.html; empty: no report)."
  default     = ""
}

variable "api_puller_alert_rules" {
  type        = string
  description = "The alerts job's rules (the JSON `tapline alerts --rules` reads)."
  default     = ""
}

variable "api_puller_alerts_relay_route" {
  type        = string
  description = "The relay route breaches are posted to (null: only stored in alert_runs)."
  default     = null
}

variable "api_puller_alerts_relay_token_secret_name" {
  type        = string
  description = "Which relay secret holds that route's token."
  default     = null
}

variable "enable_webhook_relay" {
  type        = bool
  description = "Deploy the webhook relay (needs the webhook-relay and webhook-relay-worker zips)."
  default     = true
}

variable "webhook_relay_config" {
  type        = string
  description = "The relay's TOML configuration (no secrets in it)."
  default     = ""
}

variable "webhook_relay_route_secret_names" {
  type        = set(string)
  description = "Relay route secrets to create empty (route tokens): only the endpoint reads them."
  default     = []
}

variable "webhook_relay_destination_secret_names" {
  type        = set(string)
  description = "Relay destination secrets to create empty (Slack URLs, signing keys, passcodes): only the worker reads them."
  default     = []
}

variable "webhook_relay_reserved_concurrency" {
  type        = number
  description = "The relay endpoint's concurrency cap (null: none)."
  default     = 100
}

variable "webhook_relay_refused_alarm_threshold" {
  type        = number
  description = "Refused (401) requests in 5 minutes before the relay's alarm fires."
  default     = 100
}

variable "export_loader_reserved_concurrency" {
  type        = number
  description = "Concurrency reserved for the export-loader (null: none)."
  default     = 10
}

variable "api_puller_reserved_concurrency" {
  type        = number
  description = "Concurrency reserved for the api-puller (null: none)."
  default     = 2
}

variable "enable_alarms" {
  type        = bool
  description = "Create CloudWatch alarms."
  default     = true
}

variable "alarm_actions" {
  type        = list(string)
  description = "ARNs (e.g. an SNS topic) notified by the alarms."
  default     = []
}

variable "restrict_dead_letter_sources" {
  type        = bool
  description = "SQS redrive allow policies on the dead-letter queues (off only for the moto check, which does not support them)."
  default     = true
}

variable "webhook_relay_retry_schedule" {
  type        = list(string)
  description = "The relay's retry schedule (waits after each failed attempt); the delivery queue's maxReceiveCount is derived from it. See the module's variable."
  default     = ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]
}

variable "sweep_window_days" {
  type        = number
  description = "Days of exports each scheduled sweep lists (0: every export). See the module's variable."
  default     = 7
}

variable "webhook_relay_invokes_loader_and_puller" {
  type        = bool
  description = "The export-status destination's cloud mode: the relay worker invokes the loader's sweep and the puller's reconcile job. Needs enable_api_puller, and a worker timeout above the loader's. See the module's variable."
  default     = false
}

variable "export_loader_timeout_seconds" {
  type        = number
  description = "export-loader timeout. See the module's variable."
  default     = 300
}

variable "webhook_relay_worker_timeout_seconds" {
  type        = number
  description = "webhook-relay-worker timeout; with webhook_relay_invokes_loader_and_puller it must exceed export_loader_timeout_seconds (the worker waits for the sweep). See the module's variable."
  default     = 60
}

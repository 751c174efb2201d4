variable "project_id" {
  type        = string
  description = "Google Cloud project."
}

variable "region" {
  type        = string
  description = "Region of the bucket and the services (e.g. europe-west1)."
  default     = "europe-west1"
}

variable "export_bucket_name" {
  type        = string
  description = "Bucket CleverTap exports into (globally unique)."
}

variable "export_prefix" {
  type        = string
  description = "Folder CleverTap writes under (\"\" for the bucket root)."
  default     = "clevertap/"
}

variable "bigquery_location" {
  type        = string
  description = "BigQuery dataset location (EU, US or a region)."
  default     = "EU"
}

variable "timezone" {
  type        = string
  description = "The CleverTap project's time zone (IANA)."
  default     = "UTC"
}

variable "clevertap_account_id" {
  type        = string
  description = "CleverTap account id for the api-puller (not a secret)."
  default     = ""
}

variable "clevertap_region" {
  type        = string
  description = "CleverTap account region (eu1, in1, us1, sg1, aps3, mec1, sk1)."
  default     = "eu1"
}

variable "api_puller_events" {
  type        = list(string)
  description = "CleverTap event names the api-puller pulls, e.g. [\"Charged\", \"App Launched\"]."
  default     = []
}

variable "api_puller_jobs" {
  type        = list(string)
  description = "What the daily pull runs: events, counts, campaigns, profiles, messages, alerts."
  default     = ["events", "counts"]
}

variable "api_puller_report_uri" {
  type        = string
  description = "Where the report job puts the completeness page (gs://BUCKET/KEY.html; empty: no report)."
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

variable "export_loader_image" {
  type        = string
  description = "export-loader container image."
}

variable "api_puller_image" {
  type        = string
  description = "api-puller container image (empty: not deployed)."
  default     = ""
}

variable "webhook_relay_image" {
  type        = string
  description = "webhook relay container image (empty: not deployed)."
  default     = ""
}

variable "webhook_relay_config" {
  type        = string
  description = "The relay's TOML configuration (no secrets in it)."
  default     = ""
}

variable "webhook_relay_route_secret_names" {
  type        = set(string)
  description = "Relay route tokens to create empty (each route's auth secret_env), e.g. [\"ALERTS_TOKEN\"]: readable by the public endpoint only."
  default     = []
}

variable "webhook_relay_destination_secret_names" {
  type        = set(string)
  description = "Relay destination secrets to create empty (Slack URLs, signing keys, CleverTap passcodes), e.g. [\"SLACK_ALERTS_URL\"]: readable by the delivery worker only."
  default     = []
}

variable "webhook_relay_retry_schedule" {
  type        = list(string)
  description = "The relay's retry schedule (waits after each failed attempt); the Pub/Sub subscription's settings are derived from it."
  default     = ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]
}

# Inputs. Secrets never come in here: the module makes empty Secret Manager secrets and the
# services read their values at start-up.

variable "project_id" {
  type        = string
  description = "Google Cloud project to deploy into."
}

variable "region" {
  type        = string
  description = "Region of the bucket, the Cloud Run services, Eventarc and Cloud Scheduler (a GCS region such as europe-west1; Eventarc needs the bucket in the trigger's region)."
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name (services, service accounts, topics, secrets, jobs)."
  default     = "tapline"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.name_prefix))
    error_message = "name_prefix: 2 to 15 characters (service account ids are short), lowercase letters, digits and dashes."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels."
  default     = {}
}

variable "enable_apis" {
  type        = bool
  description = "Enable the Google APIs the deployment uses (run, eventarc, pubsub, cloudscheduler, secretmanager, bigquery, storage). Off when the project's APIs are managed elsewhere."
  default     = true
}

# --- Export bucket ---------------------------------------------------------------------------

variable "export_bucket_name" {
  type        = string
  description = "Bucket CleverTap exports into (globally unique)."
}

variable "export_prefix" {
  type        = string
  description = "Folder CleverTap writes under (\"\" for the bucket root); the sweep covers it."
  default     = ""
}

variable "export_noncurrent_version_days" {
  type        = number
  description = "Days an overwritten export version is kept (versioning, not a retention policy: CleverTap's exports fail on a bucket with a retention policy)."
  default     = 30
}

# --- Services --------------------------------------------------------------------------------

variable "export_loader_image" {
  type        = string
  description = "Container image of the export-loader (Cloud Run), e.g. europe-west1-docker.pkg.dev/PROJECT/tapline/export-loader:TAG."
}

variable "api_puller_image" {
  type        = string
  description = "Container image of the api-puller. Empty: no api-puller and no pull schedule."
  default     = ""
}

variable "webhook_relay_image" {
  type        = string
  description = "Container image of the webhook relay (one image, two services: the endpoint and the Pub/Sub push worker, chosen by TAPLINE_RELAY_MODE). Empty: no relay."
  default     = ""
}

variable "timezone" {
  type        = string
  description = "TAPLINE_TIMEZONE: the CleverTap project's time zone (IANA)."
  default     = "UTC"
}

variable "max_reject_ratio" {
  type        = number
  description = "TAPLINE_MAX_REJECT_RATIO: quarantine a file above this share of bad rows."
  default     = 0.01
}

variable "column_types" {
  type        = string
  description = "TAPLINE_COLUMN_TYPES for the export-loader and the api-puller: column types pinned for the typed views, as the TOML text itself (docs/warehouses.md, Pinning column types), e.g. file(\"types.toml\"). Checked when a service starts: a bad file stops the start. Empty: not set, the pins stored in the warehouse stay."
  default     = ""
}

variable "log_level" {
  type        = string
  description = "TAPLINE_LOG for every service."
  default     = "info"
}

variable "export_loader_max_instances" {
  type        = number
  description = "Most export-loader instances at once (bounds concurrent warehouse loads)."
  default     = 5
}

variable "http_server_limits" {
  type = object({
    header_timeout_secs  = optional(number)
    request_timeout_secs = optional(number)
    idle_timeout_secs    = optional(number)
    max_connections      = optional(number)
    shutdown_grace_secs  = optional(number)
  })
  description = "The HTTP server limits of every Cloud Run service (export-loader, api-puller, the relay's endpoint and worker), as TAPLINE_HTTP_HEADER_TIMEOUT_SECS, _REQUEST_TIMEOUT_SECS, _IDLE_TIMEOUT_SECS, _MAX_CONNECTIONS and _SHUTDOWN_GRACE_SECS. Unset: the binaries' defaults (10 s for the request head, 30 s for the body, 10 s idle, 1024 connections, 8 s of grace after SIGTERM: Cloud Run kills 10 s after it)."
  default     = {}

  validation {
    condition = alltrue([
      for v in values(var.http_server_limits) : v == null ? true : (v >= 1 && floor(v) == v)
    ])
    error_message = "http_server_limits: each a whole number of at least 1."
  }
}

# --- Warehouse -------------------------------------------------------------------------------

variable "bigquery_dataset_id" {
  type        = string
  description = "BigQuery dataset the loaders write (one table per event)."
  default     = "clevertap"
}

variable "bigquery_bi_dataset_id" {
  type        = string
  description = "BigQuery dataset of the typed views for BI tools (one view per event table and all_events, numbers as numbers), passed to the loaders as bi_dataset. Default: bigquery_dataset_id + \"_bi\"."
  default     = null
  validation {
    condition     = var.bigquery_bi_dataset_id == null || can(regex("^[A-Za-z0-9_]{1,1024}$", var.bigquery_bi_dataset_id))
    error_message = "bigquery_bi_dataset_id: letters, digits and underscores only (BigQuery's dataset ID rule), at most 1,024."
  }
}

variable "webhook_relay_bigquery_dataset_id" {
  type        = string
  description = "BigQuery dataset of the relay's warehouse destinations (webhook_events), when warehouse_url is not set: the relay's worker may write only this dataset. Default: bigquery_dataset_id + \"_webhooks\"."
  default     = null
  validation {
    condition     = var.webhook_relay_bigquery_dataset_id == null || can(regex("^[A-Za-z0-9_]{1,1024}$", var.webhook_relay_bigquery_dataset_id))
    error_message = "webhook_relay_bigquery_dataset_id: letters, digits and underscores only (BigQuery's dataset ID rule), at most 1,024."
  }
}

variable "bigquery_location" {
  type        = string
  description = "BigQuery dataset location (EU, US, or a region); keep it with the bucket's."
  default     = "EU"
}

# --- CleverTap API and schedules -------------------------------------------------------------

variable "clevertap_account_id" {
  type        = string
  description = "CLEVERTAP_ACCOUNT_ID for the api-puller (not a secret)."
  default     = ""
}

variable "clevertap_region" {
  type        = string
  description = "CLEVERTAP_REGION for the api-puller (eu1, in1, us1, sg1, aps3, mec1, sk1)."
  default     = "eu1"
}

variable "api_puller_events" {
  type        = list(string)
  description = "TAPLINE_PULL_EVENTS: CleverTap event names the api-puller pulls (needed by the events, counts and profiles jobs)."
  default     = []
}

variable "api_puller_jobs" {
  type        = list(string)
  description = "TAPLINE_PULL_JOBS: what each scheduled pull runs: events, counts, campaigns, profiles, messages, alerts, reconcile, report (alerts and reconcile after the pulls, report last). Setting api_puller_report_uri adds report."
  default     = ["events", "counts"]

  validation {
    condition     = alltrue([for j in var.api_puller_jobs : contains(["events", "counts", "campaigns", "profiles", "messages", "alerts", "reconcile", "report"], j)])
    error_message = "api_puller_jobs: each of events, counts, campaigns, profiles, messages, alerts, reconcile, report."
  }
}

variable "api_puller_alert_rules" {
  type        = string
  description = "TAPLINE_ALERT_RULES: the alerts job's rules, the JSON array `tapline alerts --rules` reads, e.g. jsonencode([{ name = \"charged-drop\", event = \"Charged\", when = \"below_trailing_mean\", percent = 40, days = 7 }]). Required when api_puller_jobs includes alerts."
  default     = ""

  validation {
    condition     = var.api_puller_alert_rules == "" || can(tolist(jsondecode(var.api_puller_alert_rules)))
    error_message = "api_puller_alert_rules: a JSON array of rules (or empty)."
  }
}

variable "api_puller_alerts_relay_route" {
  type        = string
  description = "The webhook relay route the alerts job posts breaches to (<webhook relay URL>/hooks/<route>); the route's Slack destination delivers them with retries and dead letters. Null: breaches are only stored in alert_runs."
  default     = null
}

variable "api_puller_alerts_relay_token_secret_name" {
  type        = string
  description = "Which of webhook_relay_route_secret_names holds that route's token (the route's auth secret_env): the api-puller may then read that one secret, the same the relay checks."
  default     = null
}

variable "api_puller_alerts_relay_header" {
  type        = string
  description = "TAPLINE_ALERTS_RELAY_HEADER: the header that route's auth names."
  default     = "X-Tapline-Token"
}

variable "api_puller_lookback_days" {
  type        = number
  description = "TAPLINE_PULL_LOOKBACK_DAYS: days each pull covers, ending yesterday (more than 1 re-pulls late data)."
  default     = 3

  validation {
    condition     = var.api_puller_lookback_days >= 1 && var.api_puller_lookback_days <= 366
    error_message = "api_puller_lookback_days: 1 to 366."
  }
}

variable "api_puller_report_uri" {
  type        = string
  description = "TAPLINE_REPORT_URI: where the api-puller's report job puts the completeness page (`tapline report`'s HTML) after each run, gs://BUCKET/KEY.html in a bucket you own with uniform bucket-level access (the grant is conditioned on that one object). Set, it adds report to api_puller_jobs. Empty: no report."
  default     = ""

  validation {
    condition     = var.api_puller_report_uri == "" || can(regex("^gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]/[^*?]*[^/*?]$", var.api_puller_report_uri))
    error_message = "api_puller_report_uri: gs://BUCKET/KEY.html (one object, no wildcard), or empty."
  }
}

variable "schedule_timezone" {
  type        = string
  description = "Time zone of the Cloud Scheduler cron expressions."
  default     = "Etc/UTC"
}

variable "sweep_schedule" {
  type        = string
  description = "Cron (Cloud Scheduler) of the export sweep, which catches exports whose event was lost."
  default     = "15 */6 * * *"
}

variable "sweep_window_days" {
  type        = number
  description = "Days of exports (by the date in their names, before today UTC) each scheduled sweep lists for objects whose event was lost; 0 for every export under the prefix. A longer window catches older losses at the cost of listing more objects each run."
  default     = 7

  validation {
    condition     = var.sweep_window_days >= 0 && var.sweep_window_days <= 3650 && floor(var.sweep_window_days) == var.sweep_window_days
    error_message = "sweep_window_days: a whole number of days, 0 (every export) to 3650."
  }
}

variable "api_puller_schedule" {
  type        = string
  description = "Cron (Cloud Scheduler) of the daily API pull."
  default     = "30 3 * * *"
}

# --- Webhook relay ---------------------------------------------------------------------------

variable "webhook_relay_config" {
  type        = string
  description = "TAPLINE_RELAY_CONFIG_TOML: the relay's TOML configuration (no secrets in it)."
  default     = ""
}

variable "webhook_relay_route_secret_names" {
  type        = set(string)
  description = "Route secrets to create empty: the tokens the relay checks (each route's auth secret_env), e.g. [\"ALERTS_TOKEN\"]. Each becomes secret <name_prefix>-relay-<NAME>, readable by the public endpoint only (and by the api-puller for api_puller_alerts_relay_token_secret_name); the endpoint gets the map NAME → secret version in TAPLINE_RELAY_SECRET_ARNS. Replaces webhook_relay_secret_names, with webhook_relay_destination_secret_names."
  default     = []
}

variable "webhook_relay_destination_secret_names" {
  type        = set(string)
  description = "Destination secrets to create empty: Slack webhook URLs, signing keys, CleverTap passcodes (each destination's url_env, signing_secret_env, passcode_env), e.g. [\"SLACK_ALERTS_URL\"]. Each becomes secret <name_prefix>-relay-<NAME>, readable by the delivery worker only: the public endpoint never holds a destination's credentials. The worker gets the map NAME → secret version in TAPLINE_RELAY_SECRET_ARNS. No name may be in both lists."
  default     = []
}

variable "webhook_relay_retry_schedule" {
  type        = list(string)
  description = "The relay's default retry schedule: the waits after the 1st, 2nd, ... failed attempt (\"5s\", \"5m\", \"2h\"), so attempts = waits + 1. The default is Svix's (about 27.6 h; 24.8 h at least with the -10 % jitter). The worker gets it in TAPLINE_RELAY_RETRY_SCHEDULE and follows it itself (a failed delivery is published again, due later); the push subscription's retry policy (minimum and maximum backoff) and max_delivery_attempts are derived from it, never set apart from it. A route's own retry_schedule may not have more attempts. Each wait at most 10h, as on AWS."
  default     = ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]

  validation {
    condition = length(var.webhook_relay_retry_schedule) >= 1 && alltrue([
      for wait in var.webhook_relay_retry_schedule :
      can(regex("^[0-9]+[smh]$", wait)) && (can(regex("^[0-9]+[smh]$", wait)) ? tonumber(regex("^[0-9]+", wait)) * lookup({ s = 1, m = 60, h = 3600 }, regex("[smh]$", wait)) <= 36000 : false)
    ])
    error_message = "webhook_relay_retry_schedule: at least one wait, each like \"30s\", \"5m\" or \"2h\" and at most 10h."
  }
}

variable "webhook_relay_max_instances" {
  type        = number
  description = "Most instances of the relay's public endpoint at once: bounds what a flood of requests (authenticated or not) can cost. Each instance takes up to 80 requests at a time and publishes within 4 s, so the default 10 accepts hundreds of webhooks a second."
  default     = 10

  validation {
    condition     = var.webhook_relay_max_instances >= 1 && floor(var.webhook_relay_max_instances) == var.webhook_relay_max_instances
    error_message = "webhook_relay_max_instances: a whole number of at least 1."
  }
}

# --- Replaced webhook relay inputs: set, they stop the plan with what to use instead ----------

variable "webhook_relay_secret_names" {
  type        = set(string)
  description = "Deprecated: replaced by webhook_relay_route_secret_names (readable by the endpoint only) and webhook_relay_destination_secret_names (readable by the worker only). The secrets keep their names (<name_prefix>-relay-<NAME>)."
  default     = null

  validation {
    condition     = var.webhook_relay_secret_names == null
    error_message = "webhook_relay_secret_names is replaced: list route tokens in webhook_relay_route_secret_names and Slack URLs, signing keys and passcodes in webhook_relay_destination_secret_names (the secrets keep their names)."
  }
}

variable "webhook_relay_max_delivery_attempts" {
  type        = number
  description = "Deprecated: the push subscription's max_delivery_attempts is derived from webhook_relay_retry_schedule."
  default     = null

  validation {
    condition     = var.webhook_relay_max_delivery_attempts == null
    error_message = "webhook_relay_max_delivery_attempts is replaced: the subscription's retry policy and max_delivery_attempts are derived from webhook_relay_retry_schedule."
  }
}

variable "warehouse_url" {
  type        = string
  description = "TAPLINE_WAREHOUSE for the loaders. Null: the module's BigQuery dataset, bigquery://PROJECT/DATASET (credentials are the service's own identity)."
  default     = null
}

variable "warehouse_password_secret" {
  type        = bool
  description = "Create a Secret Manager secret for the warehouse password (a postgres:// warehouse_url without one) and give it to the export loader as TAPLINE_WAREHOUSE_PASSWORD. Not needed for BigQuery."
  default     = false
}

variable "webhook_relay_worker_image" {
  type        = string
  description = "Container image of the relay's delivery worker (Pub/Sub push). Empty: the webhook_relay_image."
  default     = ""
}

variable "webhook_relay_invokes_loader_and_puller" {
  type        = bool
  description = "The cloud mode of the relay's export-status destination: the relay worker's identity gets run.invoker on exactly the export loader and the API puller services, and their URLs as TAPLINE_EXPORT_LOADER_TARGET and TAPLINE_API_PULLER_TARGET (for the destination's loader_env and puller_env). Both services are internal-only: needs webhook_relay_worker_subnetwork."
  default     = false
}

variable "webhook_relay_worker_subnetwork" {
  type        = string
  description = "With webhook_relay_invokes_loader_and_puller: the subnetwork the relay worker's traffic leaves through (Direct VPC egress), so that the internal-only loader and puller accept its calls. The subnetwork needs Private Google Access (Pub/Sub, Cloud Storage, Secret Manager)."
  default     = null
}


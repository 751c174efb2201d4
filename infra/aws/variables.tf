# Inputs. Secrets never come in here: the module makes empty Secrets Manager entries (or takes an
# existing secret's ARN) and the functions read their values at cold start.

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name (functions, queues, roles, secrets, schedules)."
  default     = "tapline"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name_prefix))
    error_message = "name_prefix: 2 to 31 characters, lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource that takes tags."
  default     = {}
}

# --- Export bucket ---------------------------------------------------------------------------

variable "create_export_bucket" {
  type        = bool
  description = "Create the export bucket (true) or use an existing bucket named export_bucket_name (false). An existing bucket keeps its own policy: merge the clevertap_bucket_policy_json output into it."
  default     = true
}

variable "export_bucket_name" {
  type        = string
  description = "Name of the bucket CleverTap exports into (created, or existing when create_export_bucket is false). Globally unique."
}

variable "export_prefix" {
  type        = string
  description = "Key prefix CleverTap writes under (the folder set in CleverTap's export settings), e.g. \"clevertap/\". Empty for the whole bucket. Notifications, the sweep and every IAM grant are limited to it."
  default     = ""

  validation {
    condition     = var.export_prefix == "" || (endswith(var.export_prefix, "/") && !startswith(var.export_prefix, "/"))
    error_message = "export_prefix: empty, or a folder ending in \"/\" without a leading \"/\"."
  }
}

variable "export_suffixes" {
  type        = list(string)
  description = "Object key suffixes that trigger a load (one S3 notification filter each). CleverTap text exports end in .gz; Parquet in .parquet, .parquet.gz or (legacy) .parquet.gzip. S3 refuses two filters where one suffix ends the other."
  default     = [".gz", ".gzip", ".parquet"]

  validation {
    condition     = length(var.export_suffixes) > 0 && alltrue([for a in var.export_suffixes : alltrue([for b in var.export_suffixes : a == b || !endswith(a, b)])])
    error_message = "export_suffixes: at least one, and none may end another (S3 refuses overlapping notification filters): e.g. [\".gz\", \".gzip\", \".parquet\"], not [\".gz\", \".csv.gz\"]."
  }
}

variable "export_noncurrent_version_days" {
  type        = number
  description = "Days an overwritten export version is kept before S3 deletes it (the ledger records which version was loaded)."
  default     = 30
}

variable "clevertap_region" {
  type        = string
  description = "CleverTap account region (eu1, in1, us1, sg1, mec1, aps3). CleverTap exports only to a bucket in the matching AWS region; a mismatch is reported as a warning."
  default     = "eu1"
}

variable "clevertap_aws_account_id" {
  type        = string
  description = "AWS account CleverTap writes exports from (its documented exporter account)."
  default     = "062484260092"
}

variable "clevertap_put_actions" {
  type        = list(string)
  description = "Actions the bucket policy grants CleverTap on export objects. CleverTap documents s3:PutObject*; an export needs the object write and, when it sends one, its ACL."
  default     = ["s3:PutObject", "s3:PutObjectAcl"]
}

# --- Export queue ----------------------------------------------------------------------------

variable "export_queue_max_receive_count" {
  type        = number
  description = "Deliveries of one export notification before it moves to the dead-letter queue."
  default     = 5
}

variable "export_loader_batch_size" {
  type        = number
  description = "SQS messages per export-loader invocation (each names one object)."
  default     = 10

  validation {
    # Above 10, SQS mappings need a batching window, which would only delay loads.
    condition     = var.export_loader_batch_size >= 1 && var.export_loader_batch_size <= 10
    error_message = "export_loader_batch_size: 1 to 10."
  }
}

variable "export_loader_reserved_concurrency" {
  type        = number
  description = "Reserved concurrency of the export-loader: it always has this much, whatever else runs in the account (a flood of the relay's public URL cannot throttle it), and never more. At least export_loader_max_concurrency (the SQS mapping's cap), with room for the sweep. Null: none reserved (accounts whose concurrency limit leaves no room to reserve)."
  default     = 10

  validation {
    condition     = var.export_loader_reserved_concurrency == null ? true : var.export_loader_reserved_concurrency >= 1 && var.export_loader_reserved_concurrency <= 1000
    error_message = "export_loader_reserved_concurrency: 1 to 1000, or null."
  }
}

variable "export_loader_max_concurrency" {
  type        = number
  description = "Most export-loader invocations the SQS mapping runs at once (2 to 1000): keeps the warehouse's connection count bounded."
  default     = 5

  validation {
    condition     = var.export_loader_max_concurrency >= 2 && var.export_loader_max_concurrency <= 1000
    error_message = "export_loader_max_concurrency: 2 to 1000 (the SQS event source limits)."
  }
}

variable "restrict_dead_letter_sources" {
  type        = bool
  description = "Allow only each dead-letter queue's own source queue to redrive into it (SQS redrive allow policy). The offline moto check turns it off: moto does not store the policy."
  default     = true
}

variable "dead_letter_retention_seconds" {
  type        = number
  description = "How long dead-letter queues keep a message (SQS maximum: 14 days)."
  default     = 1209600
}

# --- Functions -------------------------------------------------------------------------------

variable "export_loader_zip_path" {
  type        = string
  description = "export-loader zip from `make package` (cargo lambda build --arm64 --output-format zip), relative to Terraform's working directory or absolute."
  default     = "target/lambda-arm64/export-loader/bootstrap.zip"
}

variable "api_puller_zip_path" {
  type        = string
  description = "api-puller zip (cargo lambda build --arm64 --output-format zip)."
  default     = "target/lambda-arm64/api-puller/bootstrap.zip"
}

variable "webhook_relay_zip_path" {
  type        = string
  description = "webhook-relay zip (the HTTP endpoint behind the function URL)."
  default     = "target/lambda-arm64/webhook-relay/bootstrap.zip"
}

variable "webhook_relay_worker_zip_path" {
  type        = string
  description = "webhook-relay-worker zip (the delivery worker fed by the relay's SQS queue)."
  default     = "target/lambda-arm64/webhook-relay-worker/bootstrap.zip"
}

variable "enable_api_puller" {
  type        = bool
  description = "Deploy the api-puller function and its daily schedule."
  default     = true
}

variable "enable_webhook_relay" {
  type        = bool
  description = "Deploy the webhook relay (function URL, delivery queue, worker)."
  default     = true
}

variable "export_loader_timeout_seconds" {
  type        = number
  description = "export-loader timeout; the export queue's visibility timeout is six times this, as AWS advises for SQS event sources."
  default     = 300

  validation {
    condition     = var.export_loader_timeout_seconds >= 1 && var.export_loader_timeout_seconds <= 900
    error_message = "export_loader_timeout_seconds: 1 to 900 (the Lambda maximum)."
  }
}

variable "export_loader_memory_mb" {
  type        = number
  description = "export-loader memory (CPU scales with it; loading streams, so memory use does not grow with file size)."
  default     = 512
}

variable "api_puller_timeout_seconds" {
  type        = number
  description = "api-puller timeout (the Lambda maximum is 900)."
  default     = 900
}

variable "api_puller_events" {
  type        = list(string)
  description = "TAPLINE_PULL_EVENTS: CleverTap event names the daily pull fetches (events, counts, profiles), e.g. [\"Charged\", \"App Launched\"]."
  default     = []
}

variable "api_puller_jobs" {
  type        = list(string)
  description = "TAPLINE_PULL_JOBS: what the daily pull runs, in order: events, counts, campaigns, profiles, messages, alerts, reconcile, report (alerts and reconcile run after the pulls, on the counts; report last). Setting api_puller_report_uri adds report."
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
  description = "The webhook relay route the alerts job posts breaches to (<webhook_relay_url>hooks/<route>); the route's Slack destination delivers them with retries and dead letters. Null: breaches are only stored in alert_runs."
  default     = null
}

variable "api_puller_alerts_relay_token_secret_name" {
  type        = string
  description = "Which of webhook_relay_route_secret_names holds that route's token (the route's auth secret_env): the api-puller reads the same secret the relay checks, and sends it in X-Tapline-Token."
  default     = null
}

variable "api_puller_alerts_relay_header" {
  type        = string
  description = "TAPLINE_ALERTS_RELAY_HEADER: the header that route's auth names."
  default     = "X-Tapline-Token"
}

variable "api_puller_reserved_concurrency" {
  type        = number
  description = "Reserved concurrency of the api-puller: its daily run is never throttled by other functions (a flood of the relay's public URL), and two runs at most overlap. Null: none reserved (accounts whose concurrency limit leaves no room to reserve)."
  default     = 2

  validation {
    condition     = var.api_puller_reserved_concurrency == null ? true : var.api_puller_reserved_concurrency >= 1 && var.api_puller_reserved_concurrency <= 1000
    error_message = "api_puller_reserved_concurrency: 1 to 1000, or null."
  }
}

variable "api_puller_lookback_days" {
  type        = number
  description = "TAPLINE_PULL_LOOKBACK_DAYS: days pulled, ending yesterday in the project time zone (3 re-pulls the two days before, for late data)."
  default     = 3

  validation {
    condition     = var.api_puller_lookback_days >= 1 && var.api_puller_lookback_days <= 366
    error_message = "api_puller_lookback_days: 1 to 366."
  }
}

variable "api_puller_report_uri" {
  type        = string
  description = "TAPLINE_REPORT_URI: where the api-puller's report job puts the completeness page (`tapline report`'s HTML) after each run, s3://BUCKET/KEY.html in a bucket you own; the function may put that one object only (its bucket's default encryption applies: an SSE-KMS key must let the function use it). Set, it adds report to api_puller_jobs. Empty: no report."
  default     = ""

  validation {
    condition     = var.api_puller_report_uri == "" || can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^*?]*[^/*?]$", var.api_puller_report_uri))
    error_message = "api_puller_report_uri: s3://BUCKET/KEY.html (one object, no wildcard), or empty."
  }
}

variable "webhook_relay_timeout_seconds" {
  type        = number
  description = "webhook-relay timeout: CleverTap gives up after 3 to 5 s, so the endpoint must answer well within that."
  default     = 10
}

variable "webhook_relay_worker_timeout_seconds" {
  type        = number
  description = "webhook-relay-worker timeout; the delivery queue's visibility timeout is six times this."
  default     = 60
}

variable "log_level" {
  type        = string
  description = "TAPLINE_LOG for every function (a tracing filter such as info or tapline=debug)."
  default     = "info"
}

variable "tracing_mode" {
  type        = string
  description = "Lambda X-Ray tracing mode: PassThrough (no cost, keeps upstream trace headers) or Active."
  default     = "PassThrough"

  validation {
    condition     = contains(["PassThrough", "Active"], var.tracing_mode)
    error_message = "tracing_mode: PassThrough or Active."
  }
}

variable "log_retention_days" {
  type        = number
  description = "CloudWatch Logs retention for every function's log group."
  default     = 90
}

# --- Warehouse and CleverTap API -------------------------------------------------------------

variable "warehouse_url" {
  type        = string
  description = "TAPLINE_WAREHOUSE without its password, e.g. postgres://tapline@db.example.com/analytics?schema=clevertap&sslmode=verify-full. The password is the warehouse secret's value."
}

variable "warehouse_secret_arn" {
  type        = string
  description = "ARN of an existing secret holding the warehouse password (e.g. an RDS-managed secret). Null: the module creates an empty one to fill in."
  default     = null
}

variable "secret_recovery_window_days" {
  type        = number
  description = "Days a destroyed secret can be restored (0 deletes at once; 7 to 30 otherwise). A secret's name cannot be reused while it waits."
  default     = 30

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days: 0, or 7 to 30."
  }
}

variable "timezone" {
  type        = string
  description = "TAPLINE_TIMEZONE: the CleverTap project's time zone (IANA); export timestamps are local times in it."
  default     = "UTC"
}

variable "max_reject_ratio" {
  type        = number
  description = "TAPLINE_MAX_REJECT_RATIO: quarantine a file above this share of bad rows."
  default     = 0.01
}

variable "column_types" {
  type        = string
  description = "TAPLINE_COLUMN_TYPES for the export-loader and the api-puller: column types pinned for the typed views, as the TOML text itself (docs/warehouses.md, Pinning column types), e.g. file(\"types.toml\"). Checked when a function starts: a bad file stops the start. Lambda holds 4 KB of environment in all. Empty: not set, the pins stored in the warehouse stay."
  default     = ""
}

variable "clevertap_account_id" {
  type        = string
  description = "CLEVERTAP_ACCOUNT_ID for the api-puller (not a secret). Empty when the api-puller is off."
  default     = ""
}

# --- Schedules -------------------------------------------------------------------------------

variable "schedule_timezone" {
  type        = string
  description = "Time zone the schedule expressions are read in."
  default     = "UTC"
}

variable "sweep_schedule" {
  type        = string
  description = "When the export-loader sweeps the export prefix for objects whose notification was lost (EventBridge Scheduler expression)."
  default     = "rate(6 hours)"
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
  description = "When the api-puller runs (EventBridge Scheduler expression); daily by default, after CleverTap's day has closed."
  default     = "cron(30 3 * * ? *)"
}

variable "schedule_max_retry_attempts" {
  type        = number
  description = "Scheduler retries of a failed invocation before it goes to the schedules' dead-letter queue."
  default     = 3
}

# --- Webhook relay ---------------------------------------------------------------------------

variable "webhook_relay_config" {
  type        = string
  description = "TAPLINE_RELAY_CONFIG_TOML: the relay's TOML configuration (routes, destinations). Secrets are named in it, never written: see webhook_relay_route_secret_names and webhook_relay_destination_secret_names."
  default     = ""
}

variable "webhook_relay_route_secret_names" {
  type        = set(string)
  description = "The relay's route secrets (each route's auth secret_env or password_env), e.g. [\"ALERTS_TOKEN\"]. Each becomes an empty secret <name_prefix>/relay/<NAME> that only the public endpoint (webhook-relay) may read, through its TAPLINE_RELAY_SECRET_ARNS (JSON map NAME → ARN)."
  default     = []

  validation {
    condition     = alltrue([for name in var.webhook_relay_route_secret_names : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", name))])
    error_message = "webhook_relay_route_secret_names: environment variable names as the TOML names them (letters, digits, _)."
  }
}

variable "webhook_relay_destination_secret_names" {
  type        = set(string)
  description = "The relay's destination secrets (url_env, signing_secret_env, account_id_env, passcode_env of its destinations), e.g. [\"SLACK_ALERTS_URL\"]. Each becomes an empty secret <name_prefix>/relay/<NAME> that only the delivery worker (webhook-relay-worker) may read, through its TAPLINE_RELAY_SECRET_ARNS: the public endpoint never holds a destination's credentials."
  default     = []

  validation {
    condition     = alltrue([for name in var.webhook_relay_destination_secret_names : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", name))])
    error_message = "webhook_relay_destination_secret_names: environment variable names as the TOML names them (letters, digits, _)."
  }
}

variable "webhook_relay_reserved_concurrency" {
  type        = number
  description = "Reserved concurrency of the public endpoint (webhook-relay): its cap, so that a flood of requests on the function URL (authenticated or not) cannot take the account's unreserved concurrency from the other functions; past it the URL answers 429 and CleverTap retries. Null: no cap (accounts whose concurrency limit leaves no room to reserve)."
  default     = 100

  validation {
    condition     = var.webhook_relay_reserved_concurrency == null ? true : var.webhook_relay_reserved_concurrency >= 1 && var.webhook_relay_reserved_concurrency <= 1000
    error_message = "webhook_relay_reserved_concurrency: 1 to 1000, or null."
  }
}

variable "webhook_relay_refused_alarm_threshold" {
  type        = number
  description = "Requests the relay endpoint may refuse 401 (bad or missing credentials, unknown route) in 5 minutes before the refused-requests alarm fires: a leaked or mistyped route secret, or someone trying secrets."
  default     = 100

  validation {
    condition     = var.webhook_relay_refused_alarm_threshold >= 1
    error_message = "webhook_relay_refused_alarm_threshold: at least 1."
  }
}

variable "webhook_relay_retry_schedule" {
  type        = list(string)
  description = "The relay's default retry schedule: the waits after the 1st, 2nd, ... failed attempt (\"5s\", \"5m\", \"2h\"), so attempts = waits + 1. The default is Svix's (about 27.6 h; 24.8 h at least with the -10 % jitter). The functions get it in TAPLINE_RELAY_RETRY_SCHEDULE, and the delivery queue's maxReceiveCount is derived from it (attempts); a route's own retry_schedule may not have more attempts. Each wait at most 10h: with +10 % jitter it stays under SQS's 12 h visibility limit."
  default     = ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]

  validation {
    condition = length(var.webhook_relay_retry_schedule) >= 1 && alltrue([
      for wait in var.webhook_relay_retry_schedule :
      can(regex("^[0-9]+[smh]$", wait)) && (can(regex("^[0-9]+[smh]$", wait)) ? tonumber(regex("^[0-9]+", wait)) * lookup({ s = 1, m = 60, h = 3600 }, regex("[smh]$", wait)) <= 36000 : false)
    ])
    error_message = "webhook_relay_retry_schedule: at least one wait, each like \"30s\", \"5m\" or \"2h\" and at most 10h."
  }
}

# --- Alarms ----------------------------------------------------------------------------------

variable "enable_alarms" {
  type        = bool
  description = "Create CloudWatch alarms (dead-letter queue depth, function errors, the relay endpoint's refused requests)."
  default     = true
}

variable "alarm_actions" {
  type        = list(string)
  description = "ARNs notified when an alarm fires or clears (e.g. an SNS topic)."
  default     = []
}

variable "webhook_relay_invokes_loader_and_puller" {
  type        = bool
  description = "The cloud mode of the relay's export-status destination: the relay worker may invoke exactly the export loader (its sweep) and the API puller (its reconcile job), and gets their targets as TAPLINE_EXPORT_LOADER_TARGET and TAPLINE_API_PULLER_TARGET (lambda:NAME) for the destination's loader_env and puller_env. Needs the API puller; the worker waits for the sweep, so its timeout must exceed the loader's."
  default     = false
}


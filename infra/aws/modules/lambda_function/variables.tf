variable "name" {
  type        = string
  description = "Function name; also the role's name and the log group's (/aws/lambda/<name>)."
}

variable "description" {
  type        = string
  description = "The function's description."
}

variable "role_description" {
  type        = string
  description = "The role's description."
}

variable "account_id" {
  type        = string
  description = "This account's id: only Lambda acting for it may assume the role."
}

variable "zip_path" {
  type        = string
  description = "The function's bootstrap.zip (cargo lambda build --arm64 --output-format zip)."
}

variable "timeout_seconds" {
  type        = number
  description = "Function timeout."
}

variable "memory_mb" {
  type        = number
  description = "Function memory (CPU scales with it)."
}

variable "reserved_concurrency" {
  type        = number
  description = "Reserved concurrency: the function's own share of the account's, and its cap. Null: none reserved."
  default     = null
}

variable "environment" {
  type        = map(string)
  description = "Environment variables (secrets' ARNs, never their values)."
}

variable "policy_json" {
  type        = string
  description = "IAM policy document (JSON) of what the function may touch besides its own log group, which the module grants (Sid WriteOwnLogs)."
}

variable "preconditions" {
  type = list(object({
    condition     = bool
    error_message = string
  }))
  description = "Checks on the caller's inputs, made on the function at plan time; a failed one stops the plan with its message."
  default     = []
}

variable "tracing_mode" {
  type        = string
  description = "X-Ray tracing mode: PassThrough or Active."
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the function's log group."
}

variable "enable_alarms" {
  type        = bool
  description = "Make the alarm on the function's Errors (any error or timeout in 5 minutes)."
}

variable "alarm_actions" {
  type        = list(string)
  description = "ARNs notified when the alarm fires and when it clears."
}

variable "tags" {
  type        = map(string)
  description = "Tags of the role, log group, function and alarm."
  default     = {}
}

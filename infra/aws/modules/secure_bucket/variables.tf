variable "name" {
  type        = string
  description = "Bucket name (globally unique)."
}

variable "tags" {
  type        = map(string)
  description = "Tags of the bucket."
  default     = {}
}

variable "versioning" {
  type        = bool
  description = "Turn versioning on (true), or leave the bucket unversioned with no versioning configuration at all (false)."
}

variable "lifecycle_rules" {
  type = list(object({
    id = string
    # Key prefix the rule applies to; null for the whole bucket (an empty filter).
    prefix = optional(string)
    # Days after which current objects expire.
    expiration_days = optional(number)
    # Days after which noncurrent versions (versioned buckets) expire.
    noncurrent_days = optional(number)
    # Days after which an unfinished multipart upload is aborted.
    abort_incomplete_multipart_upload_days = optional(number)
  }))
  description = "Lifecycle rules (all enabled), in order, before the abandoned-uploads rule the module always adds."
  default     = []
}

variable "abort_incomplete_multipart_upload_days" {
  type        = number
  description = "Days after which an unfinished multipart upload is aborted (rule abandoned-uploads, whole bucket): until then its parts are billed."
}

variable "policy_documents" {
  type        = list(string)
  description = "IAM policy documents (JSON) merged into the bucket policy, before the module's DenyInsecureTransport statement (which replaces a statement of that Sid)."
  default     = []
}

variable "project_id" {
  type        = string
  description = "Google Cloud project."
}

variable "region" {
  type        = string
  description = "Region of the service."
}

variable "name" {
  type        = string
  description = "Service name."
}

variable "service_account_id" {
  type        = string
  description = "The account id (before the @) of the service's own service account."
}

variable "service_account_display_name" {
  type        = string
  description = "What the service account is for, as the console shows it."
}

variable "ingress" {
  type        = string
  description = "INGRESS_TRAFFIC_INTERNAL_ONLY (Google's event and scheduling services, the VPC) or INGRESS_TRAFFIC_ALL (public)."
}

variable "labels" {
  type        = map(string)
  description = "Labels of the service."
  default     = {}
}

variable "image" {
  type        = string
  description = "Container image (Artifact Registry)."
}

variable "memory" {
  type        = string
  description = "Memory limit of the container, e.g. 512Mi."
}

variable "timeout" {
  type        = string
  description = "Request timeout, e.g. 900s."
}

variable "max_instance_count" {
  type        = number
  description = "Most instances at once."
}

variable "max_instance_request_concurrency" {
  type        = number
  description = "Most requests per instance at once. Null: Cloud Run's default."
  default     = null
}

variable "env" {
  type = list(object({
    name = string
    # The value, or null with secret set.
    value = optional(string)
    # A Secret Manager secret (its id) whose latest version Cloud Run sets as the value.
    secret = optional(string)
  }))
  description = "Environment variables, in order: values (secrets' resource names, never their values) or secrets Cloud Run reads at start."
  default     = []
}

variable "invokers" {
  type        = map(string)
  description = "Members granted roles/run.invoker on the service, by a key known at plan time."
  default     = {}
}

variable "preconditions" {
  type = list(object({
    condition     = bool
    error_message = string
  }))
  description = "Checks on the caller's inputs, made on the service at plan time; a failed one stops the plan with its message."
  default     = []
}

variable "start_after" {
  type        = any
  description = "Resources the service (its revisions) must wait for, such as the secret accessor bindings it reads at start: a dependency only, the value is not used."
  default     = []
}

variable "vpc_egress_subnetwork" {
  type        = string
  description = "A subnetwork (its id or name) all the service's outbound traffic leaves through (Direct VPC egress): what calling another service with internal-only ingress needs. Null: no VPC egress."
  default     = null
}

output "id" {
  description = "The bucket's id (its name)."
  value       = aws_s3_bucket.this.id
}

output "bucket" {
  description = "The bucket's name, known at plan time."
  value       = aws_s3_bucket.this.bucket
}

output "arn" {
  description = "The bucket's ARN."
  value       = aws_s3_bucket.this.arn
}

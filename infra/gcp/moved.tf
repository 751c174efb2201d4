# State from before modules/cloud_run_service: each service, its service account and its
# run.invoker bindings were resources of its job's file (and main.tf); the same objects now live
# in the service's module call, nothing destroyed or recreated.

moved {
  from = google_service_account.export_loader
  to   = module.export_loader.google_service_account.this
}

moved {
  from = google_cloud_run_v2_service.export_loader
  to   = module.export_loader.google_cloud_run_v2_service.this
}

moved {
  from = google_cloud_run_v2_service_iam_member.export_loader_invokers["eventarc"]
  to   = module.export_loader.google_cloud_run_v2_service_iam_member.invokers["eventarc"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.export_loader_invokers["scheduler"]
  to   = module.export_loader.google_cloud_run_v2_service_iam_member.invokers["scheduler"]
}

moved {
  from = google_service_account.api_puller[0]
  to   = module.api_puller[0].google_service_account.this
}

moved {
  from = google_cloud_run_v2_service.api_puller[0]
  to   = module.api_puller[0].google_cloud_run_v2_service.this
}

moved {
  from = google_cloud_run_v2_service_iam_member.api_puller_scheduler[0]
  to   = module.api_puller[0].google_cloud_run_v2_service_iam_member.invokers["scheduler"]
}

moved {
  from = google_service_account.webhook_relay[0]
  to   = module.webhook_relay[0].google_service_account.this
}

moved {
  from = google_cloud_run_v2_service.webhook_relay[0]
  to   = module.webhook_relay[0].google_cloud_run_v2_service.this
}

moved {
  from = google_cloud_run_v2_service_iam_member.webhook_relay_public[0]
  to   = module.webhook_relay[0].google_cloud_run_v2_service_iam_member.invokers["public"]
}

moved {
  from = google_service_account.webhook_relay_worker[0]
  to   = module.webhook_relay_worker[0].google_service_account.this
}

moved {
  from = google_cloud_run_v2_service.webhook_relay_worker[0]
  to   = module.webhook_relay_worker[0].google_cloud_run_v2_service.this
}

moved {
  from = google_cloud_run_v2_service_iam_member.webhook_relay_worker_push[0]
  to   = module.webhook_relay_worker[0].google_cloud_run_v2_service_iam_member.invokers["relay_push"]
}

"""Outbound webhooks: a workspace registers URLs; events (job.succeeded, ...) are delivered
signed per Standard Webhooks, retried with backoff, one record per attempt."""

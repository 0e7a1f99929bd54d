"""Outgoing mail: one sender interface (log or SMTP), sent off the request path."""

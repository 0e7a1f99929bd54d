"""Inbound webhooks: every callback verified, stored once, then handled (any source plugs in)."""

"""Webhook gateway: verify, store and dispatch provider webhooks."""

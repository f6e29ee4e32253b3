"""Outbound webhooks (httpx)."""

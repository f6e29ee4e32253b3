"""Tenants and credentials: API keys (namespace + scopes) and consumer portal tokens."""

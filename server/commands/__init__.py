"""The `tally` CLI's client commands (meters, events): thin wrappers over the Python SDK."""

"""Customers (who usage is attributed to) and the deprecated subjects."""

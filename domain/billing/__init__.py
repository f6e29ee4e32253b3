"""Billing: apps (who invoices and collects), billing profiles and customer overrides, and the
invoice lifecycle (`invoice_states`). Invoices themselves build on these."""

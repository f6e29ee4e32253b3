"""Subscriptions: plans applied to customers over time (phases, items, edits, cancels, changes).

`timeline` and `edits` are pure (spec in, spec or billable items out); `service` stores specs,
keeps one active subscription per customer (a database constraint decides), and reconciles the
entitlements a subscription manages.
"""

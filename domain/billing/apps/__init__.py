"""Apps: the systems that calculate tax, invoice customers and collect payments for Tally.

Every app type implements one port (`port.InvoicingApp`); the marketplace (`registry`) lists the
types and installs them. The sandbox and custom invoicing apps need no external system, so they
live here as pure code; an app that talks to a provider (Stripe) is an adapter implementing the
same port.
"""

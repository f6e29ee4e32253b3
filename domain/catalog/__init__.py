"""The product catalog: features, and what they cost.

- `models.py` / `service.py`: features (what entitlements grant access to).
- `prices.py`: prices (flat, unit, tiered volume/graduated, package, dynamic), commitments, discounts.
- `ratecards.py`: rate cards (flat_fee, usage_based), entitlement templates, tax config.
- `versions.py`: what a plan and an add-on share as versions of a catalog entry (the REST view).
- `plans.py`, `addons.py`: versioned plans with phases, add-ons, plan add-ons; their inputs read
  OpenMeter's JSON with field-path problems (`phases[0].rateCards[1].price.tiers[2].upToAmount`).
- `durations.py`: ISO 8601 durations (cadences) and their alignment; `currencies.py`: ISO 4217 and
  the one rounding function.
- `rating.py`: the rating engine (quantities and periods in, invoice line amounts out).
"""

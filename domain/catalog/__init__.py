"""The product catalog: features (what entitlements grant access to). Plans and add-ons come later."""

"""fleetdeck collectors package."""

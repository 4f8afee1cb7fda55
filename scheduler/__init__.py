"""fleetdeck scheduler package."""

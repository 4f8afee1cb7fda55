"""fleetdeck reports package."""

"""Notifications (pure): `[notify]` config, routing events to recipients, batching and rate
limits, and rendering messages. The senders (SMTP, HTTP) live at the edge, in the engine."""

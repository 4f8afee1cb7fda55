"""Trace-driven simulator: fill mode (the paper's protocol) and replay mode (simulated time)."""

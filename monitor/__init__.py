"""Live dashboard and headless readers of a running engine's counters block."""

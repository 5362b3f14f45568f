"""The one place that wires a profile, an engine and its adapters into a running daemon."""

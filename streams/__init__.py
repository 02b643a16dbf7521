"""The order flow as faust stream processors."""

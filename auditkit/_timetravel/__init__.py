"""Time travel: projections replay events into aggregate state as of any moment."""

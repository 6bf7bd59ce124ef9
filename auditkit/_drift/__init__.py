"""Schema drift: how each event type's payload shape changes over time."""

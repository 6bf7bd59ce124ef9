"""Loading events: raw pages decoded through an envelope into Arrow tables; event sources."""

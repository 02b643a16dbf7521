"""Publishing events: the keyed producer, the CLI producer, the command API."""

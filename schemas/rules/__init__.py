"""Rules every reader of the log shares, so the workers and the projections agree:
stock (what the inventory log means), orders (statuses and their order) and pricing
(how a line is priced and taxed). Pure functions and constants; no I/O."""

"""The read side: projection runners, projections, the query view, offsets tooling."""

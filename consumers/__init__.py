"""The read side: projections (pure folds), the engine that applies a batch, the runner
(Kafka in, one database transaction per batch out), replay into a new generation, the
view store (SQLite or PostgreSQL) and the query API. A wing: it imports the floor (ecom)
and the contracts (schemas), never producers/ or streams/."""

"""Event contracts: Avro schemas, the event models and the codec."""

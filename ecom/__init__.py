"""ecomstream's floor: settings, errors, the topology, Kafka clients (ecom.kafka), process
supervision, the local cluster and the topic and offset planners. It imports no wing
(producers, consumers, streams); the CLI in ecom.cli is the roof that does."""

__version__ = "0.1.0"

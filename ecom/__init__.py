"""ecomstream's shared plumbing: settings, errors, the topology, the local cluster, the CLI."""

__version__ = "0.1.0"

"""Every benchmark, outside the wings: each prints our figure beside Kafka's own perf
tool on the same cluster, and the ratio (`ecom bench ...`). Like the CLI, it may import
every wing."""

"""The local Kafka cluster: Apache Kafka KRaft nodes run from Maven-fetched jars."""

from ecom.cluster.config import cluster_settings, kafka_version
from ecom.cluster.local import LocalCluster, NodeStatus, find_bootstrap

__all__ = ["LocalCluster", "NodeStatus", "cluster_settings", "find_bootstrap", "kafka_version"]

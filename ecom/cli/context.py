"""What every command resolves once: the settings, the topology and the cluster."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ecom.cluster import find_bootstrap
from ecom.settings import Settings, get_settings
from ecom.topology import Topology


@dataclass
class Context:
    """A command's settings, and (on first use) its topology and bootstrap servers."""

    settings: Settings
    bootstrap_flag: str | None = None
    store_flag: str | None = None

    @cached_property
    def bootstrap(self) -> str:
        """--bootstrap, KAFKA_BOOTSTRAP_SERVERS, the running local cluster, localhost."""
        return find_bootstrap(self.settings, self.bootstrap_flag)

    @cached_property
    def topology(self) -> Topology:
        """topics.yaml (ECOM_TOPICS_FILE) under the topic prefix (ECOM_TOPIC_PREFIX)."""
        return Topology.from_settings(self.settings)

    @property
    def store_url(self) -> str:
        """--store, ECOM_STORE, or the SQLite view in .ecom/."""
        return self.store_flag or self.settings.store_url


def context(bootstrap: str | None = None, store: str | None = None) -> Context:
    """Return the context of this command (settings read once per process)."""
    return Context(get_settings(), bootstrap, store)

"""The order-flow apps for faust's own command line:

    faust -A streams.apps:inventory worker --without-web

Settings come from the environment like every `ecom` command (KAFKA_BOOTSTRAP_SERVERS,
ECOM_TOPIC_PREFIX ...).
"""

from __future__ import annotations

from typing import Any

from ecom.settings import get_settings, resolve_bootstrap
from ecom.topology import Topology
from streams.worker import SERVICES, build


def __getattr__(name: str) -> Any:
    if name not in SERVICES:
        raise AttributeError(name)
    settings = get_settings()
    topology = Topology.load(settings.topics_path, settings.topic_prefix)
    app = build(name, topology, resolve_bootstrap(), settings)
    globals()[name] = app
    return app

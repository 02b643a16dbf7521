"""The order-flow apps for faust's own command line:

    faust -A streams.apps:inventory worker --without-web

Settings come from the environment like every `ecom` command (KAFKA_BOOTSTRAP_SERVERS,
ECOM_TOPIC_PREFIX ...).
"""

from __future__ import annotations

from typing import Any

from ecom.cluster import find_bootstrap
from ecom.settings import get_settings
from ecom.topology import FLOW_SERVICES, Topology
from streams.worker import build


def __getattr__(name: str) -> Any:
    if name not in FLOW_SERVICES:
        raise AttributeError(name)
    settings = get_settings()
    app = build(name, Topology.from_settings(settings), find_bootstrap(settings), settings)
    globals()[name] = app
    return app

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import KafkaCluster
from tests.support import unique


@pytest.fixture
def topic_prefix(kafka: KafkaCluster) -> Iterator[str]:
    """A topic-name prefix of this test's own; its topics are deleted afterwards."""
    prefix = unique() + "-"
    yield prefix
    admin = kafka.admin()
    admin.delete([name for name in admin.live_topics() if name.startswith(prefix)])

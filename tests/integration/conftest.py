from __future__ import annotations

from collections.abc import Iterator

import pytest

from ecom.topics_admin import TopicAdmin
from tests.conftest import KafkaTarget
from tests.support import unique


@pytest.fixture
def topic_prefix(kafka: KafkaTarget) -> Iterator[str]:
    """A topic-name prefix of this test's own; its topics are deleted afterwards."""
    prefix = unique() + "-"
    yield prefix
    admin = TopicAdmin(kafka.bootstrap)
    admin.delete([name for name in admin.live_topics() if name.startswith(prefix)])

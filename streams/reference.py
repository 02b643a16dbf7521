"""A live replica of the reference data the pricing worker needs: every price, every
product's tax category and every tax rate, read from the whole pricing and products
topics (all partitions, from the beginning, no consumer group) by a background thread.

faust's GlobalTable would do this job, but it has open bugs around recovery and naming
(faust-streaming issues #283 and #296); a plain reader of two topics is simpler to trust.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from ecom.errors import DecodeError, InvalidEvent, KafkaUnavailable
from ecom.kafka import client_config, end_offsets
from ecom.topology import Topology
from schemas import Codec, Event, PriceChanged, ProductCreated, ProductUpdated, TaxRateChanged


@dataclass(frozen=True)
class Price:
    """A product's price in force."""

    amount_minor: int
    currency: str


class Reference:
    """Prices, categories and tax rates, kept up to date from the log."""

    def __init__(self, topology: Topology, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.topics = [topology.topic("pricing").name, topology.topic("products").name]
        self.prices: dict[str, Price] = {}
        self.categories: dict[str, str] = {}
        self.rates: dict[tuple[str, str], int] = {}
        self._read: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="reference-data", daemon=True)
        self._codec = Codec()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def wait_until_current(self, timeout: float = 10.0) -> bool:
        """Wait until everything in the topics right now has been read; tell whether it has."""
        ends = {k: v for k, v in end_offsets(self.bootstrap, self.topics).items() if v}
        deadline = time.monotonic() + timeout
        while any(self._read.get(key, 0) < end for key, end in ends.items()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _follow(self) -> None:
        consumer = Consumer(
            client_config(self.bootstrap, **{"group.id": "unused", "enable.auto.commit": False})
        )
        try:
            metadata = consumer.list_topics(timeout=10)
            partitions = [
                TopicPartition(topic, p, OFFSET_BEGINNING)
                for topic in self.topics
                for p in (metadata.topics[topic].partitions if topic in metadata.topics else {})
            ]
            if not partitions:
                raise KafkaUnavailable(f"reference topics {self.topics} are missing")
            consumer.assign(partitions)
            while not self._stop.is_set():
                for message in consumer.consume(1000, timeout=0.2):
                    if message.error() is None:
                        self._apply(message.value())
                        self._read[(message.topic() or "", message.partition() or 0)] = (
                            message.offset() or 0
                        ) + 1
        finally:
            consumer.close()

    def _apply(self, payload: bytes | None) -> None:
        try:
            event: Event = self._codec.decode(payload)
        except (DecodeError, InvalidEvent):
            return  # the projections' DLQ reports bad records; pricing just skips them
        if isinstance(event, PriceChanged):
            self.prices[event.product_id] = Price(event.price.amount_minor, event.price.currency)
        elif isinstance(event, TaxRateChanged):
            self.rates[(event.country, event.category)] = event.rate_bp
        elif isinstance(event, (ProductCreated, ProductUpdated)) and event.category is not None:
            self.categories[event.product_id] = event.category

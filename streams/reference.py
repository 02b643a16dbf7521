"""A live replica of the reference data the pricing worker needs: every price, every
product's tax category and every tax rate, read from the whole pricing and products
topics (all partitions, from the beginning, no consumer group) by a background reader.

faust's GlobalTable would do this job, but it has open bugs around recovery and naming
(faust-streaming issues #283 and #296); a plain reader of two topics is simpler to trust.
"""

from __future__ import annotations

from ecom.errors import DecodeError, InvalidEvent
from ecom.kafka import Message, TopicReader
from ecom.topology import Topology
from schemas import Codec, Event, PriceChanged, ProductCreated, ProductUpdated, TaxRateChanged
from schemas.rules.pricing import Book, Price


class Reference(Book):
    """Prices, categories and tax rates, kept up to date from the log."""

    def __init__(self, topology: Topology, bootstrap: str) -> None:
        super().__init__()
        topics = [topology.topic("pricing").name, topology.topic("products").name]
        self._codec = Codec()
        self._reader = TopicReader(bootstrap, topics, self._apply, name="reference-data")

    def start(self) -> None:
        self._reader.start()

    def stop(self) -> None:
        self._reader.stop()

    def wait_until_current(self, timeout: float = 10.0) -> bool:
        """Wait until everything in the topics right now has been read; tell whether it has."""
        return self._reader.wait_until_current(timeout)

    def _apply(self, message: Message) -> None:
        try:
            event: Event = self._codec.decode(message.value())
        except (DecodeError, InvalidEvent):
            return  # the projections' DLQ reports bad records; pricing just skips them
        if isinstance(event, PriceChanged):
            self.prices[event.product_id] = Price(event.price.amount_minor, event.price.currency)
        elif isinstance(event, TaxRateChanged):
            self.rates[(event.country, event.category)] = event.rate_bp
        elif isinstance(event, (ProductCreated, ProductUpdated)) and event.category is not None:
            self.categories[event.product_id] = event.category

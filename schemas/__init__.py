"""Event contracts: one Avro schema and one frozen model per event type, and the codec.

from schemas import OrderCreated, Codec
codec = Codec()
data = codec.encode(OrderCreated(...))
event = codec.decode(data)
"""

from schemas.base import EVENT_TYPES, Event, Money
from schemas.codec import Codec, headers
from schemas.inventory import (
    StockAdjusted,
    StockCommitted,
    StockReleased,
    StockReservationRejected,
    StockReservationRequested,
    StockReserved,
)
from schemas.order import (
    OrderCancellationRequested,
    OrderCancelled,
    OrderConfirmed,
    OrderCreated,
    OrderExpired,
    OrderLine,
    OrderPaymentRequested,
    OrderPriced,
    OrderPricingFailed,
    OrderStockReserved,
    PaymentDeadlinePassed,
    PricedLine,
)
from schemas.payment import PaymentAuthorized, PaymentCreated, PaymentFailed, PaymentRefunded
from schemas.pricing import PriceChanged, TaxRateChanged
from schemas.product import ProductCreated, ProductUpdated
from schemas.user import UserCreated, UserUpdated

__all__ = [
    "EVENT_TYPES",
    "Codec",
    "Event",
    "Money",
    "OrderCancellationRequested",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderCreated",
    "OrderExpired",
    "OrderLine",
    "OrderPaymentRequested",
    "OrderPriced",
    "OrderPricingFailed",
    "OrderStockReserved",
    "PaymentAuthorized",
    "PaymentCreated",
    "PaymentDeadlinePassed",
    "PaymentFailed",
    "PaymentRefunded",
    "PriceChanged",
    "PricedLine",
    "ProductCreated",
    "ProductUpdated",
    "StockAdjusted",
    "StockCommitted",
    "StockReleased",
    "StockReservationRejected",
    "StockReservationRequested",
    "StockReserved",
    "TaxRateChanged",
    "UserCreated",
    "UserUpdated",
    "headers",
]

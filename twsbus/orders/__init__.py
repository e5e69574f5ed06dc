"""Orders: the typed order and its request bodies (``model``), and the checks every order passes
before it is sent (``checks``). No ibapi here: ``tws/objects.py`` turns a checked ``Order`` into
IB's object, setting only the fields the caller gave."""

from twsbus.orders.checks import ORDER_TYPES, Guard, check_order, notional, order_price
from twsbus.orders.model import (
    CancelOrder,
    Order,
    PlaceOrder,
    TagValue,
    as_order,
    order_fields,
)

__all__ = [
    "ORDER_TYPES",
    "CancelOrder",
    "Guard",
    "Order",
    "PlaceOrder",
    "TagValue",
    "as_order",
    "check_order",
    "notional",
    "order_fields",
    "order_price",
]

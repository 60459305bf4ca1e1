"""A consumer of Breakwater's `orders.created` events: `faststream run billing:app`."""

import os
import sqlite3
from decimal import Decimal

from faststream import FastStream, Logger
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitMessage, RabbitQueue
from pydantic import BaseModel

broker = RabbitBroker(os.environ.get("BROKER_URL", "amqp://guest:guest@localhost:5672/"))
app = FastStream(broker)

# The gateway owns the exchange: bind to it, never declare it (declare=False checks it exists).
events = RabbitExchange("breakwater.events", type=ExchangeType.TOPIC, declare=False)
# Your own durable queue: events wait in it while this consumer is down.
orders = RabbitQueue("billing.orders", durable=True, routing_key="orders.created")

# Delivery is at-least-once and a duplicate carries the same message_id: remember the ids done,
# in the same transaction as the work they stand for.
db = sqlite3.connect(os.environ.get("BILLING_DB", "billing.db"))
db.execute("CREATE TABLE IF NOT EXISTS invoices (message_id TEXT PRIMARY KEY, order_id, total)")


class OrderCreated(BaseModel):  # only the fields billing reads; new fields do not break it
    order_id: str
    total: Decimal


@broker.subscriber(orders, events)
async def invoice(order: OrderCreated, message: RabbitMessage, logger: Logger) -> None:
    with db:  # one transaction: the invoice and its message_id, or neither
        added = db.execute(
            "INSERT OR IGNORE INTO invoices VALUES (?, ?, ?)",
            (message.message_id, order.order_id, str(order.total)),
        )
    if added.rowcount == 0:
        logger.info("duplicate %s: order %s already invoiced", message.message_id, order.order_id)

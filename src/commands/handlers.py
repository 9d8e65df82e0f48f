"""Command handlers: plain functions of (command, unit of work) returning the primary aggregate."""

from __future__ import annotations

from commands.aggregate import Aggregate
from commands.orders import CancelOrder, Order, PlaceOrder
from commands.unit_of_work import UnitOfWork


async def place_order(command: PlaceOrder, uow: UnitOfWork) -> Aggregate:
    order = await uow.get(Order, Order.stream_for(command.order_id))
    order.place(command)
    return order


async def cancel_order(command: CancelOrder, uow: UnitOfWork) -> Aggregate:
    order = await uow.get(Order, Order.stream_for(command.order_id))
    order.cancel(command)
    return order

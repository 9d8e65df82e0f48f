"""The ceiling in the bench: a bare Litestar app of the API's shape, which does no I/O.

`POST /commands/PlaceOrder` reads the body as the API's command route does, decodes it strictly with
msgspec into a struct of the PlaceOrder command's shape (`BarePlaceOrder`: the same fields, names and
limits as the model's wire type) and answers as the API does
(`{"StreamId", "Revision", "Positions": {"Order": N}, "ConsistencyToken": "Order:N"}`, N counted in
the process). No key is looked up, no stream read, nothing appended or published: what it serves a
second is what Litestar, msgspec and uvicorn can on this machine, the most the API could.

`python -m erp.bench.bare --port N --workers W` serves it as `erp api --workers W` serves the API:
the same uvicorn options (`erp.cli.serve.SERVED_WITH`: its HTTP protocol, the default loop, no access
log), one process or W sharing the port. `erp bench` starts it beside its API and sends both the same
load from the same client (`erp.bench.ceiling`).
"""

from __future__ import annotations

import argparse
import itertools
from typing import Annotated, Any
from uuid import UUID

import msgspec
import uvicorn
from litestar import Litestar, Request, get, post
from litestar.exceptions import HTTPException

from core.bodies import MAX_BODY
from erp.cli.serve import SERVED_WITH

TEXT = "^[^\x00]*$"
"""The model's text: no NUL (as its wire types' patterns)."""


class BareOrderLine(
    msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True, rename="pascal"
):
    product_code: Annotated[str, msgspec.Meta(pattern=TEXT, min_length=1, max_length=100)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    unit_price: str


class BarePlaceOrder(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, rename="pascal"):
    """The PlaceOrder command's wire shape (`commands.registry.COMMANDS["PlaceOrder"].message`)."""

    expected_revision: Annotated[int, msgspec.Meta(ge=0)] | None = None
    order_id: UUID
    customer_name: Annotated[str, msgspec.Meta(pattern=TEXT, min_length=1, max_length=200)]
    order_lines: Annotated[list[BareOrderLine], msgspec.Meta(min_length=1, max_length=1000)]
    customer_id: UUID | None = None
    custom: dict[str, Any] | None = None


class BareAnswer(msgspec.Struct, frozen=True, rename="pascal"):
    """A command's answer, as the API's `CommandResult`."""

    stream_id: str
    revision: int
    positions: dict[str, int]
    consistency_token: str


_positions = itertools.count(1)


@post("/commands/PlaceOrder", status_code=200)
async def place_order(request: Request[Any, Any, Any]) -> BareAnswer:
    """Decode the order (400 if not JSON, 422 if not an order) and answer as if it were placed."""
    body = await request.body()
    try:
        order = msgspec.json.decode(body, type=BarePlaceOrder, strict=True)
    except msgspec.ValidationError as error:
        raise HTTPException(status_code=422, detail=f"PlaceOrder: {error}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise HTTPException(status_code=400, detail=f"the body is not valid JSON: {error}") from None
    position = next(_positions)
    return BareAnswer(f"Order-{order.order_id}", 1, {"Order": position}, f"Order:{position}")


@get("/health", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"Status": "ok"}


def create_bare_app() -> Litestar:
    return Litestar(
        route_handlers=[place_order, health],
        request_max_body_size=MAX_BODY,
        logging_config=None,
        openapi_config=None,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m erp.bench.bare", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port, as erp api's")
    args = parser.parse_args(argv)
    if args.workers == 1:
        config = uvicorn.Config(create_bare_app(), host=args.host, port=args.port, **SERVED_WITH)
        uvicorn.Server(config).run()
    else:
        uvicorn.run(
            "erp.bench.bare:create_bare_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            **SERVED_WITH,
        )


if __name__ == "__main__":
    main()

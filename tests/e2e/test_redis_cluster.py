"""A whole stack (its own database, Temporal, worker and API) whose Redis is a three-node cluster."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx

from queries.notifications import channel_for
from tests.conftest import onboard, private_stack
from tests.redis_cluster import ClusterNodes


async def test_on_a_redis_cluster_reads_wait_for_their_command_and_notifications_stream(
    cluster_nodes: ClusterNodes,
) -> None:
    async with (
        private_stack("cluster", redis_cluster=True, redis_url=cluster_nodes.url) as (api, _),
        httpx.AsyncClient(base_url=api, timeout=30) as http,
    ):
        health = await http.get("/health")
        assert health.status_code == 200, health.text
        assert health.json()["Checks"]["Redis"] == "up"

        tenant = await onboard(http, "Clustered")
        channel = channel_for(tenant.account_id)
        (owner,) = await cluster_nodes.owners([channel])
        seen: list[dict[str, Any]] = []
        arrived = asyncio.Event()

        async def collect(stream: httpx.Response) -> None:
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    seen.append(json.loads(line.removeprefix("data:")))
                    arrived.set()

        async with (
            asyncio.timeout(60),
            http.stream("GET", "/notifications", headers=tenant.headers) as stream,
        ):
            assert stream.status_code == 200
            reader = asyncio.create_task(collect(stream))
            try:
                # The stream is SSUBSCRIBEd on the shard owning the account's channel, and only there.
                only_owner = {port: int(port == owner) for port in cluster_nodes.ports}
                await cluster_nodes.until_subscribers("SHARDNUMSUB", channel, only_owner)

                order_id = str(uuid.uuid4())
                placed = await http.post(
                    "/commands/PlaceOrder",
                    headers=tenant.headers,
                    json={
                        "OrderId": order_id,
                        "CustomerName": "Clustered Customer",
                        "OrderLines": [{"ProductCode": "RC-1", "Quantity": 3, "UnitPrice": "2.00"}],
                    },
                )
                assert placed.status_code == 200, placed.text
                token = placed.json()["ConsistencyToken"]
                position = placed.json()["Positions"]["Order"]

                started = time.monotonic()
                orders = await http.get(
                    "/queries/GetOrders",
                    params={"CustomerName": "Clustered Customer", "ConsistentWith": token},
                    headers=tenant.headers,
                )
                assert orders.status_code == 200, orders.text
                assert [(o["OrderId"], o["Total"]) for o in orders.json()["Items"]] == [(order_id, "6.00")]
                assert time.monotonic() - started < 5

                announced = {"Projection": "orders", "StreamType": "Order", "Position": position}
                while announced not in seen:
                    await arrived.wait()
                    arrived.clear()
            finally:
                reader.cancel()

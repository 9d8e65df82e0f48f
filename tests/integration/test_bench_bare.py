"""The bench's bare app (`erp.bench.bare`): the API's PlaceOrder route with no I/O, served as
`python -m erp.bench.bare` as the bench starts it. It must take the body the API takes, answer in
the API's shape and refuse what the API refuses, or its figure is no ceiling of the API's."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import msgspec
import pytest

from commands.registry import COMMANDS
from commands.service import CommandResult
from erp.bench.bare import BareAnswer, BarePlaceOrder
from erp.bench.load import order_body
from erp.bench.report import Results, console, report_ceiling, report_one_account
from erp.devserver import free_port


def _shape(struct: type[msgspec.Struct]) -> dict[str, bool]:
    """A struct's wire fields, each with whether it is required."""
    return {f.encode_name: f.required for f in msgspec.structs.fields(struct)}


def test_the_bare_command_and_answer_have_the_api_s_shape() -> None:
    real = COMMANDS["PlaceOrder"].message
    assert _shape(BarePlaceOrder) == _shape(real)
    assert _shape(BareAnswer) == _shape(CommandResult)
    good = msgspec.json.encode(order_body())
    assert msgspec.json.decode(good, type=BarePlaceOrder, strict=True).order_id
    assert msgspec.json.decode(good, type=real, strict=True).order_id
    lines = {"OrderId": str(uuid.uuid4()), "CustomerName": "Ada", "OrderLines": [{"ProductCode": "P"}]}
    for struct in (real, BarePlaceOrder):  # a line without its Quantity and UnitPrice: both refuse
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(msgspec.json.encode(lines), type=struct, strict=True)


@pytest.fixture(scope="module", params=[1, 2], ids=["one process", "two processes"])
def bare(request: pytest.FixtureRequest) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "erp.bench.bare", "--port", str(port), "--workers", str(request.param)]
    with subprocess.Popen(command, stderr=subprocess.PIPE) as process:
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                try:
                    if httpx.get(f"{base}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            process.wait(15)


def test_it_answers_place_order_as_the_api_does(bare: str) -> None:
    order = order_body()
    answers = [
        httpx.post(f"{bare}/commands/PlaceOrder", json=order, headers={"Authorization": "Bearer k"})
        for _ in range(2)
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == {"StreamId", "Revision", "Positions", "ConsistencyToken"}
        assert body["StreamId"] == f"Order-{order['OrderId']}"
        assert body["Revision"] == 1
        position = body["Positions"]["Order"]
        assert body["Positions"] == {"Order": position} and position >= 1
        assert body["ConsistencyToken"] == f"Order:{position}"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"not json", 400),
        (b'{"OrderId": ', 400),
        (b"{}", 422),
        (b'{"OrderId": "not a uuid", "CustomerName": "Ada", "OrderLines": []}', 422),
        (
            msgspec.json.encode({**order_body(), "OrderLines": [{"ProductCode": "KB-1", "Quantity": "2"}]}),
            422,
        ),
        (msgspec.json.encode({**order_body(), "Unknown": 1}), 422),
    ],
)
def test_it_refuses_a_bad_body_with_a_4xx(bare: str, body: bytes, status: int) -> None:
    answer = httpx.post(
        f"{bare}/commands/PlaceOrder", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == status, answer.text


def test_the_report_gives_the_api_as_a_share_of_the_bare_app_and_one_account_of_all() -> None:
    results = Results(
        "m",
        100,
        ceiling_api_commands_per_s=1401.2,
        bare_commands_per_s=5256.4,
        ceiling_ratio=1401.2 / 5256.4,
        one_account_commands_per_s=420.0,
        every_account_commands_per_s=1400.0,
        one_account_ratio=0.3,
    )
    with console.capture() as captured:
        report_ceiling(results)
        report_one_account(results)
    shown = " ".join(captured.get().split())
    assert "PlaceOrder on 100 accounts: 1,401/s = 0.27x the bare framework (5,256/s)" in shown
    assert "all load clients on one account: 420/s" in shown
    assert "= 0.30x the 100 accounts (1,400/s" in shown
    with console.capture() as captured:
        report_ceiling(Results("m", 100))  # not measured: nothing
    assert not captured.get()

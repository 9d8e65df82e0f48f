"""`erp bench`: the load and latency bench (`erp.bench`), its soak and its model-scale run."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
import uvloop
from rich.console import Console


def bench(
    seconds: Annotated[float, typer.Option(help="duration of each load phase")] = 10.0,
    accounts: Annotated[int, typer.Option(help="tenant accounts to spread load over")] = 100,
    json_path: Annotated[str | None, typer.Option("--json", help="also write the figures here")] = None,
    api_workers: Annotated[int, typer.Option(help="API processes")] = 1,
    model_scale: Annotated[
        bool, typer.Option("--model-scale", help="instead: load a model the seed's size and serve it")
    ] = False,
    soak: Annotated[
        float | None, typer.Option("--soak", help="instead: hold a mixed load for this many minutes")
    ] = None,
    scale_to: Annotated[
        int | None,
        typer.Option(
            "--scale-to",
            help="then measure again with this many accounts (e.g. 10000), in the same run, and print ratios",
        ),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="requests/s during --soak (default: half the mix's measured peak)")
    ] = None,
    fan_out: Annotated[
        bool,
        typer.Option(
            "--fan-out",
            help="instead: rename a customer with 1,000,000 orders under each way to show its name",
        ),
    ] = False,
    orders: Annotated[int, typer.Option(help="the big customer's orders, with --fan-out")] = 1_000_000,
) -> None:
    """Measure HTTP commands/s, appended events/s and command -> notification latency."""
    from core.stopping import stoppable
    from erp.bench import run_bench, run_soak

    try:
        if fan_out:
            from erp.bench.fan_out import report_fan_out

            uvloop.run(stoppable(report_fan_out(orders, json_path)))
        elif soak is not None:
            uvloop.run(stoppable(run_soak(soak, rate, accounts=accounts, json_path=json_path)))
        elif model_scale:
            from erp.bench.model_scale import report_model_scale

            signal.signal(signal.SIGTERM, signal.default_int_handler)
            report_model_scale(json_path)
        else:
            work = run_bench(
                seconds=seconds,
                accounts=accounts,
                json_path=json_path,
                api_workers=api_workers,
                scale_to=scale_to,
            )
            uvloop.run(stoppable(work))
    except (asyncio.CancelledError, KeyboardInterrupt):
        Console(stderr=True).print("bench stopped; its database and servers are gone")
        raise typer.Exit(130) from None

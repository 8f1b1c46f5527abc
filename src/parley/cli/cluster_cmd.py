"""`parley cluster`: the workers' registry (`workers`) and Kamailio's worker set (`kamailio-sync`)."""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path

import typer

from parley.cli.common import console, fail, settings

cluster = typer.Typer(help="Scale-out: workers in the registry, Kamailio's worker set.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(cluster, name="cluster")


def _need_redis() -> str:
    s = settings()
    if not s.redis_url:
        fail("REDIS_URL is not set: the workers' registry lives in Redis")
    return s.redis_url


@cluster.command("workers")
def workers(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the registered workers and their state (exit 1 when one is lost or none is registered)."""
    import redis.asyncio as aioredis

    from parley.calls.workers import WorkerRegistry

    url = _need_redis()
    s = settings()

    async def read() -> list[dict[str, object]]:
        client = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=3)
        try:
            return [w.to_dict() for w in await WorkerRegistry(client, prefix=s.redis_prefix).workers()]
        finally:
            await client.aclose()

    try:
        found = asyncio.run(read())
    except Exception as exc:  # noqa: BLE001
        fail(f"cannot read the registry at REDIS_URL: {exc}")
    if as_json:
        console.print_json(json.dumps(found))
    else:
        for w in found:
            console.print(f"{w['id']}  {w['state']}  sip {w['sip']}  {w['live']}/{w['capacity']} live",
                          highlight=False)
    if not found or any(w["state"] == "lost" for w in found):
        raise typer.Exit(1)


@cluster.command("kamailio-sync")
def kamailio_sync(
    list_file: Path = typer.Option(..., "--list", help="Kamailio dispatcher list file to write."),
    reload_cmd: str = typer.Option("kamcmd dispatcher.reload", "--reload-cmd",
                                   help="Command making Kamailio re-read the list ('' = none)."),
    reload_fifo: Path = typer.Option(None, "--reload-fifo",
                                     help="Reload through Kamailio's jsonrpcs FIFO instead of --reload-cmd."),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between registry reads."),
    once: bool = typer.Option(False, "--once", help="Write the list once and exit."),
) -> None:
    """Keep Kamailio's dispatcher list equal to the running workers of the registry."""
    import redis.asyncio as aioredis

    from parley.calls.workers import WorkerRegistry
    from parley.telephony.dispatcher import DispatcherSync

    url = _need_redis()
    s = settings()

    async def run() -> None:
        client = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=3)
        sync = DispatcherSync(WorkerRegistry(client, prefix=s.redis_prefix), list_file,
                              shlex.split(reload_cmd), interval_s=interval, reload_fifo=reload_fifo)
        try:
            if once:
                await sync.once()
            else:
                await sync.run()
        finally:
            await client.aclose()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass

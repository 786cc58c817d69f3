"""`cyan device why ID`: why a device is not connected, from the server's own records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cyan.cli.admin import with_store
from cyan.cli.options import DatabaseUrl, DataDir
from cyan.cli.output import console, fail, out, reports_errors
from cyan.diagnose.history import DeviceHistory, FailureReport, device_history, history_json
from cyan.protocol import keys

if TYPE_CHECKING:
    from cyan.store import Store


@reports_errors
def device_why(
    device_id: Annotated[str, typer.Argument(help="The device's id (24 hex characters).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Why a device is not connected: the stage that failed, its cause and the fix.

    Reads the server's store, so run it where the server runs. Exit code 0 when the device
    is connected, 1 otherwise.
    """
    try:
        normalized = keys.normalize_device_id(device_id)
    except ValueError as exc:
        raise fail(str(exc)) from None

    async def work(store: Store) -> DeviceHistory:
        record = await store.devices.get(normalized)
        return await device_history(
            store,
            normalized,
            record,
            online=record is not None and record.online,
            any_address=True,  # the server's operator sees every connection
            now=datetime.now(UTC),
        )

    history = with_store(data_dir, database_url, work)
    if as_json:
        out.print(json.dumps(history_json(history), indent=2))
    else:
        _show(history)
    if history.verdict.state != "online":
        raise typer.Exit(1)


def _show(history: DeviceHistory) -> None:
    verdict = history.verdict
    colour = "green" if verdict.state == "online" else "red"
    console.print(f"device [bold]{history.device_id}[/]: [{colour}]{verdict.summary}[/]")
    if verdict.stage or verdict.cause:
        stage = f"stage [bold]{verdict.stage}[/]: " if verdict.stage else ""
        reason = f" ({verdict.failure.reason})" if verdict.failure else ""
        console.print(f"{stage}{verdict.cause}{reason}")
        console.print(f"[bold]Fix:[/] {verdict.fix}")
    dropped = history.events_dropped
    if dropped is not None:
        when = (
            dropped.last_at.astimezone(UTC).strftime(" (last %Y-%m-%d %H:%M:%S UTC)")
            if dropped.last_at
            else ""
        )
        console.print(f"[yellow]Events dropped{when}:[/] {dropped.sentence}")
    for title, items in (
        ("Failed connections of this device", history.failures),
        ("Recent connections that named no device", history.unnamed),
    ):
        if items:
            console.print(_table(title, items))


def _table(title: str, items: list[FailureReport]) -> Table:
    table = Table("when (UTC)", "stage", "from", "reason", title=title, title_justify="left")
    for item in items:
        failure = item.failure
        table.add_row(
            failure.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            failure.stage,
            failure.remote_address,
            failure.reason,
        )
    return table

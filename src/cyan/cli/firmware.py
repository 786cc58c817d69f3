"""`cyan firmware …`: what a Particle firmware binary is, read from its own bytes.

The checks and layouts are `cyan.firmware`'s; this module only reads the file and renders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cyan.cli.output import fail, out, reports_errors
from cyan.firmware import (
    Module,
    ModuleDependency,
    ModuleFunction,
    parse_module,
    platform_name,
    system_version_name,
)

firmware_app = typer.Typer(help="Particle firmware binaries (modules).", no_args_is_help=True)

NO_PRODUCT = 0xFFFF


@firmware_app.callback()
def firmware() -> None:
    """Particle firmware binaries (modules)."""
    # A callback keeps `inspect` a subcommand even while it is the group's only command.


@firmware_app.command("inspect")
@reports_errors
def firmware_inspect(
    path: Annotated[
        Path, typer.Argument(help="A module binary (.bin), e.g. from particle compile.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Say what a firmware binary is: platform, module, version, dependencies, checksums.

    Refuses (exit 1) a file that is no module, is cut short, has bytes appended or fails
    its CRC-32, with the reason.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}") from None
    module = parse_module(data)
    if as_json:
        typer.echo(json.dumps(module_facts(path, module), indent=2))
        return
    out.print(module_table(path, module))


def module_facts(path: Path, module: Module) -> dict[str, Any]:
    """The --json object: numbers as numbers, addresses and checksums as hex strings."""
    return {
        "file": str(path),
        "size": module.size,
        "platform_id": module.platform_id,
        "platform": platform_name(module.platform_id),
        "module": module.name,
        "function": int(module.function),
        "function_name": module.function.human_name,
        "index": module.index,
        "version": module.version,
        "release": _release(module.function, module.version),
        "prefix_offset": module.prefix_offset,
        "start_address": f"0x{module.start_address:08X}",
        "end_address": f"0x{module.end_address:08X}",
        "flags": module.flags,
        "dependencies": [
            {
                "module": dependency.name,
                "function": int(dependency.function),
                "index": dependency.index,
                "version": dependency.version,
                "release": _release(dependency.function, dependency.version),
            }
            for dependency in module.dependencies
        ],
        "product_id": module.product_id,
        "product_version": module.product_version,
        "sha256": module.sha256_hex,
        "crc32": f"0x{module.crc32:08X}",
        "crc32_ok": True,  # parse_module refuses a module whose CRC-32 does not match
    }


def module_table(path: Path, module: Module) -> Table:
    table = Table(show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")  # a SHA-256 folds rather than loses its tail
    release = _release(module.function, module.version)
    rows = {
        "file": str(path),
        "size": f"{module.size} bytes",
        "platform": f"{platform_name(module.platform_id)} ({module.platform_id})",
        "module": module.name,
        "function": f"{int(module.function)} ({module.function.human_name})",
        "index": str(module.index),
        "version": f"{module.version} (Device OS {release})" if release else str(module.version),
        "start address": f"0x{module.start_address:08X}",
        "end address": f"0x{module.end_address:08X}",
        "prefix offset": f"{module.prefix_offset:#x}",
        "depends on": "\n".join(map(_dependency, module.dependencies)) or "nothing",
        "product": _product(module),
        "SHA-256": module.sha256_hex,
        "CRC-32": f"0x{module.crc32:08X} ok",
    }
    for field, value in rows.items():
        table.add_row(field, value)
    return table


def _release(function: ModuleFunction, version: int) -> str | None:
    # Only system parts carry Device OS module numbers; a user part's version is the app's.
    return system_version_name(version) if function == ModuleFunction.SYSTEM_PART else None


def _dependency(dependency: ModuleDependency) -> str:
    release = _release(dependency.function, dependency.version)
    text = f"{dependency.name} ≥ {dependency.version}"
    return f"{text} ({release})" if release else text


def _product(module: Module) -> str:
    if module.product_id is None:
        return "none (the suffix has no product fields)"
    if module.product_id == module.product_version == NO_PRODUCT:
        return "none declared (0xFFFF)"
    return f"{module.product_id}, version {module.product_version}"

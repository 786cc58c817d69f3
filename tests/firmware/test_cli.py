"""`cyan firmware inspect` (src/cyan/cli/firmware.py), in process with typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from cyan.cli.firmware import firmware_app
from tests.firmware.samples import KNOWN_APPS, system_part, tinker_binary

PHOTON_TINKER = KNOWN_APPS / "photon/tinker/tinker-0.4.5-photon.bin"


def inspect(*args: str) -> Result:
    return CliRunner().invoke(firmware_app, ["inspect", *args])


def flat(text: str) -> str:
    """The table's text with borders and Rich's wrapping removed."""
    return " ".join(text.replace("│", " ").split())


def test_the_table_names_everything_about_tinker() -> None:
    tinker_binary("photon")  # fails with the compat-setup hint if the file is missing
    result = inspect(str(PHOTON_TINKER))
    assert result.exit_code == 0, result.output
    table = flat(result.stdout)
    for shown in (
        "size 5324 bytes",
        "platform Photon (6)",
        "module user part 1",
        "function 5 (user part)",
        "index 1",
        "version 3",
        "start address 0x080A0000",
        "end address 0x080A14C8",
        "depends on system part 2 ≥ 6 (0.4.5)",
        "product 6, version 2",
        "CRC-32 0x4A738441 ok",
    ):
        assert shown in table, shown
    sha = "b3a6dcd529be70fbe24ee959c7305d58e3bc9a04acdce8f093c7a1f759097d09"
    assert sha in "".join(table.split())  # folded over two lines in 80 columns
    assert "tinker-0.4.5-photon.bin" in "".join(table.split())


def test_json_for_scripts(tmp_path: Path) -> None:
    tinker_binary("photon")
    result = inspect(str(PHOTON_TINKER), "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["platform"] == "Photon"
    assert (facts["platform_id"], facts["function"], facts["index"]) == (6, 5, 1)
    assert (facts["start_address"], facts["end_address"]) == ("0x080A0000", "0x080A14C8")
    assert facts["dependencies"] == [
        {"module": "system part 2", "function": 4, "index": 2, "version": 6, "release": "0.4.5"}
    ]
    assert (facts["crc32"], facts["crc32_ok"]) == ("0x4A738441", True)
    assert facts["sha256"].startswith("b3a6dcd5")

    part2 = tmp_path / "system-part2.bin"
    part2.write_bytes(system_part(2))
    facts = json.loads(inspect(str(part2), "--json").stdout)
    assert (facts["module"], facts["version"], facts["release"]) == ("system part 2", 2302, "2.3.1")
    assert facts["prefix_offset"] == 0x184
    table = flat(inspect(str(part2)).stdout)
    assert "version 2302 (Device OS 2.3.1)" in table
    assert "depends on system part 1 ≥ 2302 (2.3.1) bootloader ≥ 1003" in table


def test_a_corrupted_file_exits_1_with_the_reason(tmp_path: Path) -> None:
    damaged = bytearray(tinker_binary("photon"))
    damaged[2000] ^= 0x01
    path = tmp_path / "damaged.bin"
    path.write_bytes(bytes(damaged))
    for args in ([str(path)], [str(path), "--json"]):
        result = inspect(*args)
        assert result.exit_code == 1
        assert result.stdout == ""
        said = flat(result.stderr)
        assert "Error: the CRC-32 does not match: stored 0x4A738441" in said
        assert "(the file is corrupted)" in said
        assert "Fix:" in said


def test_other_refusals_exit_1(tmp_path: Path) -> None:
    truncated = tmp_path / "short.bin"
    truncated.write_bytes(tinker_binary("photon")[:4000])
    result = inspect(str(truncated))
    assert result.exit_code == 1
    assert "the file is truncated" in flat(result.stderr)
    result = inspect(str(tmp_path / "missing.bin"))
    assert result.exit_code == 1
    assert "cannot read" in flat(result.stderr)
    notes = tmp_path / "notes.txt"
    notes.write_text("not firmware\n")
    result = inspect(str(notes))
    assert result.exit_code == 1
    assert "not a Particle module binary: it is a text file" in flat(result.stderr)

"""`cyan explain`: what a pasted serial log, LED pattern or particle-cli error means."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from cyan.cli.output import console, fail, out
from cyan.diagnose.explain import Finding
from cyan.diagnose.explain import explain as find_causes

READ_STDIN = "-"
# Enough lines to recognise the pattern; the rest are counted, and --json carries them all.
EVIDENCE_SHOWN = 6
PASTE_HINT = (
    "Paste the serial log, LED pattern or error message, then press Ctrl-D on an empty line "
    "(Ctrl-Z, Enter on Windows)."
)
NEXT_STEPS = (
    "Next: cyan doctor --server HOST   checks DNS, port 5683 and the handshake from here\n"
    "      cyan device why ID           shows how the server last saw the device"
)


def explain(
    source: Annotated[
        str | None,
        typer.Argument(
            metavar="FILE|-",
            help="File holding the text; without it, or with -, the text is read from stdin.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the findings as JSON on stdout, for scripts.")
    ] = False,
) -> None:
    """Explain a Photon's serial log, an LED pattern or a particle-cli error: the likely
    cause, the lines that show it, and the fix. Exits 1 when nothing matched."""
    text = read_text(source)
    findings = find_causes(text)
    if as_json:
        out.out(json.dumps([asdict(finding) for finding in findings], indent=2), highlight=False)
    else:
        show_findings(findings)
    if not findings:
        # With --json, stdout stays pure JSON ([]); the sentence goes to stderr.
        say_nothing_matched(text, console if as_json else out)
        raise typer.Exit(1)


def read_text(source: str | None) -> str:
    if source is None or source == READ_STDIN:
        if sys.stdin.isatty():
            console.print(PASTE_HINT)
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise fail(f"cannot read {source}: {exc.strerror or exc}") from None
    # Serial monitors pass on whatever bytes the device sent; one garbled byte must not
    # hide the lines around it.
    return data.decode("utf-8", errors="replace")


def show_findings(findings: list[Finding]) -> None:
    if len(findings) > 1:
        out.print(Text(f"{len(findings)} possible causes, most likely first.\n", style="dim"))
    for rank, finding in enumerate(findings, 1):
        out.print(Text.assemble(f"{rank}. ", (finding.cause, "bold")))
        # Text, not markup: log lines such as "[system] INFO" would read as style tags.
        for line in finding.evidence[:EVIDENCE_SHOWN]:
            out.print(Text(f"   {line.line_number:>5} | {line.text}", style="dim"))
        hidden = len(finding.evidence) - EVIDENCE_SHOWN
        if hidden > 0:
            out.print(Text(f"         … and {hidden} more matching lines", style="dim"))
        out.print(Text.assemble("   ", ("Fix:", "bold"), f" {finding.fix}"))
        out.print()


def say_nothing_matched(text: str, target: Console) -> None:
    line_count = sum(1 for line in text.splitlines() if line.strip())
    if line_count == 0:
        sentence = "Nothing to explain: the input was empty."
    else:
        lines = "line" if line_count == 1 else "lines"
        sentence = f"No known cause matched the {line_count} {lines} given."
    # soft_wrap: the command names must stay whole even on stderr's narrower console.
    target.print(Text(sentence), soft_wrap=True)
    target.print(Text(NEXT_STEPS), soft_wrap=True)

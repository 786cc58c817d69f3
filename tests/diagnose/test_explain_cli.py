"""The installed `cyan explain` as a user runs it: a file, stdin, --json, no match, a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from tests.diagnose.test_explain import DHCP_CAUSE, seed_log

CYAN = str(Path(sys.executable).parent / "cyan")
ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
TIMEOUT_S = 60  # a hang bound, not a speed check


def cyan_explain(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CYAN, "explain", *args],
        input=stdin,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_a_file_gets_cause_numbered_evidence_and_fix(tmp_path: Path) -> None:
    log_file = tmp_path / "serial.log"
    log_file.write_text(seed_log("post-5"))
    result = cyan_explain(str(log_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"1. {DHCP_CAUSE}")
    # Line 3 of that log is the first failed lookup; the evidence keeps its number.
    assert re.search(
        r"^ +3 \| failed to get device\.spark\.io from DNS, try 1$", result.stdout, re.MULTILINE
    )
    assert re.search(r"^ +6 \| device\.spark\.io=0\.0\.0\.0$", result.stdout, re.MULTILINE)
    fix = next(line for line in result.stdout.splitlines() if line.strip().startswith("Fix:"))
    assert "--host IP" in fix
    assert "router" in fix


def test_stdin_and_dash_read_the_same_text() -> None:
    log = seed_log("post-10")
    without_argument = cyan_explain(stdin=log)
    with_dash = cyan_explain("-", stdin=log)
    assert without_argument.returncode == with_dash.returncode == 0
    assert without_argument.stdout == with_dash.stdout
    assert DHCP_CAUSE in without_argument.stdout.splitlines()[2]


def test_both_seed_logs_in_one_file_answer_dhcp_first(tmp_path: Path) -> None:
    pasted = tmp_path / "both.log"
    pasted.write_text(seed_log("post-5") + seed_log("post-10"))
    result = cyan_explain(str(pasted))
    assert result.returncode == 0, result.stderr
    numbered = [line for line in result.stdout.splitlines() if re.match(r"\d+\. ", line)]
    assert len(numbered) > 1
    assert numbered[0].startswith(f"1. {DHCP_CAUSE}")
    assert "more matching lines" in result.stdout


def test_json_lists_every_finding_for_scripts() -> None:
    result = cyan_explain("--json", stdin=seed_log("post-10"))
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)
    assert findings[0]["rule_id"] == "dhcp-no-dns"
    assert DHCP_CAUSE in findings[0]["cause"]
    assert "--host IP" in findings[0]["fix"]
    assert {"line_number": 5, "text": "dnsServerIP=0.0.0.0 (often 0.0.0.0)"} in findings[0][
        "evidence"
    ]
    scores = [finding["score"] for finding in findings]
    assert scores == sorted(scores, reverse=True)


def test_log_lines_are_shown_verbatim() -> None:
    # "[system]" must not be eaten as a Rich style tag.
    result = cyan_explain(stdin="0000012001 [system] WARN: Cloud handshake failed, code=6\n")
    assert result.returncode == 0, result.stderr
    assert "1 | 0000012001 [system] WARN: Cloud handshake failed, code=6" in result.stdout


def test_nothing_matched_says_so_and_suggests_next_steps() -> None:
    result = cyan_explain(stdin="hello\nthe photon sits on my desk\n")
    assert result.returncode == 1
    assert "No known cause matched the 2 lines given." in result.stdout
    assert "cyan doctor" in result.stdout
    assert "cyan device why ID" in result.stdout


def test_nothing_matched_with_json_keeps_stdout_pure() -> None:
    result = cyan_explain("--json", stdin="hello\n")
    assert result.returncode == 1
    assert json.loads(result.stdout) == []
    assert "cyan doctor" in result.stderr


def test_empty_input_is_not_a_diagnosis() -> None:
    result = cyan_explain(stdin="")
    assert result.returncode == 1
    assert "Nothing to explain" in result.stdout


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    result = cyan_explain(str(tmp_path / "absent.log"))
    assert result.returncode == 1
    assert "Error: cannot read" in result.stderr
    assert result.stdout == ""


def test_bytes_that_are_not_utf8_do_not_stop_the_rest(tmp_path: Path) -> None:
    log_file = tmp_path / "garbled.log"
    log_file.write_bytes(b"\xff\xfe\x00garbage\nIt just keeps blinking green.\n")
    result = cyan_explain("--json", str(log_file))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["rule_id"] == "led-blinking-green"


def test_a_terminal_on_stdin_gets_a_hint_to_paste() -> None:
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [CYAN, "explain"],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        # Ctrl-D at the start of a line ends the input, as it does for a user.
        os.write(controller, b"It just keeps blinking green.\n\x04")
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    finally:
        os.close(terminal)
        os.close(controller)
    assert process.returncode == 0, stderr
    assert b"Ctrl-D" in stderr
    assert b"Blinking green" in stdout

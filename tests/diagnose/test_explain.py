"""`explain()`: every rule's examples, the seed thread's logs, rule collisions and ranking.

The seed thread's two clouddebug logs (a Photon whose DHCP server handed out DNS 0.0.0.0)
are kept as the device printed them in tests/diagnose/seed_logs/: the serial output only,
none of the thread's posts, so that this repository's tests stand alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cyan.diagnose.explain import Finding, explain, load_rules, parse_rules

SEED_LOGS_DIR = Path(__file__).resolve().parent / "seed_logs"
DHCP_CAUSE = "DHCP handed out no usable DNS server"
# Post 5: the first clouddebug run; post 10: with the network settings it was handed.
SEED_LOGS = ("post-5", "post-10")


def seed_log(name: str) -> str:
    log = (SEED_LOGS_DIR / f"{name}.log").read_text(encoding="utf-8")
    # An edited fixture must fail here, not quietly feed explain() something else.
    assert log.count("\n") >= 5, log
    assert "failed to get device.spark.io from DNS" in log, log
    return log


def top(text: str) -> Finding:
    findings = explain(text)
    assert findings, f"nothing matched {text!r}"
    return findings[0]


def rule_ids(text: str) -> list[str]:
    return [finding.rule_id for finding in explain(text)]


# --------------------------------------------------------------------------------------
# The rules file
# --------------------------------------------------------------------------------------

EXAMPLES = [
    pytest.param(rule.id, example, id=f"{rule.id}-{number}")
    for rule in load_rules()
    for number, example in enumerate(rule.examples, 1)
]


@pytest.mark.parametrize(("rule_id", "example"), EXAMPLES)
def test_each_example_makes_its_rule_the_top_answer(rule_id: str, example: str) -> None:
    assert top(example).rule_id == rule_id


def test_every_rule_has_a_cause_a_fix_and_an_example() -> None:
    rules = load_rules()
    assert len(rules) >= 30
    for rule in rules:
        assert rule.examples, rule.id
        assert len(rule.cause) > 30, rule.id
        assert len(rule.fix) > 30, rule.id
        # Sentences come out whole: the file's line breaks are only layout.
        assert "\n" not in rule.cause + rule.fix, rule.id


def test_the_rules_cover_leds_device_os_logs_and_cli_errors() -> None:
    ids = {rule.id for rule in load_rules()}
    assert {"led-breathing-cyan", "led-blinking-green", "led-cyan-orange", "led-sos-red"} <= ids
    assert {"dhcp-no-dns", "cloud-unreachable", "handshake-failed", "keepalive-timeout"} <= ids
    assert {"cli-no-dfu-device", "cli-http-401", "cli-device-not-found"} <= ids


# --------------------------------------------------------------------------------------
# The seed thread
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SEED_LOGS))
def test_seed_logs_point_at_dhcp_dns(name: str) -> None:
    log = seed_log(name)
    finding = top(log)
    assert DHCP_CAUSE in finding.cause
    assert "router" in finding.fix
    assert "--host IP" in finding.fix
    assert "cyan keys server" in finding.fix
    lines = log.splitlines()
    for evidence in finding.evidence:
        assert lines[evidence.line_number - 1].strip() == evidence.text
    assert any("from DNS, try 1" in evidence.text for evidence in finding.evidence)


def test_seed_log_with_dns_server_line_shows_it_as_evidence() -> None:
    finding = top(seed_log("post-10"))
    assert "dnsServerIP=0.0.0.0 (often 0.0.0.0)" in [line.text for line in finding.evidence]
    assert "device.spark.io=0.0.0.0" in [line.text for line in finding.evidence]


def test_both_logs_pasted_with_chatter_point_at_dhcp_dns() -> None:
    before, after = "here is what I get:", "and after adding the network info:"
    pasted = "\n".join([before, seed_log("post-5"), after, seed_log("post-10")])
    finding = top(pasted)
    assert DHCP_CAUSE in finding.cause
    # Evidence from both logs, numbered as lines of the whole paste.
    numbers = [line.line_number for line in finding.evidence]
    assert min(numbers) < 9 < max(numbers)
    lines = pasted.splitlines()
    assert all(lines[line.line_number - 1].strip() == line.text for line in finding.evidence)


# --------------------------------------------------------------------------------------
# Rules that could collide
# --------------------------------------------------------------------------------------


def test_dns_server_zero_alone_is_not_a_dns_failure() -> None:
    # The Photon often reports DNS 0.0.0.0 while lookups work; clouddebug says so itself.
    healthy = """connected to WiFi!
localIP=192.168.2.180
dnsServerIP=0.0.0.0 (often 0.0.0.0)
dhcpServerIP=0.0.0.0 (often 0.0.0.0)
ping gateway=1
device.spark.io=54.173.1.44
0000010114 [system] INFO: Cloud: connecting
0000010505 [comm] INFO: Hanshake: completed
0000010507 [system] INFO: Cloud connected"""
    assert rule_ids(healthy) == ["cloud-connected"]


def test_dhcp_server_zero_is_not_evidence_for_anything() -> None:
    assert explain("dhcpServerIP=0.0.0.0 (often 0.0.0.0)") == []


def test_dns_failure_outranks_the_socket_failure_it_causes() -> None:
    log = """0000020277 [system] ERROR: Unable to resolve IP for device.spark.io
0000020279 [system] ERROR: Failed to determine server address
0000020285 [system] WARN: Cloud socket connection failed: -230
0000020399 [system] WARN: Internet available, Cloud not reachable!"""
    assert rule_ids(log) == ["dhcp-no-dns", "cloud-unreachable"]


def test_dns_internet_test_is_not_a_missing_uplink() -> None:
    assert rule_ids("0000020399 [system] WARN: Internet test failed: DNS") == ["dhcp-no-dns"]


def test_negated_breathing_cyan_is_not_a_healthy_device() -> None:
    for text in ("no breathing cyan", "It never gets to breathing cyan.", "isn't breathing cyan"):
        assert "led-breathing-cyan" not in rule_ids(text), text


def test_counted_blinks_beat_the_plain_colour() -> None:
    ids = rule_ids("blinking cyan followed by 2 orange blinks")
    assert ids[0] == "led-cyan-two-blinks"
    assert "led-cyan-orange" in ids[1:]


def test_blinks_after_an_sos_are_a_crash_code() -> None:
    assert rule_ids("red SOS, then 2 red blinks") == ["led-sos-red"]


def test_red_after_fast_cyan_outranks_the_fast_cyan() -> None:
    assert rule_ids("fast cyan then red") == ["led-cyan-red", "led-fast-cyan"]


def test_magenta_within_cyan_is_not_a_firmware_update() -> None:
    ids = rule_ids("blinking cyan with a magenta blink")
    assert ids[0] == "led-cyan-magenta"
    assert "led-blinking-magenta" not in ids


def test_ping_timeouts_from_a_computer_are_not_keepalive_failures() -> None:
    assert explain("Request timeout for icmp_seq 0\nRequest timeout for icmp_seq 1") == []


def test_a_dfu_device_missing_outranks_the_write_error_it_causes() -> None:
    ids = rule_ids("Error writing firmware... No DFU capable USB device available")
    assert ids == ["cli-no-dfu-device", "cli-flash-failed"]


def test_handshake_code_names_the_failure() -> None:
    assert rule_ids("WARN: Cloud handshake failed, code=6")[:2] == [
        "handshake-decrypt",
        "handshake-failed",
    ]
    assert top("WARN: Cloud handshake failed, code=8").rule_id == "handshake-auth"
    assert top("WARN: Cloud handshake failed, code=61").rule_id == "handshake-failed"


def test_light_blue_is_cyan_not_listening_mode() -> None:
    assert rule_ids("light blue blinking") == ["led-blinking-cyan"]


# --------------------------------------------------------------------------------------
# No match, line numbers, ranking
# --------------------------------------------------------------------------------------


def test_nothing_matched_gives_no_findings() -> None:
    assert explain("") == []
    assert explain("hello\nmy photon is on my desk\n") == []


def test_evidence_carries_line_numbers_for_any_line_ending() -> None:
    for newline in ("\n", "\r\n", "\r"):
        text = newline.join(["hello", "", "It just keeps blinking green."])
        (finding,) = explain(text)
        assert [(line.line_number, line.text) for line in finding.evidence] == [
            (3, "It just keeps blinking green.")
        ]


RANKING_RULES = """
[[rule]]
id = "vague"
priority = 10
cause = "a vague cause that many lines show"
fix = "a vague fix for the many lines"
patterns = ['vague']
examples = ["vague"]

[[rule]]
id = "decisive"
priority = 20
cause = "a decisive cause that one line shows"
fix = "a decisive fix for the one line"
patterns = ['decisive']
examples = ["decisive"]

[[rule]]
id = "also-decisive"
priority = 20
cause = "another decisive cause, with more lines"
fix = "another decisive fix, with more lines"
patterns = ['also']
examples = ["also"]

[[rule]]
id = "needs-both"
cause = "a cause that needs two signs"
fix = "a fix that needs two signs"
patterns = ['first sign']
requires_all = ['second sign']
unless = ['ignore me']
examples = ["first sign\\nsecond sign"]
"""


def test_priority_wins_then_the_number_of_evidence_lines() -> None:
    rules = parse_rules(RANKING_RULES)
    text = "vague\nvague\nvague\nvague\ndecisive\nalso\nalso"
    findings = explain(text, rules)
    assert [finding.rule_id for finding in findings] == ["also-decisive", "decisive", "vague"]
    assert [finding.score for finding in findings] == [2002, 2001, 1004]


def test_equal_scores_keep_the_order_of_the_file() -> None:
    rules = parse_rules(RANKING_RULES)
    findings = explain("also\ndecisive", rules)
    assert [finding.rule_id for finding in findings] == ["decisive", "also-decisive"]


def test_requires_all_needs_every_sign_and_unless_drops_a_line() -> None:
    rules = parse_rules(RANKING_RULES)
    assert explain("first sign", rules) == []
    assert explain("first sign\nsecond sign, ignore me", rules) == []
    (finding,) = explain("first sign\nnoise\nsecond sign", rules)
    assert finding.rule_id == "needs-both"
    assert [line.line_number for line in finding.evidence] == [1, 3]


# --------------------------------------------------------------------------------------
# A broken rules file says which rule is broken
# --------------------------------------------------------------------------------------

ONE_RULE = """
[[rule]]
id = "one"
cause = "the cause of the one rule"
fix = "the fix of the one rule"
patterns = ['one']
examples = ["one"]
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ONE_RULE + ONE_RULE, "'one' is defined twice"),
        (ONE_RULE.replace("['one']", "['(unclosed']"), "bad pattern"),
        (ONE_RULE.replace('examples = ["one"]', "examples = []"), "examples must not be empty"),
        (ONE_RULE.replace("patterns", "pattern"), "lacks patterns"),
        (ONE_RULE + 'paterns = ["x"]\n', "unknown keys: paterns"),
        (ONE_RULE.replace('id = "one"', 'id = "One Rule"'), "id must be"),
        (ONE_RULE + "priority = true\n", "priority must be"),
        (ONE_RULE.replace('fix = "the fix of the one rule"', 'fix = " "'), "fix must be"),
        ("title = 'no rules here'", "no [[rule]] tables"),
        ("[[rule]\n", "not valid TOML"),
    ],
)
def test_a_broken_rules_file_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_rules(text)

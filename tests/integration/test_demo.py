"""`make demo` as a newcomer sees it: URLs and one line per job, then Ctrl-C stops everything."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_given_a_fresh_stack_when_the_demo_runs_then_it_shows_every_job_and_ctrl_c_stops_all() -> None:
    env = {k: v for k, v in os.environ.items() if k != "AzureWebJobsStorage"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.demo", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("ready:"):
                break
        output = "".join(lines)
        assert any(line.startswith("ready:") for line in lines), output
        ports = [int(p) for p in re.findall(r"Azurite \w+ +http://127\.0\.0\.1:(\d+)", output)]
        host_port = int(re.search(r"Functions host running at http://127\.0\.0\.1:(\d+)", output).group(1))  # type: ignore[union-attr]
        assert len(ports) == 3
        ports.append(int(re.search(r"Graph emulator https://127\.0\.0\.1:(\d+)", output).group(1)))  # type: ignore[union-attr]
        assert all(_listening(p) for p in [*ports, host_port])
        assert re.search(r"^✓ job health: HTTP 200 ok", output, re.M), output
        assert re.search(r"^✓ job housekeeping: .* succeeded, pruned 2 runs", output, re.M), output
        assert "/api/v1/health" in output
        assert re.search(r"^  Graph emulator https://127\.0\.0\.1:\d+/v1\.0", output, re.M), output
        assert re.search(r"^✓ job graph: .* 8 events \(4 occurrences of a weekly series\)", output, re.M), (
            output
        )
        assert re.search(
            r"^✓ job graph: after an edit and a delete .* 1 changed and 1 removed", output, re.M
        ), output
        # the down-sync: 7 events of Adele (one was deleted by the graph job) and 1 of Grady
        assert re.search(
            r"^✓ job calendar sync: .* 2 calendars → 8 appointment\.upserted .* 'Privat avtale', "
            r"readOnly=True",
            output,
            re.M,
        ), output
        assert re.search(
            r"^✓ job sync calendar: .*\(HTTP 202, run \w+… succeeded.*'deleted': 1.*\) delivered only "
            r"\['appointment\.upserted Customer visit \(new time\)', 'appointment\.deleted AAMk",
            output,
            re.M,
        ), output
        assert re.search(
            r"^✓ job calendar push: POST …/appointments \(HTTP 202 in \d+ ms\) → applied, created in "
            r"adele@\S+ calendar \(1 event",
            output,
            re.M,
        ), output
        assert re.search(
            r"^✓ job calendar push: a batch \(HTTP 202\) → \['updated', 'created', 'ignored'\]; "
            r"rejected \['appointments\[3\]\.end'\]",
            output,
            re.M,
        ), output
        assert re.search(
            r"^✓ job push round trip: .* appointment\.upserted for host appointment SO-1002 "
            r"\('Installation: charger \(Adele moved it\)'\); the host heard 3 appointment\.pushed",
            output,
            re.M,
        ), output
        assert re.search(
            r"^✓ job unlink cleanup: DELETE …/resources/tech-7\?cleanup=true \(HTTP 202\) → 1 bridge event "
            r"deleted from grady@\S+ calendar, his own 1 kept",
            output,
            re.M,
        ), output
        assert re.search(
            r"^✓ job mail import: PUT …/mail-imports/invoices \(HTTP 201\), run succeeded "
            r".*'documents_imported': 1.*; document\.imported 'faktura-2026-1001\.pdf' downloaded "
            r"from its URL, sha256 verified; 2 mails archived",
            output,
            re.M,
        ), output
        assert re.search(
            r"^✓ job booking slots: PUT …/booking-calendars/advice \(HTTP 201, suffix ' - Booket'\); "
            r"GET …/slots shows \['\d\d-\d\dT09:00 available', '\d\d-\d\dT10:00 available'\]",
            output,
            re.M,
        ), output
        assert re.search(
            r"^✓ job booking: two forms POST …/reservations at once → HTTP \[201, 409\]; booking\.reserved; "
            r"Outlook shows 'Rådgivning - Booket' with "
            r"\['Bookingsammendrag [\d-]+ \d{4}\.pdf', 'henvisning\.pdf'\]",
            output,
            re.M,
        ), output
        assert re.search(
            r"^✓ job booking cancel: DELETE …/reservations/r-\w+… \(HTTP 202\) → booking\.cancelled; "
            r"Outlook shows 'Rådgivning' with 0 attachments; slot listed again",
            output,
            re.M,
        ), output
        presence = re.search(
            r"^✓ job presence: 2 users enabled; Grady's meeting (\S+)-(\S+) → presence\.changed "
            r"\['free -', 'busy (\S+)', 'free (\S+)'\]; GET …/presence → \['free', 'free'\]",
            output,
            re.M,
        )
        assert presence, output
        assert presence.group(1, 2) == presence.group(3, 4)
        assert re.search(
            r"^✓ job mail send: PUT …/mail-senders/forms \(HTTP 201\); POST …/messages twice → "
            r"HTTP 202/202, one id; status sent, mail\.sent \(draft\) x1; Adele's inbox holds 1 mail with "
            r"\{'receipt\.pdf': 47, 'enclosure\.pdf': 4194331\}",
            output,
            re.M,
        ), output
        assert re.search(
            r"^✓ job openapi: GET /api/v1/openapi\.json \(HTTP 200\) → OpenAPI 3\.1\.0, \d+ operations on "
            r"\d+ paths, valid",
            output,
            re.M,
        ), output
        assert re.search(
            r"^✓ job test settings: .* ok=False \(1 failed, \d+ ok\); presence ghost@\S+: fix 'Check that "
            r"ghost@.*; without it \(HTTP 200\) ok=True \(\d+ ok: token, permissions, calendar, mail-folder, "
            r"booking-calendar, presence\)",
            output,
            re.M,
        ), output
        assert re.search(
            r"^✓ job connect: delegated tenant contoso-self; .*\(PKCE S256\) → callback → "
            r"https://erp\.contoso\.example/connected\?status=connected; run \w+… brought [1-9]\d* "
            r"appointment\(s\) of grady@\S+ with his own token; .*\[\('grady', 'connected'\)\]; test "
            r"settings: token grady@\S+ ok",
            output,
            re.M,
        ), output
        assert re.search(
            r"^✓ job notifications: BRIDGE_PUBLIC_URL set; reconcile timer \(admin API HTTP 202\) → 3 "
            r"subscriptions at Graph \['calendar', 'calendar', 'mail'\], endpoint validated; Adele renamed "
            r"an appointment in Outlook → appointment\.upserted 'Customer visit \(confirmed\)' at the host "
            r"webhook \d+\.\d s later \([1-9]\d* change notification",
            output,
            re.M,
        ), output
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert "stopped: Graph emulator" in rest
    assert "Traceback" not in output + rest  # no invocation failed, also not while stopping
    assert "(Failed" not in output + rest
    assert "stopped: Azurite" in rest
    assert not any(_listening(p) for p in [*ports, host_port])

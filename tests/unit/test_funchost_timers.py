"""Timing and configuration of the local Functions host (no network): NCRONTAB schedules,
`%SETTING%` references, host.json TimeSpans and queue settings, queue polling back-off and
message decoding, storage connection names.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.settings import azurite_connection_string
from devtools.funchost.queues import (
    MIN_POLLING_INTERVAL,
    MessageDecodeError,
    decode_body,
    next_poll_delay,
    validate_queue_name,
)
from devtools.funchost.settings import (
    FunctionHostError,
    LocalSettings,
    apply_local_settings,
    parse_host_config,
    parse_timespan,
    resolve_connection,
    resolve_setting_refs,
)
from devtools.funchost.timers import Schedule


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# -- NCRONTAB ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */5 * * * *", utc(2025, 3, 4, 12, 3, 10), utc(2025, 3, 4, 12, 5, 0)),
        # strictly after: an occurrence exactly at `after` is not the next one
        ("0 */5 * * * *", utc(2025, 3, 4, 12, 5, 0), utc(2025, 3, 4, 12, 10, 0)),
        ("*/10 * * * * *", utc(2025, 3, 4, 12, 0, 5), utc(2025, 3, 4, 12, 0, 10)),
        ("0 0 2 * * *", utc(2025, 12, 31, 23, 0, 0), utc(2026, 1, 1, 2, 0, 0)),
        # Monday to Friday at 09:30: from Friday evening the next is Monday
        ("0 30 9 * * 1-5", utc(2025, 3, 7, 18, 0, 0), utc(2025, 3, 10, 9, 30, 0)),
        ("0 30 9 * * Mon-Fri", utc(2025, 3, 7, 18, 0, 0), utc(2025, 3, 10, 9, 30, 0)),
        # NCRONTAB needs day-of-month AND day-of-week: the first Tuesday, not "1st-7th or Tuesdays"
        ("0 0 8 1-7 * Tue", utc(2025, 1, 1), utc(2025, 1, 7, 8, 0, 0)),
        ("0 0 8 1-7 * Tue", utc(2025, 1, 7, 9), utc(2025, 2, 4, 8, 0, 0)),
    ],
)
def test_next_occurrence(expression, after, expected):
    assert Schedule.parse(expression).next_after(after) == expected


def test_schedules_are_in_utc_whatever_the_zone_of_the_given_time():
    paris = timezone(timedelta(hours=1))
    nxt = Schedule.parse("0 0 2 * * *").next_after(datetime(2025, 3, 4, 12, 0, tzinfo=paris))
    assert nxt == utc(2025, 3, 5, 2, 0, 0)
    assert nxt.utcoffset() == timedelta(0)


def test_a_timespan_schedule_is_a_fixed_interval():
    schedule = Schedule.parse("00:00:30")
    assert schedule.next_after(utc(2025, 1, 1, 0, 0, 7)) == utc(2025, 1, 1, 0, 0, 37)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("*/5 * * * *", "has 5 fields"),
        ("0 0 0 * * * *", "has 7 fields"),
        ("0 61 * * * *", "not a valid NCRONTAB"),
        ("0 0 0 32 * *", "not a valid NCRONTAB"),
        ("00:00:00", "longer than zero"),
    ],
)
def test_invalid_schedules_fail_at_start_up(expression, message):
    with pytest.raises(FunctionHostError, match=message):
        Schedule.parse(expression, what="function 'tick' schedule")


def test_past_due_means_more_than_a_second_late():
    schedule = Schedule.parse("0 * * * * *")
    due = utc(2025, 1, 1, 0, 1, 0)
    assert not schedule.is_past_due(due, due + timedelta(milliseconds=900))
    assert schedule.is_past_due(due, due + timedelta(milliseconds=1100))


# -- %SETTING% ---------------------------------------------------------------------------------


def test_setting_references_are_replaced_wherever_they_appear():
    env = {"SCHEDULE": "0 */5 * * * *", "ENV": "dev", "AREA": "mail"}
    assert resolve_setting_refs("%SCHEDULE%", env, what="x") == "0 */5 * * * *"
    assert resolve_setting_refs("%AREA%-import-%ENV%", env, what="x") == "mail-import-dev"
    assert resolve_setting_refs("plain-name", env, what="x") == "plain-name"


def test_a_missing_setting_is_an_error_naming_it_and_the_function():
    with pytest.raises(FunctionHostError, match=r"function 'tick'.*'%MISSING_SCHEDULE%'.*MISSING_SCHEDULE"):
        resolve_setting_refs("%MISSING_SCHEDULE%", {}, what="function 'tick'")


# -- TimeSpan and host.json ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("00:01:00", 60.0),
        ("00:00:01", 1.0),
        ("01:02:03", 3723.0),
        ("1.02:03:04", 93784.0),
        ("00:00:00.250", 0.25),
        (2000, 2.0),
        (0, 0.0),
    ],
)
def test_timespans(value, seconds):
    assert parse_timespan(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["5", "abc", "00:61:00", "24:00:00", True, -1, None, "1:2"])
def test_invalid_timespans_are_refused(value):
    with pytest.raises(FunctionHostError):
        parse_timespan(value, what="maxPollingInterval")


def test_host_json_defaults_are_the_real_hosts():
    config = parse_host_config({"version": "2.0"})
    assert config.route_prefix == "api"
    q = config.queues
    assert (q.max_dequeue_count, q.max_polling_interval, q.visibility_timeout) == (5, 60.0, 0.0)
    assert (q.batch_size, q.new_batch_threshold, q.message_encoding) == (16, 8, "base64")


def test_host_json_overrides():
    config = parse_host_config(
        {
            "extensions": {
                "http": {"routePrefix": ""},
                "queues": {
                    "maxDequeueCount": 3,
                    "maxPollingInterval": 1500,
                    "visibilityTimeout": "00:00:30",
                    "batchSize": 4,
                    "messageEncoding": "None",
                },
            }
        }
    )
    assert config.route_prefix == ""
    q = config.queues
    assert (q.max_dequeue_count, q.max_polling_interval, q.visibility_timeout) == (3, 1.5, 30.0)
    assert (q.batch_size, q.new_batch_threshold, q.message_encoding) == (4, 2, "none")


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ({"batchSize": 33}, "batchSize"),
        ({"batchSize": 0}, "batchSize"),
        ({"maxDequeueCount": "5"}, "maxDequeueCount"),
        ({"messageEncoding": "utf8"}, "messageEncoding"),
        ({"maxPollingInterval": "00:00:00"}, "at least 100 ms"),
    ],
)
def test_invalid_queue_settings_fail_naming_the_key(queues, message):
    with pytest.raises(FunctionHostError, match=message):
        parse_host_config({"extensions": {"queues": queues}})


def test_local_settings_do_not_override_the_environment():
    environ = {"KEEP": "from-shell"}
    applied = apply_local_settings(LocalSettings(values={"KEEP": "from-file", "NEW": "v"}), environ)
    assert environ == {"KEEP": "from-shell", "NEW": "v"}
    assert applied == ["NEW"]


# -- queue polling, decoding, names and connections ----------------------------------------------


def test_polling_backs_off_exponentially_to_the_maximum_and_resets_after_a_message():
    delays, delay = [], MIN_POLLING_INTERVAL
    for _ in range(7):
        delay = next_poll_delay(delay, found=False, maximum=2.0)
        delays.append(delay)
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])
    assert next_poll_delay(2.0, found=True, maximum=2.0) == MIN_POLLING_INTERVAL


def test_bodies_are_base64_decoded_unless_encoding_is_none():
    assert decode_body(base64.b64encode("ünï".encode()).decode(), "base64") == "ünï".encode()
    assert decode_body("", "base64") == b""
    assert decode_body("plain text", "none") == b"plain text"
    for bad in ("not base64!", "abc", "ü"):
        with pytest.raises(MessageDecodeError):
            decode_body(bad, "base64")


def test_queue_names_are_lower_cased_and_checked():
    assert validate_queue_name("Mail-Import", what="f") == "mail-import"
    for bad in ("ab", "a--b", "-ab", "ab-", "a_b", "x" * 64):
        with pytest.raises(FunctionHostError, match="not a valid queue name"):
            validate_queue_name(bad, what="f")


def test_connections_resolve_like_the_real_host():
    conn = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=k;QueueEndpoint=http://h/a;"
    assert resolve_connection(None, {"AzureWebJobsStorage": conn}, what="f") == conn
    assert resolve_connection("Jobs", {"AzureWebJobsJobs": conn}, what="f") == conn
    dev = resolve_connection("S", {"S": "UseDevelopmentStorage=true"}, what="f")
    assert dev == azurite_connection_string()
    with pytest.raises(FunctionHostError, match="connection setting Missing is not set"):
        resolve_connection("Missing", {}, what="f")
    with pytest.raises(FunctionHostError, match="identity-based"):
        resolve_connection("Ident", {"Ident__queueServiceUri": "https://x"}, what="f")

"""Cron expressions in a time zone: Dagster's daylight-saving rules, seconds, nicknames, bad input."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncdag.automation._cron import CronSchedule, CronScheduleError

BERLIN = "Europe/Berlin"


def local_ticks(expression: str, zone: str, start: dt.datetime, n: int) -> list[str]:
    cron = CronSchedule(expression, zone)
    t = start.replace(tzinfo=cron.tz).timestamp()
    return [cron.localize(x).strftime("%m-%d %H:%M%z") for x in cron.next_ticks(t, n)]


def test_a_daily_time_skipped_by_spring_forward_runs_once_at_the_end_of_the_gap() -> None:
    # 2024-03-31 in Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    assert local_ticks("30 2 * * *", BERLIN, dt.datetime(2024, 3, 30, 12), 3) == [
        "03-31 03:00+0200",
        "04-01 02:30+0200",
        "04-02 02:30+0200",
    ]


def test_every_skipped_time_of_a_non_hourly_schedule_collapses_into_one_run() -> None:
    assert local_ticks("*/20 2 * * *", BERLIN, dt.datetime(2024, 3, 30, 12), 2) == [
        "03-31 03:00+0200",
        "04-01 02:00+0200",
    ]


def test_a_daily_time_repeated_by_fall_back_runs_once_at_its_second_occurrence() -> None:
    # 2024-10-27 in Berlin: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    assert local_ticks("30 2 * * *", BERLIN, dt.datetime(2024, 10, 26, 12), 2) == [
        "10-27 02:30+0100",
        "10-28 02:30+0100",
    ]


def test_an_hourly_schedule_runs_once_per_real_hour_across_both_changes() -> None:
    assert local_ticks("0 * * * *", BERLIN, dt.datetime(2024, 10, 27, 0), 5) == [
        "10-27 01:00+0200",
        "10-27 02:00+0200",
        "10-27 02:00+0100",
        "10-27 03:00+0100",
        "10-27 04:00+0100",
    ]
    assert local_ticks("30 * * * *", BERLIN, dt.datetime(2024, 3, 31, 0), 3) == [
        "03-31 00:30+0100",
        "03-31 01:30+0100",
        "03-31 03:30+0200",
    ]


def test_both_passes_of_an_hourly_schedule_come_out_in_time_order() -> None:
    assert local_ticks("0,30 * * * *", BERLIN, dt.datetime(2024, 10, 27, 1, 10), 5) == [
        "10-27 01:30+0200",
        "10-27 02:00+0200",
        "10-27 02:30+0200",
        "10-27 02:00+0100",
        "10-27 02:30+0100",
    ]


def test_stepping_from_inside_the_first_pass_still_finds_the_second_pass_ticks() -> None:
    cron = CronSchedule("*/20 2 * * *", BERLIN)
    inside_first_pass = dt.datetime(2024, 10, 27, 0, 30, tzinfo=dt.UTC).timestamp()  # 02:30 CEST
    ticks = [cron.localize(t).strftime("%H:%M%z") for t in cron.next_ticks(inside_first_pass, 3)]
    assert ticks == ["02:00+0100", "02:20+0100", "02:40+0100"]


def test_a_half_hour_dst_shift_is_handled_too() -> None:
    # Lord Howe Island moves its clocks by 30 minutes.
    assert local_ticks("0 2 * * *", "Australia/Lord_Howe", dt.datetime(2024, 10, 5, 12), 2) == [
        "10-06 02:30+1100",
        "10-07 02:00+1100",
    ]


def test_a_leading_sixth_field_counts_seconds() -> None:
    cron = CronSchedule("*/15 * * * * *")
    assert cron.has_seconds
    assert cron.next_ticks(0.0, 3) == [15.0, 30.0, 45.0]


@pytest.mark.parametrize(
    ("nickname", "expected"), [("@hourly", 3600.0), ("@daily", 86400.0), ("@DAILY", 86400.0)]
)
def test_cron_nicknames(nickname: str, expected: float) -> None:
    assert CronSchedule(nickname).next_after(0.0) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "Bad minute"),
        ("* *", "five fields"),
        ("", "non-empty"),
        ("0 0 30 2 *", "day-of-month"),
    ],
)
def test_a_bad_expression_says_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(CronScheduleError, match=message):
        CronSchedule(expression)


def test_an_unknown_time_zone_names_it() -> None:
    with pytest.raises(CronScheduleError, match="unknown time zone 'Mars/Olympus'"):
        CronSchedule("* * * * *", "Mars/Olympus")


def test_the_newest_ticks_of_a_long_gap_are_found_without_stepping_through_it() -> None:
    cron = CronSchedule("* * * * * *")  # a year of seconds lies in the gap
    newest, older = cron.latest_between(0.0, 365 * 86400.0, 3)
    assert newest == [365 * 86400.0 - 2, 365 * 86400.0 - 1, 365 * 86400.0]
    assert older
    few, older = cron.latest_between(10.0, 12.0, 5)
    assert few == [11.0, 12.0]
    assert not older


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(min_value=1_700_000_000, max_value=1_800_000_000),
    zone=st.sampled_from(["UTC", BERLIN, "America/New_York", "Australia/Lord_Howe"]),
    expression=st.sampled_from(["0 * * * *", "30 2 * * *", "*/20 1,2 * * *", "15 3 * * 0"]),
)
def test_ticks_strictly_increase_and_each_one_follows_from_the_one_before(
    start: int, zone: str, expression: str
) -> None:
    cron = CronSchedule(expression, zone)
    ticks = cron.next_ticks(float(start), 30)
    assert all(a < b for a, b in itertools.pairwise(ticks))
    # Resuming from any tick gives the same sequence: a scheduler's cursor loses nothing.
    for i, t in enumerate(ticks[:-1]):
        assert cron.next_after(t) == ticks[i + 1]

"""Routing's small parts: the Retry-After reader, heavy-day merging, the routing settings."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.errors import ConfigError
from ingest.pipeline.route import heavy_runs
from ingest.request.client import retry_after_seconds
from ingest.settings import load_settings

NOW = 1_700_000_000.0


@given(st.text(max_size=60))
def test_any_retry_after_text_is_a_finite_wait_or_none(value: str) -> None:
    seconds = retry_after_seconds(value, now=NOW)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


@given(st.integers(min_value=0, max_value=10**9))
def test_delta_seconds_are_read_as_given(seconds: int) -> None:
    assert retry_after_seconds(f" {seconds} ", now=NOW) == seconds


@given(st.integers(min_value=-86_400, max_value=86_400 * 30))
def test_an_http_date_is_the_seconds_until_it(offset: int) -> None:
    moment = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=offset)
    assert retry_after_seconds(format_datetime(moment, usegmt=True), now=NOW) == max(0, offset)


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "1e9", "soon", "", "Wed, 99 Foo 2015 07:28:00 GMT"])
def test_hostile_or_odd_retry_after_is_ignored(value: str) -> None:
    assert retry_after_seconds(value, now=NOW) is None


@given(st.sets(st.integers(min_value=0, max_value=400), max_size=60))
def test_heavy_runs_cover_exactly_the_days_with_fewest_windows(offsets: set[int]) -> None:
    days = [date(2024, 1, 1) + timedelta(days=n) for n in offsets]
    runs = heavy_runs(days)
    covered = [a + timedelta(days=k) for a, b in runs for k in range((b - a).days + 1)]
    assert sorted(covered) == sorted(days)  # every heavy day, once, and nothing else
    # As few windows as possible: no two runs touch (they would have been one).
    assert all(b1 + timedelta(days=1) < a2 for (_, b1), (a2, _) in zip(runs, runs[1:], strict=False))


@pytest.mark.parametrize(("word", "via"), [("auto", "auto"), (" EMAIL ", "email"), ("Get", "get")])
def test_via_takes_the_words_in_any_case(monkeypatch: pytest.MonkeyPatch, word: str, via: str) -> None:
    monkeypatch.setenv("INGEST_REQUESTER__VIA", word)
    assert load_settings().requester.via == via


def test_via_defaults_to_auto_with_a_conservative_get_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INGEST_REQUESTER__VIA", raising=False)
    monkeypatch.delenv("INGEST_REQUESTER__GET_RATE", raising=False)
    requester = load_settings().requester
    assert (requester.via, requester.get_rate, requester.use_get) == ("auto", 2.0, False)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INGEST_REQUESTER__VIA", "fast"),
        ("INGEST_REQUESTER__VIA", ""),
        ("INGEST_REQUESTER__GET_RATE", "0"),
        ("INGEST_REQUESTER__GET_RATE", "-1"),
        ("INGEST_REQUESTER__GET_RATE", "lots"),
    ],
)
def test_a_bad_routing_setting_names_itself(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()

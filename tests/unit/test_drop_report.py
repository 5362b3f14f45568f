"""mipd.core.counters.DropReport: which data-plane drops the journal hears of, and when."""

from __future__ import annotations

from mipd.core.counters import DropReport


def test_a_first_drop_is_reported_at_once_in_the_journals_spelling() -> None:
    report = DropReport(every=10.0)
    assert report.due({"dropped_malformed": 0, "decapsulated": 5}, 0.0) == []
    assert report.due({"dropped_unsupported_protocol": 1, "decapsulated": 9}, 1.0) == [("unsupported-protocol", 1)]


def test_each_reason_at_most_once_per_interval_with_what_grew_meanwhile() -> None:
    report = DropReport(every=10.0)
    assert report.due({"dropped_malformed": 2}, 1.0) == [("malformed", 2)]
    assert report.due({"dropped_malformed": 5, "dropped_ttl_zero": 1}, 2.0) == [("ttl-zero", 1)]
    assert report.due({"dropped_malformed": 9, "dropped_ttl_zero": 1}, 10.9) == []
    assert report.due({"dropped_malformed": 9, "dropped_ttl_zero": 1}, 11.0) == [("malformed", 7)]
    assert report.due({"dropped_malformed": 9, "dropped_ttl_zero": 1}, 30.0) == []


def test_counters_that_are_not_drops_are_never_reported() -> None:
    report = DropReport(every=0.0)
    assert report.due({"encapsulated": 100, "send_errors": 3, "ignored_other_destination": 4}, 0.0) == []

"""Geo dimensions: which values a country or city dimension may publish."""

from __future__ import annotations

from pubdata.policy import geo
from pubdata.policy.geo import geo_values


def outside(values: list[object], kind: str) -> list[object]:
    allowed = geo_values(kind)
    return [v for v in dict.fromkeys(values) if not (isinstance(v, str) and v in allowed)]


def test_valid_country_codes() -> None:
    assert outside(["US", "DE", "FR", "JP", "BR", "Other", "GB"], "geo_country") == []


def test_what_is_not_a_country() -> None:
    values = ["US", "??", "us", "XX", "", None, "USA", "XK", "??", "other", "Germany"]
    assert outside(values, "geo_country") == ["??", "us", "XX", "", None, "USA", "XK", "other", "Germany"]


def test_valid_cities() -> None:
    assert outside(["Berlin", "Paris", "Tokyo", "São Paulo", "Zürich", "Other"], "geo_city") == []


def test_what_is_not_a_city_over_15000() -> None:
    # Zwiesel (about 10,000) is not in the list; Nuuk (about 14,800) is listed as a capital but not over 15,000.
    values = ["Berlin", "Narnia", "berlin", "Zwiesel", "Nuuk", "??", None, 42, "Narnia"]
    assert outside(values, "geo_city") == ["Narnia", "berlin", "Zwiesel", "Nuuk", "??", None, 42]


def test_geo_lookups_are_cached() -> None:
    geo_values("geo_city")
    geo_values("geo_country")
    assert geo._city_names() is geo._city_names()
    assert geo._country_codes.cache_info().currsize == 1

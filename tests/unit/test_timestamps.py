from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.timestamps import rfc3339

OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(lambda minutes: timedelta(minutes=minutes))


# A day inside datetime's range on either side, so every offset can express the moment.
MOMENTS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))


@given(MOMENTS, OFFSETS)
def test_a_moment_is_written_alike_whatever_zone_it_is_given_in(moment: datetime, offset: timedelta) -> None:
    # Given one moment in UTC and the same moment in another fixed offset
    elsewhere = moment.astimezone(timezone(offset))
    # Then both are written as the same UTC time with milliseconds and a Z
    written = rfc3339(moment)
    assert rfc3339(elsewhere) == written
    assert written.endswith("Z")
    assert datetime.fromisoformat(written) == moment.replace(microsecond=moment.microsecond // 1000 * 1000)

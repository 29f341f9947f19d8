"""Following live logs whose end frame never comes: the command reconnects for it less and less
often, then takes the API's word that the execution ended."""
from __future__ import annotations

import io
from typing import Any

from fastlane_cli.follow import END_GIVE_UP, END_GRACE, Follower


class Ended(Follower):
    """A follower whose API says the execution ended (its stream never says so)."""

    def _execution(self) -> dict[str, Any] | None:
        return {"executionId": "e", "status": "timedout", "reason": "it ran too long", "exitCode": None}


def test_an_end_that_never_comes_costs_a_few_reconnects_then_the_api_is_believed():
    follower = Ended(api=None, task="t", job="j", start="e", err=io.BytesIO(), out=io.BytesIO())  # type: ignore[arg-type]
    answers = [(round(at / 10, 2), follower._ended_elsewhere(at / 10)) for at in range(0, int(END_GIVE_UP * 10) + 1)]
    reconnects = [at for at, said in answers if said is True]

    assert answers[0] == (0.0, None)  # ended a moment ago: its end frame may be on its way
    assert END_GRACE <= reconnects[0] < END_GRACE + 0.1  # asked every 0.1 s here
    assert 3 <= len(reconnects) <= 8  # not one every END_GRACE (80 in 20 s)
    gaps = [b - a for a, b in zip(reconnects, reconnects[1:], strict=False)]
    assert all(later >= earlier - 1e-9 for earlier, later in zip(gaps, gaps[1:-1], strict=False))  # growing
    assert follower.ended["e"].execution_id == "e"  # after END_GIVE_UP: ended, as the API says

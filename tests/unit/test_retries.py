"""The one retry policy: which attempt is the last, what delay a retry waits."""

from mediagate.config import RetrySettings
from mediagate.worker.retries import NextTry, Retry, is_last_attempt, next_try, parking_reason

POLICY = RetrySettings(delays_ms=(100, 200, 400))


def test_each_retry_waits_longer_up_to_the_longest_delay_and_then_gives_up() -> None:
    tries = [next_try(Retry("x"), attempt, POLICY) for attempt in range(3)]
    assert tries == [NextTry(100, 1), NextTry(200, 2), NextTry(400, 3)]
    assert [is_last_attempt(attempt, POLICY) for attempt in range(4)] == [
        False,
        False,
        False,
        True,
    ]


def test_a_retry_until_fixed_waits_the_longest_and_never_reaches_the_last_attempt() -> None:
    attempt = 0
    for _ in range(10):
        then = next_try(Retry("no scratch space", until_fixed=True), attempt, POLICY)
        attempt = then.attempt
        assert not is_last_attempt(attempt, POLICY)
    assert then == NextTry(400, 2)


def test_the_parking_reason_names_the_crashes_and_keeps_the_file() -> None:
    assert parking_reason(3) == "processing stopped 3 times midway; the file is kept for review"

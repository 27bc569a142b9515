"""Rate limits (assistant.limits): per chat visitor, and the teacher's calls per minute across all chats."""

from assistant.limits import RateLimiter, TeacherCallLimit


def test_the_teacher_limit_counts_calls_in_a_sliding_minute():
    clock = [0.0]
    limit = TeacherCallLimit(3, clock=lambda: clock[0])
    assert [limit.allow() for _ in range(4)] == [True, True, True, False]
    clock[0] = 59.9
    assert not limit.allow()
    clock[0] = 60.1  # the first calls have left the window
    assert limit.allow()


def test_no_teacher_limit_when_it_is_zero():
    limit = TeacherCallLimit(0)
    assert all(limit.allow() for _ in range(1000))


def test_a_visitor_over_the_limit_waits_and_is_not_counted():
    clock = [0.0]
    limiter = RateLimiter(clock=lambda: clock[0])
    assert limiter.wait_for({"s": 1}) == 0
    assert limiter.wait_for({"s": 1}) == 60.0

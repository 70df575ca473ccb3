"""Progress passed on at most every so often, with its start and its end always."""

from app.throttle import every


def test_reports_between_the_first_and_the_end_are_dropped_within_the_interval():
    told = []
    progress = every(3600, lambda done, total: told.append(done), always=lambda done, total: done >= total)
    for done in range(0, 101, 10):
        progress(done, 100)
    assert told == [0, 100]  # the bar starts and ends; the flood in between stays on the worker


def test_every_report_passes_once_the_interval_is_over():
    told = []
    progress = every(0, told.append)
    for f in (0.1, 0.2, 0.3):
        progress(f)
    assert told == [0.1, 0.2, 0.3]

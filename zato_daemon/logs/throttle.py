"""At most one log record per interval for an event that can repeat thousands of times a
second (accept errors, refused connections), with the count of what it stands for.

Pure: the caller passes the clock's readings and logs what `occurred()` and `due()` return.
"""

# How often a repeated event is reported at most, by default.
REPORT_INTERVAL = 60.0


class Throttle:
    """Counts occurrences of one event and says when to report them.

    The first occurrence is reported at once; the ones after it are counted and reported
    with the first occurrence at least `interval` seconds after the last report.
    """

    __slots__ = ('interval', 'last_report', 'count')

    def __init__(self, interval=REPORT_INTERVAL):
        self.interval = interval
        self.last_report = None
        self.count = 0

    def occurred(self, now):
        """Notes one occurrence at `now`; returns how many to report (this one included), or 0."""
        self.count += 1
        if self.last_report is not None and now - self.last_report < self.interval:
            return 0
        self.last_report = now
        count, self.count = self.count, 0
        return count

    def due(self, now):
        """The occurrences held back, once the interval since the last report has passed (0
        until then, or when there are none): for a periodic check, so that the end of a burst
        is reported even when the event does not occur again."""
        if not self.count or now - self.last_report < self.interval:
            return 0
        self.last_report = now
        count, self.count = self.count, 0
        return count

    def unreported(self):
        """Occurrences counted since the last report, and forgets them (for a closing record)."""
        count, self.count = self.count, 0
        return count


class Throttles:
    """One Throttle per kind of event (a part of a dump, a command Redis refused): which
    occurrences of each to report now, and how many each report stands for."""

    def __init__(self, interval=REPORT_INTERVAL):
        self.interval = interval
        self._throttles = {}

    def occurred(self, kind, now):
        """Notes one occurrence of `kind` at `now`; how many to report (this one included), or 0."""
        throttle = self._throttles.get(kind)
        if throttle is None:
            throttle = self._throttles[kind] = Throttle(self.interval)
        return throttle.occurred(now)

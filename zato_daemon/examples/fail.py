"""demo.fail: always raises, to show what a failing service looks like to a client and in the log."""

from zato_daemon import Service


class Fail(Service):
    """Raises ValueError; the client gets a 500 with the cid, the log gets the traceback."""

    name = 'demo.fail'

    def handle(self):
        raise ValueError('demo.fail always fails: this is the example of a failing service')

"""demo.sleep: answers after a delay; handy to see a slow call or a graceful stop."""

import time

from zato_daemon import Service

# A cap keeps one request from holding a connection for long on a shared server.
MAX_SECONDS = 60.0


class Sleep(Service):
    """Sleeps for payload["seconds"] (default 1, at most 60) without blocking other requests."""

    name = 'demo.sleep'

    def handle(self):
        payload = self.request.payload or {}
        seconds = min(float(payload.get('seconds', 1)), MAX_SECONDS)
        self.logger.info('Sleeping for %.3f s', seconds)
        # time.sleep is gevent's sleep in a worker: only this greenlet waits.
        time.sleep(seconds)
        self.response.payload = {'slept': seconds}

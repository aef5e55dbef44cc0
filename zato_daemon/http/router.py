"""From a parsed HTTP request to the bytes of its response: routing, JSON, errors.

No sockets here: `Router.respond()` takes a protocol Request and returns bytes, so
every status rule (400, 404, 405, 500) is testable without a server.

Routes: `GET /zato/ping` (health checks); `POST /services/<name>`; `POST <path>` for
each `[channels]` entry. Services named `zato.*` are built-in and only reachable
through the admin socket, whose router has `is_admin` set.
"""

import json
import logging
import time

from zato_daemon.errors import HttpError
from zato_daemon.http.protocol import render_response
from zato_daemon.logs.levels import SERVICE_FAILED
from zato_daemon.logs.redact import redact, render_capped
from zato_daemon.services.base import Request

logger = logging.getLogger('zato_daemon.http')

SERVICES_PREFIX = '/services/'
PING_PATH = '/zato/ping'
PING_SERVICE = 'zato.ping'
BUILTIN_PREFIX = 'zato.'
CID_HEADER = b'X-Zato-CID'
# The redacted input of a failed call is logged up to this many characters.
INPUT_LOG_LIMIT = 4096


class Router:
    """Maps request paths to services and renders their responses. One per listener."""

    def __init__(self, host, channels, is_admin=False, recorder=None):
        self.host = host
        self.channels = dict(channels)
        self.is_admin = is_admin
        # diagnostics/recorder.py: samples and slow calls; None when both are off.
        self.recorder = recorder
        self.dumps = host.dumps_json

    def respond(self, request, keep_alive):
        """The complete response to `request`, as bytes to send in one write."""
        cid = self.host.new_cid()
        name, allowed = self.route(request.path)
        if name is None:
            return self.error(404, f'no service or channel at {request.path}', cid, keep_alive)
        if request.method not in allowed:
            allow = (b'Allow', ', '.join(allowed).encode())
            return self.error(405, f'method {request.method} not allowed here; use {allowed[0]}', cid,
                              keep_alive, (allow,))
        try:
            payload = json.loads(request.body) if request.body else None
        except ValueError as exc:
            return self.error(400, f'malformed JSON in the request body: {exc}', cid, keep_alive)
        return self.call(name, payload, cid, request, keep_alive)

    def route(self, path):
        """(service name, allowed methods) for a path, or (None, ()) when nothing is there."""
        if path == PING_PATH:
            return PING_SERVICE, ('GET', 'POST')
        if path.startswith(SERVICES_PREFIX):
            name = path[len(SERVICES_PREFIX):]
            if not name or (name.startswith(BUILTIN_PREFIX) and not self.is_admin):
                return None, ()
            return name, ('POST',)
        name = self.channels.get(path)
        return (name, ('POST',)) if name else (None, ())

    def call(self, name, payload, cid, request, keep_alive):
        if name not in self.host.store:
            return self.error(404, f'no service named {name!r} is deployed', cid, keep_alive)
        context = {'cid': cid, 'service': name}
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug('Request %s %s: %s', request.method, request.path, render_capped(payload, INPUT_LOG_LIMIT),
                         extra=context)
        recorder = self.recorder
        if recorder is None:
            return self.run_service(name, payload, cid, request, keep_alive, context)[0]
        started = time.perf_counter()
        answer, status, response, failure = self.run_service(name, payload, cid, request, keep_alive, context)
        recorder.after_call(name, cid, started, time.perf_counter(), status, payload, response, failure)
        return answer

    def run_service(self, name, payload, cid, request, keep_alive, context):
        """Calls the service; returns (response bytes, status, its Response or None, exception or None)."""
        service_request = Request(payload, request.headers, request.method, request.path)
        try:
            response = self.host.call(name, cid=cid, request=service_request)
        except HttpError as exc:
            if exc.status >= 500:
                self.log_failure(name, cid, payload, request.headers)
                return self.error(exc.status, 'the service failed; the server log has the details under this cid',
                                  cid, keep_alive), exc.status, None, exc
            # The service refused the request on purpose: its message is meant for the client.
            logger.info('Service %s answered %d: %s', name, exc.status, exc.reason, extra=context)
            return self.error(exc.status, exc.reason, cid, keep_alive), exc.status, None, exc
        except (Exception, SystemExit) as exc:
            # SystemExit too: a service calling sys.exit() must fail its call, not end the worker.
            self.log_failure(name, cid, payload, request.headers)
            return self.error(500, 'the service raised an exception; the server log has the details '
                              'under this cid', cid, keep_alive), 500, None, exc
        try:
            rendered = self.render(response, cid, keep_alive, request.http_version == '1.0')
        except (TypeError, ValueError) as exc:
            logger.error('Service %s returned a response that cannot be sent: %s', name, exc, extra=context)
            return self.error(500, 'the service returned a response that cannot be sent', cid,
                              keep_alive), 500, response, exc
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug('Response %s: %s', response.status_code, render_capped(response.payload, INPUT_LOG_LIMIT),
                         extra=context)
        return rendered, response.status_code, response, None

    def render(self, response, cid, keep_alive, is_http10):
        """The bytes of a service's response; TypeError or ValueError when it cannot be sent."""
        status = response.status_code
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f'status_code {status!r} is not an HTTP status (an integer from 100 to 599)')
        body = b'' if response.payload is None else self.dumps(response.payload).encode()
        headers = [(CID_HEADER, cid.encode())]
        headers.extend((str(key).encode('latin-1'), str(value).encode('latin-1'))
                       for key, value in response.headers.items())
        return render_response(status, body, keep_alive, extra_headers=headers, is_http10=is_http10)

    def log_failure(self, name, cid, payload, headers):
        """One ERROR record with everything needed: cid, service, redacted input, traceback."""
        rendered_input = render_capped(payload, INPUT_LOG_LIMIT)
        logger.error('Service %s failed; input: %s; headers: %s', name, rendered_input,
                     render_capped(redact(headers), INPUT_LOG_LIMIT), exc_info=True,
                     extra=dict(SERVICE_FAILED.extra, cid=cid, service=name, zato_input=rendered_input))

    def error(self, status, message, cid, keep_alive, extra_headers=()):
        """A JSON error body that carries the cid, never a traceback."""
        body = json.dumps({'error': message, 'status': status, 'cid': cid}).encode()
        headers = [(CID_HEADER, cid.encode()), *extra_headers]
        return render_response(status, body, keep_alive, extra_headers=headers)

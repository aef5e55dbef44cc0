"""From a parsed HTTP request to the bytes of its response: routing, admission, JSON, errors.

No sockets here: `Router.respond()` takes a protocol Request and returns bytes, so every
status rule is testable without a server.

Routes: `GET /zato/ping` (health checks, HEAD too); `POST /services/<name>`; `POST <path>`
for each `[channels]` entry; OPTIONS on any of them. Services named `zato.*` are built-in and only
reachable through the admin socket, whose router has `is_admin` set.

Rule 1: one path out. Whatever happens (a refusal, a service's answer, its failure), the
request comes to one Outcome, and `respond()` renders every Outcome the same way, so
HTTP/1.0 keep-alive, the cid and the CORS headers never differ between success and error.
Rule 2: every request ends in an Outcome. Any exception a service raises, BaseException
subclasses included (KeyboardInterrupt, SystemExit, GeneratorExit, GreenletExit, and what
the server throws into a call still running at a stop's deadline), is a 500 with the cid
and one ERROR record with the traceback; so is a response that cannot be sent, and so is
a bug of the router itself.
Rule 3: admission before the call, in this order: an Origin not allowed is 403 (a web page
on another origin, see the README on cross-site requests); no route is 404; OPTIONS is
answered as a CORS preflight; a method not allowed is 405; a request that does not declare
a JSON body is 415 (a browser sends text/plain, form and multipart bodies, or none,
cross-site without asking first); a body that is not acceptable JSON is 400.
"""

import json
import logging
import time

from zato_daemon.errors import HttpError
from zato_daemon.http.headers import service_headers
from zato_daemon.http.payload import PayloadError, decode_json, is_json_media_type
from zato_daemon.http.protocol import render_checked
from zato_daemon.logs.levels import SERVICE_FAILED
from zato_daemon.metrics.counting import UNKNOWN_SERVICE
from zato_daemon.redaction import redact, render_capped
from zato_daemon.services.base import Request

logger = logging.getLogger('zato_daemon.http')

SERVICES_PREFIX = '/services/'
PING_PATH = '/zato/ping'
PING_SERVICE = 'zato.ping'
BUILTIN_PREFIX = 'zato.'
CID_HEADER = b'X-Zato-CID'
JSON = b'application/json'
# The redacted input of a failed call is logged up to this many characters.
INPUT_LOG_LIMIT = 4096
# How long a browser may cache a preflight's answer.
PREFLIGHT_MAX_AGE = b'600'

SERVICE_FAILURE_MESSAGE = 'the service raised an exception; the server log has the details under this cid'
UNSENDABLE_MESSAGE = ('the service returned a response that cannot be sent; the server log has the details '
                      'under this cid')


class Outcome:
    """What a request came to, before rendering.

    status and body (JSON bytes) always; headers: extra (name, value) byte pairs, already
    checked (http/headers.py); content_type: bytes. For a service call, also its Response
    (when it returned one) and the exception that failed it, for the diagnostics recorder.
    A plain class, not a dataclass: one is made per request, and a frozen dataclass's
    __init__ costs a function call per field.
    """

    __slots__ = ('status', 'body', 'headers', 'content_type', 'response', 'failure')

    def __init__(self, status, body, headers=(), content_type=JSON, response=None, failure=None):
        self.status = status
        self.body = body
        self.headers = headers
        self.content_type = content_type
        self.response = response
        self.failure = failure

    def __repr__(self):
        return f'<Outcome {self.status} body={len(self.body)}B headers={self.headers!r}>'


def error_body(status, message, cid=None):
    """The JSON body of every error response: what went wrong, the status, and the cid if any."""
    error = {'error': message, 'status': status}
    if cid is not None:
        error['cid'] = cid
    return json.dumps(error).encode()


def error_outcome(status, message, cid, headers=(), response=None, failure=None):
    return Outcome(status, error_body(status, message, cid), headers, JSON, response, failure)


class Router:
    """Maps request paths to services and renders their outcomes. One per listener."""

    def __init__(self, host, channels, is_admin=False, recorder=None, counts=None):
        self.host = host
        self.channels = dict(channels)
        self.is_admin = is_admin
        # diagnostics/recorder.py: samples and slow calls (a NullRecorder when both are off).
        self.recorder = recorder if recorder is not None else NullRecorder()
        # metrics/counting.WorkerCounts, or None when [metrics] is off (or for the admin socket).
        self.counts = counts
        main = host.config.server_config.main
        self.allowed_origins = frozenset(main.allowed_origins)
        self.max_json_depth = main.max_json_depth
        self.dumps = host.dumps_json
        # (service, header) pairs already logged as dropped: one WARNING each per worker.
        self.dropped_logged = set()

    def respond(self, request, keep_alive):
        """The complete response to `request`, as bytes to send in one write."""
        cid = self.host.new_cid()
        try:
            outcome = self.outcome_of(request, cid)
        except Exception:
            logger.exception('Internal error while answering %s %s', request.method, request.path[:200],
                             extra={'cid': cid})
            outcome = error_outcome(500, 'internal server error; the server log has the details under this cid',
                                    cid)
        if self.counts is not None:
            self.counts.responses[outcome.status // 100] += 1
        lines = b'X-Zato-CID: %s\r\n' % cid.encode()
        if outcome.headers:
            lines += _header_lines(outcome.headers)
        origin = request.headers.get('origin')
        if origin is not None and origin in self.allowed_origins:
            lines += _header_lines(_cors_headers(origin))
        return render_checked(outcome.status, outcome.body, keep_alive, outcome.content_type, lines,
                              request.http_version == '1.0', request.method == 'HEAD', time.time())

    def outcome_of(self, request, cid):
        """Admission (Rule 3), then the service call."""
        origin = request.headers.get('origin')
        if origin is not None and origin not in self.allowed_origins:
            return error_outcome(403, f'requests from web pages of origin {origin[:200]!r} are not allowed '
                                      '(see allowed_origins in server.conf)', cid)
        name, allowed = self.route(request.path)
        if name is None:
            self.count_unknown()
            return error_outcome(404, f'no service or channel at {request.path[:200]}', cid)
        if request.method == 'OPTIONS':
            return self.preflight(request, allowed, origin)
        if request.method not in allowed:
            return error_outcome(405, f'method {request.method[:32]} not allowed here; use {allowed[0]}', cid,
                                 ((b'Allow', ', '.join(allowed).encode()),))
        if (request.body or request.method == 'POST') and not is_json_media_type(
                request.headers.get('content-type', '')):
            return error_outcome(415, 'a service call takes a JSON body: send Content-Type: application/json '
                                      '(curl --json does)', cid)
        try:
            payload = decode_json(request.body, self.max_json_depth)
        except PayloadError as exc:
            return error_outcome(400, f'the request body is not acceptable JSON: {exc}', cid)
        return self.call(name, payload, cid, request)

    def count_unknown(self):
        # One label value for every path that reaches no deployed service: a scanner of random
        # paths must not add a series per path.
        if self.counts is not None:
            self.counts.service(UNKNOWN_SERVICE).client_error += 1

    def route(self, path):
        """(service name, allowed methods) for a path, or (None, ()) when nothing is there."""
        if path == PING_PATH:
            return PING_SERVICE, ('GET', 'HEAD', 'POST')
        if path.startswith(SERVICES_PREFIX):
            name = path[len(SERVICES_PREFIX):]
            if not name or (name.startswith(BUILTIN_PREFIX) and not self.is_admin):
                return None, ()
            return name, ('POST',)
        name = self.channels.get(path)
        return (name, ('POST',)) if name else (None, ())

    def preflight(self, request, allowed, origin):
        """OPTIONS: 204 with Allow; from an allowed origin (Rule 3 refused the others), what the
        browser needs to send the real request: methods, Content-Type, cache time."""
        methods = ', '.join(allowed).encode()
        headers = [(b'Allow', methods)]
        if origin is not None and 'access-control-request-method' in request.headers:
            headers += [(b'Access-Control-Allow-Methods', methods),
                        (b'Access-Control-Allow-Headers', b'Content-Type'),
                        (b'Access-Control-Max-Age', PREFLIGHT_MAX_AGE)]
        return Outcome(204, b'', tuple(headers))

    def call(self, name, payload, cid, request):
        """Runs the service and hands its outcome to the recorder."""
        deployed = self.host.store.services.get(name)
        if deployed is None:
            self.count_unknown()
            return error_outcome(404, f'no service named {name!r} is deployed', cid)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug('Request %s %s: %s', request.method, request.path, render_capped(payload, INPUT_LOG_LIMIT),
                         extra={'cid': cid, 'service': name})
        counts = self.counts
        if counts is not None:
            # The service's counts, made on its first call (a C dict lookup on every other).
            counts = counts.services.get(name) or counts.service(name)
            counts.in_flight += 1
        started = time.perf_counter()
        outcome = self.run_service(deployed.service_class, name, payload, cid, request)
        ended = time.perf_counter()
        if counts is not None:
            counts.in_flight -= 1
            counts.finished(outcome.status, ended - started)
        try:
            self.recorder.after_call(name, cid, started, ended, payload, outcome)
        except Exception:
            # Samples and slow calls are worth less than the answer they describe.
            logger.exception('Cannot record the call %s of %s for diagnostics', cid, name,
                             extra={'cid': cid, 'service': name})
        return outcome

    def run_service(self, service_class, name, payload, cid, request):
        """The Outcome of one call (Rule 2)."""
        try:
            response = self.host.run(service_class, name, cid, Request(payload, request.headers, request.method,
                                                                        request.path))
        except HttpError as exc:
            refusal = _client_error(exc)
            if refusal is not None:
                # The service refused the request on purpose: its message is meant for the client.
                logger.info('Service %s answered %d: %s', name, refusal[0], refusal[1],
                            extra={'cid': cid, 'service': name})
                return error_outcome(*refusal, cid, failure=exc)
            self.log_failure(name, cid, payload, request.headers)
            status = exc.status if type(exc.status) is int and 500 <= exc.status <= 599 else 500
            return error_outcome(status, SERVICE_FAILURE_MESSAGE, cid, failure=exc)
        except BaseException as exc:
            self.log_failure(name, cid, payload, request.headers)
            return error_outcome(500, SERVICE_FAILURE_MESSAGE, cid, failure=exc)
        try:
            outcome = self.success(name, response)
        except BaseException as exc:
            self.log_failure(name, cid, payload, request.headers, 'returned a response that cannot be sent')
            return error_outcome(500, UNSENDABLE_MESSAGE, cid, response=response, failure=exc)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug('Response %s: %s', response.status_code, render_capped(response.payload, INPUT_LOG_LIMIT),
                         extra={'cid': cid, 'service': name})
        return outcome

    def success(self, name, response):
        """The Outcome of a service's Response; raises when it cannot be sent."""
        status = response.status_code
        if status.__class__ is not int and isinstance(status, int) and not isinstance(status, bool):
            # An int subclass could render as anything; the value alone goes on (and into the
            # response heads kept for the second, http/protocol.py).
            status = int.__int__(status)
        if status.__class__ is not int or not 200 <= status <= 599:
            raise ValueError(f'status_code {response.status_code!r} is not a final HTTP status '
                             '(an integer from 200 to 599)')
        payload = response.payload
        body = b'' if payload is None else self.dumps(payload).encode()
        if not response.headers:
            return Outcome(status, body, (), JSON, response)
        content_type, headers, dropped = service_headers(response.headers)
        if dropped:
            self.log_dropped(name, dropped)
        return Outcome(status, body, headers, content_type or JSON, response)

    def log_dropped(self, name, dropped):
        """One WARNING per service and header name: the server sets these headers itself."""
        for header in dropped:
            key = (name, header.lower())
            if key not in self.dropped_logged:
                self.dropped_logged.add(key)
                logger.warning('Service %s set the response header %s, which the server sets itself '
                               '(or a Content-Type that is not JSON); its value is not sent', name, header,
                               extra={'service': name})

    def log_failure(self, name, cid, payload, headers, what='failed'):
        """One ERROR record with everything needed: cid, service, redacted input, traceback."""
        rendered_input = render_capped(payload, INPUT_LOG_LIMIT)
        logger.error('Service %s %s; input: %s; headers: %s', name, what, rendered_input,
                     render_capped(redact(headers), INPUT_LOG_LIMIT), exc_info=True,
                     extra=dict(SERVICE_FAILED.extra, cid=cid, service=name, zato_input=rendered_input))


class NullRecorder:
    """The recorder when samples and slow calls are both off: keeps nothing."""

    def after_call(self, name, cid, started, ended, payload, outcome):
        pass


def _client_error(exc):
    """(status, message) of an HttpError a service raised to refuse a request (a 4xx), or None
    when it is not one: a 5xx, or a status or message of the wrong type, which fail the call."""
    status = exc.status
    if type(status) is not int or not 400 <= status <= 499:
        return None
    try:
        return status, str(exc.reason)
    except Exception:
        return None


def _header_lines(pairs):
    """Checked (name, value) pairs as the bytes of their header lines."""
    return b''.join(b'%s: %s\r\n' % pair for pair in pairs)


def _cors_headers(origin):
    return ((b'Access-Control-Allow-Origin', origin.encode('latin-1')), (b'Vary', b'Origin'),
            (b'Access-Control-Expose-Headers', b'X-Zato-CID'))

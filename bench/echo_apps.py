"""The echo of bench/compare.py as a raw ASGI app (uvicorn) and a raw RSGI app (granian).

No framework: each reads the whole body, json.loads it and answers json.dumps of it with
Content-Type application/json, the same work as throughput.py's WSGI_APP (which gunicorn
and granian's WSGI interface run) and as zato-daemon's demo.echo. These run in the
benchmark venv's interpreter, never in zato-daemon's.
"""

import json

_JSON_HEADERS = [(b'content-type', b'application/json')]


async def asgi(scope, receive, send):
    if scope['type'] != 'http':  # uvicorn runs with --lifespan off; nothing else is sent here
        return
    body = b''
    more = True
    while more:
        message = await receive()
        body += message.get('body', b'')
        more = message.get('more_body', False)
    answer = json.dumps(json.loads(body) if body else None).encode()
    await send({'type': 'http.response.start', 'status': 200,
                'headers': _JSON_HEADERS + [(b'content-length', str(len(answer)).encode())]})
    await send({'type': 'http.response.body', 'body': answer})


async def rsgi(scope, protocol):
    body = await protocol()
    answer = json.dumps(json.loads(body) if body else None)
    # granian adds Content-Length itself for a bytes body.
    protocol.response_bytes(200, [('content-type', 'application/json')], answer.encode())

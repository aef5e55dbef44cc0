"""Which response headers a service may set (http/headers.py), case by case."""

import pytest

from zato_daemon.http.headers import OWNED_HEADERS, InvalidHeader, service_headers


def test_no_headers():
    assert service_headers({}) == (None, (), ())


@pytest.mark.parametrize('name', sorted(OWNED_HEADERS) + ['Content-Length', 'X-ZATO-CID'])
def test_headers_the_server_owns_are_dropped(name):
    assert service_headers({name: '1', 'X-Other': 'b'}) == (None, ((b'X-Other', b'b'),), (name,))


@pytest.mark.parametrize('value, content_type, dropped', [
    ('application/json', b'application/json', ()),
    ('application/problem+json; charset=utf-8', b'application/problem+json; charset=utf-8', ()),
    (' application/json ', b'application/json', ()),
    ('text/html', None, ('Content-Type',)),
    ('application/json; charset=iso-8859-1', None, ('Content-Type',)),
])
def test_content_type_is_replaced_by_json_types_only(value, content_type, dropped):
    assert service_headers({'Content-Type': value}) == (content_type, (), dropped)


@pytest.mark.parametrize('headers, problem', [
    ({'X-A': 'a\r\nB: c'}, 'control character'),
    ({'X-A': 'a\nb'}, 'control character'),
    ({'X-A': 'a\x00b'}, 'control character'),
    ({'X-A': '\x7f'}, 'control character'),
    ({'X A': 'b'}, 'not an HTTP token'),
    ({'': 'b'}, 'not an HTTP token'),
    ({'X-\u00e9': 'b'}, 'not an HTTP token'),
    ({'X-A': '\u20ac'}, 'outside latin-1'),
])
def test_invalid_names_and_values_are_refused(headers, problem):
    with pytest.raises(InvalidHeader, match=problem):
        service_headers(headers)


def test_values_are_sent_as_text_of_any_type():
    assert service_headers({'X-Count': 3, 'X-Tab': 'a\tb', 'X-Latin': 'caf\u00e9'})[1] == (
        (b'X-Count', b'3'), (b'X-Tab', b'a\tb'), (b'X-Latin', b'caf\xe9'))

import pytest

from zato_daemon.logs.redact import REDACTED, is_secret_name, redact, render_capped


@pytest.mark.parametrize('name', ['password', 'db_password', 'passwd', 'PWD', 'Authorization', 'api_key',
                                  'apiKey', 'X-Api-Key', 'key', 'private-key', 'secret_key', 'client_secret',
                                  'token', 'access_token', 'Cookie', 'session_id', 'credentials', 'pass'])
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize('name', ['name', 'user', 'keys', 'keyboard', 'monkey', 'passenger', 'turkey', 'id',
                                  'compass', 'amount'])
def test_ordinary_names(name):
    assert not is_secret_name(name)


def test_redaction_is_recursive_and_leaves_the_input_alone():
    value = {'user': 'alice', 'password': 'hunter2', 'nested': [{'token': 't', 'ok': 1}, {'inner': {'key': 'k'}}]}
    assert redact(value) == {'user': 'alice', 'password': REDACTED,
                             'nested': [{'token': REDACTED, 'ok': 1}, {'inner': {'key': REDACTED}}]}
    assert value['password'] == 'hunter2'


def test_a_secret_subtree_is_replaced_whole():
    assert redact({'credentials': {'user': 'a', 'pin': 1}}) == {'credentials': REDACTED}


def test_render_capped_cuts_and_says_how_much():
    assert render_capped({'password': 'hunter2'}, 100) == f'{{"password": "{REDACTED}"}}'
    text = render_capped({'data': 'x' * 100, 'password': 'p'}, 40)
    assert text.endswith('more characters)')
    assert len(text.split('...')[0]) == 40


def test_render_capped_survives_odd_values():
    assert render_capped({'when': object()}, 100).startswith('{"when": "<object object')
    assert render_capped(b'\xff', 100)

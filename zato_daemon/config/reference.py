"""Renders the configuration reference, docs/config.md, from the table in settings.py.

`python -m zato_daemon.config.reference > docs/config.md` regenerates it; a unit test fails when
the committed file differs from `render()`. The output depends on nothing but settings.py.
"""

from zato_daemon.config import settings

REGENERATE = 'python -m zato_daemon.config.reference > docs/config.md'

HEADER = (f'Generated from `zato_daemon/config/settings.py`; do not edit. '
          f'Regenerate with `{REGENERATE}`.')

SYNTAX = f"""\
A server directory (`/etc/zato-daemon/` when installed) holds up to four INI files. Only
`server.conf` is required; a missing `pickup.conf`, `simple-io.conf` or `sso.conf` means all
their defaults. The shipped files list every key with its default.

Syntax, the same in every file:

- Sections are written `[name]`; keys are `key = value`. Only `=` separates a key from its
  value, so keys such as channel paths may contain `:`.
- Keys and section names are case-sensitive. A key or section not listed below is an error,
  reported with its file and line.
- Comments take a line of their own, starting with `#` or `;`. There are no comments after a
  value: `#` and `;` there are part of the value.
- `%` has no special meaning (no interpolation).
- A value continues on the following lines that are indented deeper than its key; lists
  accept commas, line breaks or both between items.
- Booleans are `true`/`false`, `yes`/`no`, `on`/`off` or `1`/`0`, in any case.
- Every number has a range, given with its key below (and in the shipped files); a value
  outside it is an error, at start, at a reload and in `check-config`.
- Each file is a regular file of UTF-8 text, at most {settings.MAX_FILE_SIZE // 1024 // 1024} MiB; a
  byte order mark at its start is ignored. A FIFO, a device or a directory in its place is
  an error."""


def render():
    """Returns the whole reference as Markdown text ending with a newline."""
    parts = [HEADER, '# Configuration reference', SYNTAX]
    for file in settings.CONFIG_FILES:
        parts.extend(render_file(file))
    return '\n\n'.join(parts) + '\n'


def render_file(file):
    """Returns the Markdown blocks of one file: its heading, its doc and its sections."""
    parts = [f'## {file}', settings.FILE_DOCS[file]]
    for spec in settings.sections_of(file):
        parts.extend(render_section(spec))
    return parts


def render_section(spec):
    """Returns the Markdown blocks of one section: its heading, its doc and its keys."""
    parts = [f'### [{spec.name}]', spec.doc]
    if spec.is_dynamic:
        parts.append(f'Keys: {spec.key_validator.expected}. '
                     f'Values: {spec.value_validator.expected}.')
    for setting in settings.settings_of(spec.file, spec.name):
        parts.append(render_setting(setting))
    return parts


def render_setting(setting):
    """Returns one key as a Markdown list item: name, type, default, short help, full doc."""
    default = f'`{setting.default}`' if setting.default else 'empty'
    first, _, rest = setting.doc.partition('\n')
    item = f'- **`{setting.name}`** ({setting.type}, default {default}): {first}'
    body = [f'  {line}' if line else '' for line in rest.strip('\n').splitlines()]
    return '\n'.join([item, ''] + body) if body else item


def comment_lines(setting):
    """The comment block above a key in the shipped etc/zato-daemon/*.conf: its doc, then its
    range for a numeric key. A unit test holds the shipped files to it."""
    lines = [f'# {line}' if line else '#' for line in setting.doc.splitlines()]
    range_text = getattr(setting.validator, 'range_text', None)
    if range_text:
        lines += ['#', f'# Range: {range_text}.']
    return lines


def main():
    """Prints the reference to stdout."""
    print(render(), end='')


if __name__ == '__main__':
    main()

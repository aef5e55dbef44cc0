"""What `zato-daemon cluster DIR` decides and prints, from the members' records. Pure.

The decision a deploy pipeline gates on, `Comparison.consistent`: at least one member, every
member's services known, and every service deployed on every member from the same module
(the same SHA-256). Anything else is a difference, and each is named.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceRow:
    """One service across the members: host name -> SHA-256, or None where it is not deployed."""

    name: str
    hashes: dict

    @property
    def same(self):
        return None not in self.hashes.values() and len(set(self.hashes.values())) == 1


@dataclass(frozen=True)
class Comparison:
    members: list
    rows: list
    # Members that have not listed their services yet (their workers were not answering).
    unknown: list

    @property
    def consistent(self):
        return bool(self.members) and not self.unknown and all(row.same for row in self.rows)

    @property
    def differing(self):
        return [row for row in self.rows if not row.same]


def compare(members):
    """Every service any member deploys, with each member's hash. `members`: records."""
    hosts = [member['host_name'] for member in members]
    known = [member for member in members if member.get('services') is not None]
    names = sorted({name for member in known for name in member['services']})
    rows = [ServiceRow(name, {member['host_name']: member['services'].get(name) for member in known})
            for name in names]
    return Comparison(members=hosts, rows=rows,
                      unknown=[member['host_name'] for member in members if member.get('services') is None])


def member_rows(members, now):
    """The members as `cluster` shows them: ages from `now`, by each member's own clock."""
    return [{'host_name': member['host_name'], 'pid': member.get('pid'), 'version': member.get('version'),
             'listen': member.get('listen'), 'started_at': member.get('started_at'),
             'last_seen': member.get('last_seen'),
             'uptime_seconds': _age(now, member.get('started_at')),
             'last_seen_seconds_ago': _age(now, member.get('last_seen'))}
            for member in members]


def as_json(cluster, shown_url, members, now):
    """The --json form: stable keys, hashes per host, and the decision."""
    comparison = compare(members)
    return {'cluster': cluster, 'redis_url': shown_url, 'consistent': comparison.consistent,
            'members': member_rows(members, now), 'services_unknown': comparison.unknown,
            'services': {row.name: {'same': row.same, 'hashes': row.hashes} for row in comparison.rows}}


def render(cluster, shown_url, members, now, format_duration):
    """The text form: a header, a table of members, then the services, differences first and
    spelled out host by host."""
    comparison = compare(members)
    lines = [f'cluster {cluster} on {shown_url}: {len(members)} member(s)']
    if not members:
        lines.append('no member is registered (none running, or each one\'s heartbeat expired)')
        return '\n'.join(lines)
    table = [('HOST', 'PID', 'VERSION', 'LISTEN', 'UPTIME', 'LAST SEEN')]
    for row in member_rows(members, now):
        table.append((row['host_name'], str(row['pid']), str(row['version']), str(row['listen']),
                      _duration(row['uptime_seconds'], format_duration),
                      _seconds_ago(row['last_seen_seconds_ago'])))
    widths = [max(len(cells[column]) for cells in table) for column in range(len(table[0]))]
    lines += ['  '.join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() for cells in table]
    differing = comparison.differing
    lines.append('')
    lines.append(f'services: {len(comparison.rows)}, ' + (
        'the same on every member' if comparison.consistent else f'{len(differing)} differ'))
    for host in comparison.unknown:
        lines.append(f'  {host}: services not known yet (its workers have not answered)')
    for row in differing:
        lines.append(f'  DIFFERS {row.name}')
        for host in comparison.members:
            if host in row.hashes:
                lines.append(f'    {host}  {row.hashes[host] or "- (not deployed)"}')
    for row in comparison.rows:
        if row.same:
            lines.append(f'  same    {row.name}  {next(iter(row.hashes.values()))}')
    return '\n'.join(lines)


def _age(now, then):
    return None if not isinstance(then, (int, float)) else round(max(0.0, now - then), 3)


def _duration(seconds, format_duration):
    return '-' if seconds is None else format_duration(seconds)


def _seconds_ago(seconds):
    return '-' if seconds is None else f'{seconds:.0f} s ago'

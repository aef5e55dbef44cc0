"""Several booted Debian hosts on one machine, joined by a LAN of their own, for system tests.

Theory of operation (the recipe of DESIGN.md, "Several hosts on one machine"):

1. A namespace `zt-lan-PID-RAND` holds a bridge, `br0`. Nothing of it is in the host's own
   network namespace: the LAN reaches neither the host nor anything beyond it.
2. Each host gets a namespace `zt-hN-PID-RAND` and a veth pair created inside the LAN
   namespace: `vhN` stays there on the bridge, its peer moves into the host's namespace as
   `eth0`, with the address 10.X.0.N/24. X is picked so that no address or route of the
   machine is in 10.X.0.0/16 (`free_subnet`), so no test ever sends to a real network.
3. Each host is a `Container` (container.py) booted with
   `--network-namespace-path=/run/netns/zt-hN-...`: systemd, journald, apt, as on a real
   host. Units named in `masked` are masked in each copy before it boots.
4. `cut(host)` sets `vhN` down on the bridge side, as a pulled cable would: the host keeps
   its address and its own loopback; `restore(host)` sets it up again.
5. `stop()` powers off every container and deletes every namespace made here, also after a
   failure half-way through `start()`. Names carry the pid of the test process, so the next
   run deletes what a killed one left (`stale_namespaces`).

Only root can do this (`ip netns`, nspawn). Use as a context manager.
"""

import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass

from tests.system.container import Container, ContainerError, mask_units

PREFIX = 'zt-'
# zt-lan-PID-RAND and zt-hN-PID-RAND: the pid says whether the run that made it still lives.
NAMESPACE_PATTERN = re.compile(r'^zt-(?:lan|h\d+)-(\d+)-[0-9a-f]+$')
BRIDGE = 'br0'
# Second octets tried for 10.X.0.0/24, from a corner of 10/8 that networks rarely use.
SUBNET_OCTETS = range(231, 251)
HOST_TOOLS = ('ip',)
IP_TIMEOUT = 30


class LanError(Exception):
    """The LAN could not be made; the message says why."""


# ---- pure

def namespace_names(pid, token, count):
    """(LAN namespace, [host namespaces]) of a run."""
    return f'{PREFIX}lan-{pid}-{token}', [f'{PREFIX}h{index}-{pid}-{token}' for index in range(1, count + 1)]


def stale_namespaces(names, alive):
    """The namespaces among `names` that a test process which no longer exists left behind:
    ours by name, and `alive(pid)` false. Anything else (another tool's, a live run's) stays."""
    stale = []
    for name in names:
        match = NAMESPACE_PATTERN.match(name)
        if match and not alive(int(match[1])):
            stale.append(name)
    return stale


def free_subnet(used, octets=SUBNET_OCTETS):
    """The first 10.X.0.0/24 for X in `octets` whose 10.X.0.0/16 overlaps none of the networks
    in `used` (ip_network objects: the machine's addresses and routes). LanError when none is
    free. The whole /16 is kept clear, so that a host route or a wider one nearby also counts."""
    for octet in octets:
        block = ipaddress.ip_network(f'10.{octet}.0.0/16')
        if not any(network.version == 4 and block.overlaps(network) for network in used):
            return ipaddress.ip_network(f'10.{octet}.0.0/24')
    raise LanError(f'every 10.X.0.0/16 for X in {octets.start}..{octets.stop - 1} is used on this machine')


def host_address(subnet, index):
    """The address of host `index` (1..) in `subnet`."""
    if not 1 <= index < subnet.num_addresses - 1:
        raise ValueError(f'host {index} does not fit in {subnet}')
    return subnet.network_address + index


def networks_in_use(addresses_json, routes_json):
    """The networks the machine uses, from `ip -j address` and `ip -j route` output; the
    default route (0.0.0.0/0) is not a network anyone is on, and is left out."""
    used = []
    for interface in json.loads(addresses_json or '[]'):
        for info in interface.get('addr_info', []):
            if info.get('family') == 'inet':
                used.append(ipaddress.ip_network(f'{info["local"]}/{info["prefixlen"]}', strict=False))
    for route in json.loads(routes_json or '[]'):
        destination = route.get('dst')
        if destination and destination != 'default':
            used.append(ipaddress.ip_network(destination if '/' in destination else f'{destination}/32',
                                             strict=False))
    return used


# ---- I/O

def host_problems():
    """What this machine lacks for a LAN, beyond what container.host_problems() checks."""
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    return [f'missing tools: {", ".join(missing)} (apt-get install iproute2)'] if missing else []


def ip(*args, check=True):
    """`ip ARGS` on the machine; raises LanError with its output when it fails under `check`."""
    result = subprocess.run(['ip', *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and result.returncode != 0:
        raise LanError(f'ip {" ".join(args)} exited with {result.returncode}: {result.stderr.strip()}')
    return result


def list_namespaces():
    return [line.split()[0] for line in ip('netns', 'list').stdout.splitlines() if line.strip()]


def remove_stale_namespaces():
    """Deletes the namespaces of earlier runs that were killed before their teardown, and
    kills what still runs in them. nspawn gets SIGTERM when its test process dies and shuts
    its container down, but a shutdown can hang (seen: a container killed while booting sat
    in systemd-shutdown for minutes). Only processes inside a namespace that carries a dead
    test process's pid are killed: the containers of that run and nothing else. Deleting the
    LAN namespace deletes the veths in it."""
    stale = stale_namespaces(list_namespaces(), lambda pid: os.path.exists(f'/proc/{pid}'))
    for name in stale:
        for pid in ip('netns', 'pids', name, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        ip('netns', 'del', name, check=False)
    return stale


@dataclass
class Host:
    """One host of the LAN: its name (h1, h2, ...), namespace, address, bridge-side veth, container."""

    name: str
    namespace: str
    address: ipaddress.IPv4Address
    veth: str
    container: Container = None


class Lan:
    """`count` booted hosts on a bridge: `hosts[0]` is h1 at 10.X.0.1, and so on."""

    def __init__(self, base, count=3, masked=(), workdir_parent='/var/tmp'):
        self.base = base
        self.masked = tuple(masked)
        self.workdir_parent = workdir_parent
        token = secrets.token_hex(3)
        self.namespace, host_namespaces = namespace_names(os.getpid(), token, count)
        self.subnet = None
        self.hosts = [Host(f'h{index}', namespace, None, f'vh{index}')
                      for index, namespace in enumerate(host_namespaces, 1)]
        self._made = []  # namespaces created, deleted at stop

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def host(self, name):
        return next(host for host in self.hosts if host.name == name)

    def start(self):
        """Makes the LAN and boots every host; on any failure, undoes all of it and raises."""
        try:
            remove_stale_namespaces()
            self.subnet = free_subnet(networks_in_use(ip('-j', 'address').stdout, ip('-j', 'route').stdout))
            self._add_namespace(self.namespace)
            self._in_lan('link', 'add', BRIDGE, 'type', 'bridge')
            self._in_lan('link', 'set', BRIDGE, 'up')
            for index, host in enumerate(self.hosts, 1):
                host.address = host_address(self.subnet, index)
                self._wire(host)
            # One at a time, from this thread: nspawn dies with the thread that started it
            # (PR_SET_PDEATHSIG follows the thread), so a pool's thread would take its container
            # down when it ends.
            for host in self.hosts:
                host.container = MaskingContainer(self.base, self.masked, host.namespace, self.workdir_parent)
                host.container.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _add_namespace(self, name):
        ip('netns', 'add', name)
        self._made.append(name)

    def _in_lan(self, *args):
        return ip('-n', self.namespace, *args)

    def _wire(self, host):
        self._add_namespace(host.namespace)
        # Created inside the LAN namespace, the peer moved straight to the host's: nothing is
        # ever added to the machine's own namespace, where a name could collide.
        self._in_lan('link', 'add', host.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.namespace)
        self._in_lan('link', 'set', host.veth, 'master', BRIDGE)
        self._in_lan('link', 'set', host.veth, 'up')
        ip('-n', host.namespace, 'address', 'add', f'{host.address}/{self.subnet.prefixlen}', 'dev', 'eth0')
        ip('-n', host.namespace, 'link', 'set', 'eth0', 'up')
        ip('-n', host.namespace, 'link', 'set', 'lo', 'up')

    def cut(self, host):
        """The host's link down on the bridge side: the host is cut off the LAN."""
        self._in_lan('link', 'set', self._own(host).veth, 'down')

    def restore(self, host):
        """The host's link up again."""
        self._in_lan('link', 'set', self._own(host).veth, 'up')

    def link_up(self, host):
        """Whether the bridge side of the host's link is up."""
        state = json.loads(self._in_lan('-j', 'link', 'show', self._own(host).veth).stdout)[0]
        return 'UP' in state.get('flags', [])

    def _own(self, host):
        if isinstance(host, str):
            host = self.host(host)
        if host not in self.hosts:
            raise LanError(f'{host.name} is not a host of this LAN')
        return host

    def stop(self):
        """Powers off every container, then deletes every namespace made here. Goes on past
        failures and raises the first at the end."""
        errors = []
        for host in self.hosts:
            if host.container is not None:
                try:
                    host.container.stop()
                except Exception as exc:  # the other hosts and the namespaces still go
                    errors.append(exc)
        for name in reversed(self._made):
            result = ip('netns', 'del', name, check=False)
            if result.returncode != 0 and name in list_namespaces():
                errors.append(LanError(f'ip netns del {name}: {result.stderr.strip()}'))
        self._made.clear()
        if errors:
            raise errors[0]


class MaskingContainer(Container):
    """A Container in a given network namespace whose copy has `masked` units masked before it
    boots (a unit that would otherwise start at boot with a configuration not the test's)."""

    def __init__(self, base, masked, namespace, workdir_parent):
        super().__init__(base, workdir_parent=workdir_parent, network_namespace=f'/run/netns/{namespace}')
        self.masked = masked

    def _boot(self):
        missing = set(self.masked) - set(mask_units(self.root, self.masked))
        if missing:
            raise ContainerError(f'the tree has no {", ".join(sorted(missing))} to mask')
        super()._boot()

"""The worker's reports to the master: frames on a pipe of their own, apart from the status pipe.

A frame is a 4-byte big-endian length and that many bytes of JSON (counting.WorkerCounts.report).
The status pipe (worker/channel.py) carries one-byte messages that a reader finds by
membership; a report may hold any byte and be longer than PIPE_BUF, so it cannot share it.
Reports are cumulative: a lost or partial one costs nothing the next one does not carry.
"""

import json
import struct

# A worker sends its counts this often; a worker killed with SIGKILL loses at most this much.
REPORT_INTERVAL = 1.0
_LENGTH = struct.Struct('>I')
# A report of thousands of services is a few MiB; a length past this is a broken stream.
MAX_FRAME = 64 * 1024 * 1024


def encode_report(report):
    body = json.dumps(report, separators=(',', ':')).encode()
    return _LENGTH.pack(len(body)) + body


class BrokenStream(ValueError):
    """The bytes on a worker's report pipe are no frame: nothing more can be read from it."""


class FrameReader:
    """Collects a worker's frames from the bytes read on its pipe, in whatever pieces they come."""

    def __init__(self):
        self.buffer = bytearray()
        self.is_broken = False

    def feed(self, data):
        """The reports complete after `data`, oldest first. Raises BrokenStream once, when a frame
        is impossible (too long, not JSON, not an object); after that, everything is ignored."""
        if self.is_broken:
            return []
        self.buffer += data
        reports = []
        while len(self.buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self.buffer)
            if length > MAX_FRAME:
                self._break()
                raise BrokenStream(f'a frame of {length} bytes announced, over {MAX_FRAME}')
            end = _LENGTH.size + length
            if len(self.buffer) < end:
                break
            body = bytes(self.buffer[_LENGTH.size:end])
            del self.buffer[:end]
            try:
                report = json.loads(body)
            except ValueError as exc:
                self._break()
                raise BrokenStream(f'a frame that is not JSON: {exc}') from None
            if not isinstance(report, dict):
                self._break()
                raise BrokenStream(f'a frame that is not a JSON object but {type(report).__name__}')
            reports.append(report)
        return reports

    def _break(self):
        self.is_broken = True
        self.buffer.clear()

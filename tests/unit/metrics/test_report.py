"""The frames of the worker's report pipe, read in whatever pieces the pipe gives."""

import struct

import pytest

from zato_daemon.metrics.report import MAX_FRAME, BrokenStream, FrameReader, encode_report


def test_frames_fed_byte_by_byte_come_out_whole_and_in_order():
    data = encode_report({'n': 1}) + encode_report({'n': 2, 'text': 'é\x00'})
    reader = FrameReader()
    reports = []
    for index in range(len(data)):
        reports += reader.feed(data[index:index + 1])
    assert reports == [{'n': 1}, {'n': 2, 'text': 'é\x00'}]
    assert reader.buffer == bytearray()


def test_several_frames_in_one_read_all_come_out():
    reader = FrameReader()
    assert reader.feed(b''.join(encode_report({'n': n}) for n in range(5))) == [{'n': n} for n in range(5)]


def test_a_partial_frame_waits_for_the_rest():
    frame = encode_report({'services': {'a': [1, 0, 0, 0, 0.1, [1]]}})
    reader = FrameReader()
    assert reader.feed(frame[:-1]) == []
    assert reader.feed(frame[-1:]) == [{'services': {'a': [1, 0, 0, 0, 0.1, [1]]}}]


@pytest.mark.parametrize('data, problem', [
    (struct.pack('>I', MAX_FRAME + 1), 'over'),
    (struct.pack('>I', 3) + b'{{{', 'not JSON'),
    (struct.pack('>I', 2) + b'[]', 'not a JSON object'),
])
def test_a_broken_stream_is_said_once_then_ignored(data, problem):
    reader = FrameReader()
    with pytest.raises(BrokenStream, match=problem):
        reader.feed(data)
    assert reader.feed(encode_report({'n': 1})) == []

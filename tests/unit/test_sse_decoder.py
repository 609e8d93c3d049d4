"""The SSE decoder on the byte splits real connections produce."""

from __future__ import annotations

from polyroute.adapters.sse import SSEDecoder

STREAM = (
    b": keep-alive comment\n"
    b"data: {\"a\": 1}\n\n"
    b"event: content_block_delta\r\n"
    b"data: first line\r\n"
    b"data: second line\r\n"
    b"\r\n"
    b"id: 7\n"
    b"data:no space\n\n"
    + "data: caf\u00e9 \u4f60\u597d\n\n".encode()
    + b"data: [DONE]\n\n"
)
EVENTS = [
    ("message", '{"a": 1}'),
    ("content_block_delta", "first line\nsecond line"),
    ("message", "no space"),
    ("message", "caf\u00e9 \u4f60\u597d"),
    ("message", "[DONE]"),
]


def decode(pieces: list[bytes]) -> list[tuple[str, str]]:
    decoder = SSEDecoder()
    out = []
    for piece in pieces:
        out += decoder.feed(piece)
    return out + decoder.end()


def test_whole_body_at_once() -> None:
    assert decode([STREAM]) == EVENTS


def test_every_split_point_gives_the_same_events() -> None:
    # Including splits inside CRLF and inside a multi-byte UTF-8 character.
    for cut in range(1, len(STREAM)):
        assert decode([STREAM[:cut], STREAM[cut:]]) == EVENTS, cut


def test_one_byte_at_a_time() -> None:
    assert decode([STREAM[i:i + 1] for i in range(len(STREAM))]) == EVENTS


def test_an_event_without_its_blank_line_counts_at_the_end() -> None:
    assert decode([b"data: x\n\ndata: last"]) == [("message", "x"), ("message", "last")]
    assert decode([b"event: ping\n\n"]) == []


def test_whole_data_events_and_everything_else_decode_alike() -> None:
    # Reads of whole one-line data events take a shorter way; anything else in them takes the long one.
    reads = [b"data: a\n\ndata:b\n\n", b"data: c\n\n", b"event: e\ndata: d\n\n", b"data: x\ndata: y\n\n",
             b": comment\n\ndata: z\n\n", b"data: \xe4\xbd\xa0\n\n", b"data: \n\n"]
    assert decode(reads) == [("message", "a"), ("message", "b"), ("message", "c"), ("e", "d"),
                             ("message", "x\ny"), ("message", "z"), ("message", "\u4f60"), ("message", "")]
    for read in reads:
        assert SSEDecoder._whole_data_events(read) in (None, decode([read])), read

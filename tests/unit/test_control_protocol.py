"""The control wire format: requests and responses both ways, and every malformed input refused."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mipd.config.types import LogLevel
from mipd.control.protocol import (
    LOG_LEVELS,
    MAX_REQUEST_BYTES,
    ProtocolError,
    Request,
    Response,
    decode_request,
    decode_response,
    encode_error,
    encode_request,
    encode_result,
)
from mipd.obs.levels import LEVELS

# request -> its wire line
REQUESTS = [
    (Request("status"), b'{"command":"status"}\n'),
    (Request("bindings"), b'{"command":"bindings"}\n'),
    (Request("visitors"), b'{"command":"visitors"}\n'),
    (Request("stats"), b'{"command":"stats"}\n'),
    (Request("reload"), b'{"command":"reload"}\n'),
    (Request("flush", home_address=IPv4Address("10.1.0.10")), b'{"command":"flush","home_address":"10.1.0.10"}\n'),
    (Request("log-level", level="debug"), b'{"command":"log-level","level":"debug"}\n'),
]


@pytest.mark.parametrize(("request_", "line"), REQUESTS)
def test_requests_both_ways(request_: Request, line: bytes) -> None:
    assert encode_request(request_) == line
    assert decode_request(line) == request_


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"", "request is not JSON"),
        (b"null\n", "request is not a JSON object"),
        (b'"status"\n', "request is not a JSON object"),
        (b'{"command": 7}\n', 'no "command" string'),
        (b'{"command": "STATUS"}\n', "unknown command 'STATUS'"),
        (b'{"command": "flush", "home_address": null}\n', "flush needs one"),
        (b'{"command": "flush", "home_address": 167837706}\n', "home_address must be a string"),
        (b'{"command": "flush", "home_address": "::1"}\n', "'::1' is not an IPv4 address"),
        (b'{"command": "log-level"}\n', "log-level needs 'level'"),
        (b'{"command": "log-level", "level": ["debug"]}\n', "level must be a string"),
        (b'{"command": "bindings", "level": "debug"}\n', "bindings takes no argument 'level'"),
        (b'{"command": "status"} trailing\n', "request is not JSON"),
        (b'{"command": "status", "x": NaN}\n', "takes no argument 'x'"),
        (b"{" * (MAX_REQUEST_BYTES + 1), "request longer than"),
    ],
)
def test_malformed_requests_are_refused_with_a_reason(line: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=None) as refusal:
        decode_request(line)
    assert message in str(refusal.value)


def test_a_client_cannot_encode_what_the_server_refuses() -> None:
    with pytest.raises(ProtocolError):
        encode_request(Request("flush"))
    with pytest.raises(ProtocolError):
        encode_request(Request("status", level="debug"))
    with pytest.raises(ProtocolError):
        encode_request(Request("log-level", level="verbose"))


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    """Invariant: decode_request returns a valid Request or raises ProtocolError, nothing else."""
    try:
        request = decode_request(data)
    except ProtocolError:
        return
    assert encode_request(request)  # what was accepted is a valid request


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(["status", "flush", "log-level", "debug", "1.2.3.4"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["command", "home_address", "level", "x"]), inner, max_size=3),
)


@given(JSON_VALUES)
def test_any_json_decodes_to_what_it_says_or_raises_protocol_error(value: object) -> None:
    """Invariant: an accepted request is exactly the object sent; anything else is a ProtocolError."""
    try:
        request = decode_request(json.dumps(value).encode())
    except ProtocolError:
        return
    assert request.to_json() == value


def test_responses_both_ways() -> None:
    assert encode_result({"bindings": []}) == b'{"ok":true,"result":{"bindings":[]}}\n'
    assert decode_response(encode_result({"bindings": []})) == Response(ok=True, result={"bindings": []})
    assert encode_error("no binding") == b'{"ok":false,"error":"no binding"}\n'
    assert decode_response(encode_error("no binding")) == Response(ok=False, error="no binding")


@pytest.mark.parametrize(
    "line",
    [b"", b"[]\n", b'{"ok": "yes"}\n', b'{"ok": true}\n', b'{"ok": true, "result": []}\n', b'{"ok": false}\n'],
)
def test_malformed_responses_are_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_response(line)


def test_a_result_that_is_not_json_cannot_be_encoded() -> None:
    with pytest.raises((TypeError, ValueError)):
        encode_result({"when": float("nan")})
    with pytest.raises((TypeError, ValueError)):
        encode_result({"address": IPv4Address("10.0.0.1")})


def test_log_levels_are_the_profiles_log_level_values() -> None:
    assert LOG_LEVELS == get_args(LogLevel) == tuple(LEVELS)

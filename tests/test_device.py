"""micronas.device: the link settings (--timeout / --retries) and how they reach the client."""

from __future__ import annotations

import contextlib

import pytest

from micronas.device import Link, open_device
from micronas_base.errors import UsageError


@pytest.mark.parametrize("kwargs, needle", [
    ({"timeout_s": 0}, "--timeout 0; expected seconds in (0, 3600]"),
    ({"timeout_s": -1.5}, "--timeout -1.5"),
    ({"timeout_s": 4000}, "--timeout 4000"),
    ({"retries": -1}, "--retries -1; expected an integer in [0, 100]"),
    ({"retries": 101}, "--retries 101"),
    ({"retries": True}, "--retries True"),
])
def test_bad_link_settings_name_the_value(kwargs, needle):
    with pytest.raises(UsageError) as e:
        Link(**kwargs)
    assert needle in e.value.message and e.value.hint


def test_open_device_hands_the_link_to_the_client(monkeypatch):
    from targets import protocol

    seen = {}

    @contextlib.contextmanager
    def fake_open(url, timeout_s, retries):
        seen.update(url=url, timeout_s=timeout_s, retries=retries)
        yield "client"

    monkeypatch.setattr(protocol.DeviceClient, "open", staticmethod(fake_open))
    board, image = object(), object()
    with open_device(board, image, port="loop://", link=Link(timeout_s=7.5, retries=9)) as dev:
        assert dev == "client"
    assert seen == {"url": "loop://", "timeout_s": 7.5, "retries": 9}
    with open_device(board, image, port="loop://"):
        pass
    assert (seen["timeout_s"], seen["retries"]) == (protocol.DEFAULT_TIMEOUT_S, protocol.DEFAULT_RETRIES)

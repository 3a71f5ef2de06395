"""The one rule for who may reach a network face."""

from __future__ import annotations

import pytest

from maestro.errors import SessionValidationError
from maestro.netpolicy import (
    allowed_host_names,
    check_bind,
    host_allowed,
    is_loopback,
    resolve_token,
    token_matches,
)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"]
)
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.4", "example.org", "10.0.0.1"])  # noqa: S104
def test_other_addresses(host: str) -> None:
    assert not is_loopback(host)


def test_a_non_loopback_bind_needs_a_token() -> None:
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "secret")  # noqa: S104
    with pytest.raises(SessionValidationError, match="MAESTRO_TOKEN"):
        check_bind("0.0.0.0", None)  # noqa: S104
    with pytest.raises(ValueError, match="--token"):
        check_bind("192.168.1.4", "")


def test_the_token_comes_from_the_option_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAESTRO_TOKEN", "from-env")
    assert resolve_token("given") == "given"
    assert resolve_token(None) == "from-env"
    monkeypatch.setenv("MAESTRO_TOKEN", "  ")
    assert resolve_token(None) is None
    monkeypatch.delenv("MAESTRO_TOKEN")
    assert resolve_token(None) is None


def test_host_header_allow_list() -> None:
    allowed = allowed_host_names("127.0.0.1", ["dash.example.org"])
    assert host_allowed("127.0.0.1:8765", allowed)
    assert host_allowed("localhost:8765", allowed)
    assert host_allowed("[::1]:8765", allowed)
    assert host_allowed("Dash.Example.org", allowed)
    assert not host_allowed("evil.example:8765", allowed)  # DNS rebinding
    assert not host_allowed(None, allowed)
    assert not host_allowed("", allowed)
    assert host_allowed("anything", allowed_host_names("127.0.0.1", ["*"]))
    assert "10.1.2.3" in allowed_host_names("10.1.2.3")
    assert "0.0.0.0" not in allowed_host_names("0.0.0.0")  # noqa: S104


def test_bearer_token() -> None:
    assert token_matches("Bearer s3cret", "s3cret")
    assert token_matches("bearer  s3cret ", "s3cret")
    assert not token_matches("Bearer wrong", "s3cret")
    assert not token_matches("Basic s3cret", "s3cret")
    assert not token_matches(None, "s3cret")
    assert not token_matches("Bearer", "s3cret")

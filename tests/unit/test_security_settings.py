"""Security settings that librdkafka would refuse with a traceback, or that would quietly
fall back to plaintext, are refused with one line naming the variable (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecom.errors import BadInput
from ecom.kafka import client_config, security_for
from tests.support import run_cli

BOOTSTRAP = "127.0.0.1:1"
ENV = "ECOM_KAFKA_"
SASL = {"SASL_MECHANISM": "SCRAM-SHA-512", "SASL_USERNAME": "u", "SASL_PASSWORD": "p"}
PEM = "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD",
                 "SSL_CA_LOCATION", "CREDENTIALS"):  # fmt: skip
        monkeypatch.delenv(ENV + name, raising=False)


def _set(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(ENV + name, value)


def test_a_password_alone_is_refused_naming_the_missing_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, {"SASL_PASSWORD": "secret"})
    with pytest.raises(BadInput) as refused:
        security_for(BOOTSTRAP)
    message = str(refused.value)
    for missing in ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME"):
        assert ENV + missing in message.partition("but not")[2]
    assert "secret" not in message


def test_sasl_settings_without_a_sasl_protocol_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, SASL | {"SECURITY_PROTOCOL": "SSL"})
    with pytest.raises(BadInput, match="ECOM_KAFKA_SECURITY_PROTOCOL=SSL does not use SASL"):
        security_for(BOOTSTRAP)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"SECURITY_PROTOCOL": "bogus"}, "ECOM_KAFKA_SECURITY_PROTOCOL is 'bogus'"),
        ({"SECURITY_PROTOCOL": "SSL", "SSL_CA_LOCATION": "/nonexist.pem"},
         "ECOM_KAFKA_SSL_CA_LOCATION /nonexist.pem: no such file"),
        (SASL | {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "MD5"},
         "ECOM_KAFKA_SASL_MECHANISM is 'MD5'"),
        (SASL | {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "scram-sha-512"},
         "ECOM_KAFKA_SASL_MECHANISM is 'scram-sha-512'"),  # librdkafka minds the case
    ],
)  # fmt: skip
def test_values_librdkafka_refuses_are_named(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], message: str
) -> None:
    _set(monkeypatch, values)
    with pytest.raises(BadInput, match=message):
        client_config(BOOTSTRAP)


def test_a_ca_file_that_is_not_pem_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM)
    _set(monkeypatch, {"SECURITY_PROTOCOL": "SSL", "SSL_CA_LOCATION": str(ca)})
    with pytest.raises(BadInput, match=f"ECOM_KAFKA_SSL_CA_LOCATION {ca}: cannot be read"):
        security_for(BOOTSTRAP)


@pytest.mark.parametrize("ca", ["probe", "/etc/ssl/certs"])
def test_the_systems_ca_folder_or_probe_are_taken(monkeypatch: pytest.MonkeyPatch, ca: str) -> None:
    """librdkafka takes both; the check refused them."""
    _set(monkeypatch, {"SECURITY_PROTOCOL": "SSL", "SSL_CA_LOCATION": ca})
    assert security_for(BOOTSTRAP).settings["ssl.ca.location"] == ca


def test_a_bad_ca_in_a_credentials_file_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = tmp_path / "x.properties"
    settings.write_text("security.protocol=SSL\nssl.ca.location=/nonexist.pem\n")
    _set(monkeypatch, {"CREDENTIALS": str(settings)})
    with pytest.raises(BadInput, match=f"ssl.ca.location in ECOM_KAFKA_CREDENTIALS {settings}"):
        security_for(BOOTSTRAP)


def test_a_complete_set_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, SASL | {"SECURITY_PROTOCOL": "sasl_plaintext"})
    assert security_for(BOOTSTRAP).settings["sasl.username"] == "u"


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"SECURITY_PROTOCOL": "bogus"}, "ECOM_KAFKA_SECURITY_PROTOCOL"),
        ({"SECURITY_PROTOCOL": "SSL", "SSL_CA_LOCATION": "/nonexist.pem"},
         "ECOM_KAFKA_SSL_CA_LOCATION"),
        ({"SASL_PASSWORD": "secret"}, "ECOM_KAFKA_SECURITY_PROTOCOL"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", [["topics", "describe"], ["produce", "UserCreated", "--data",
    '{"user_id": "u-9", "email": "a@example.com", "name": "A", "country": "DE"}']])  # fmt: skip
def test_the_cli_says_so_in_one_line_with_exit_2(
    values: dict[str, str], variable: str, command: list[str]
) -> None:
    env = {ENV + name: value for name, value in values.items()}
    result = run_cli(*command, "--bootstrap", BOOTSTRAP, env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ")
    assert variable in result.stderr
    assert result.stderr.count("\n") == 1

"""Configuration: environment, TOML sources, validation, development secrets."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from gateway.config import load_settings, secret_values
from gateway.dispatch import handlers_by_pattern
from gateway.errors import ConfigError, HandlerLoadError


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_default_source_comes_from_the_seed_provider_variables(tmp_path):
    settings = load_settings(
        {"INTEGRATION_SECRET_KEY": "s3cret-one", "GATEWAY_DATA_DIR": str(tmp_path)}
    )
    source = settings.sources["integration"]
    assert source.scheme_name == "hmac-sha256"
    assert [key.key_id for key in source.keys] == ["#0"]
    assert source.rate_limit == "100 per 15 minutes"
    assert source.max_body_bytes == 5 * 1024 * 1024
    assert source.tolerance_seconds == 300


def test_comma_separated_secrets_are_rotation_keys(tmp_path):
    settings = load_settings(
        {
            "INTEGRATION_SECRET_KEY": "old-one, new-one",
            "GATEWAY_DATA_DIR": str(tmp_path),
        }
    )
    assert len(settings.sources["integration"].keys) == 2


def test_production_without_a_secret_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="sources.integration"):
        load_settings({"GATEWAY_ENV": "production", "GATEWAY_DATA_DIR": str(tmp_path)})


def test_development_generates_one_secret_shared_by_every_process(tmp_path):
    first = load_settings({"GATEWAY_DATA_DIR": str(tmp_path)})
    second = load_settings({"GATEWAY_DATA_DIR": str(tmp_path)})
    secret_file = tmp_path / "dev-secret-integration"
    assert first.sources["integration"].generated_secret
    assert (
        secret_file.read_text().strip() == first.sources["integration"].secret_texts[0]
    )
    assert (
        first.sources["integration"].secret_texts
        == second.sources["integration"].secret_texts
    )
    assert secret_file.stat().st_mode & 0o077 == 0


def test_toml_file_configures_several_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("GH_SECRET", "from-the-environment")
    path = write(
        tmp_path,
        """
        [sources.github]
        scheme = "github"
        secrets = [
            "env:GH_SECRET",
            {secret = "older", key_id = "2025", not_after = 2027-01-31},
        ]
        rate_limit = "500 per minute"
        max_body_bytes = 1000

        [sources.stripe]
        scheme = "stripe"
        secrets = ["whsec_abc"]
        tolerance_seconds = 60
        """,
    )
    settings = load_settings(
        {"GATEWAY_CONFIG": path, "GATEWAY_DATA_DIR": str(tmp_path)}
    )
    github = settings.sources["github"]
    assert set(settings.sources) == {"github", "stripe"}
    assert github.secret_texts == ("from-the-environment", "older")
    assert [key.key_id for key in github.keys] == ["#0", "2025"]
    assert github.keys[1].not_after is not None
    assert github.rate_limit == "500 per minute"
    assert settings.sources["stripe"].tolerance_seconds == 60


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('scheme = "github"\nsecrets = ["x"]\ncolour = "blue"', "colour"),
        ('scheme = "md5"\nsecrets = ["x"]', "scheme"),
        ('scheme = "github"\nsecrets = ["x"]\nrate_limit = "lots"', "rate_limit"),
        ('scheme = "github"\nsecrets = ["x"]\nmax_body_bytes = -1', "max_body_bytes"),
        ('scheme = "github"\nsecrets = ["x"]\ntolerance_seconds = "5"', "tolerance"),
        ('scheme = "standard"\nsecrets = ["whsec_!!!!"]', "secrets"),
    ],
)
def test_bad_source_value_names_the_source_and_key(tmp_path, table, named):
    path = write(tmp_path, f"[sources.billing]\n{table}\n")
    with pytest.raises(ConfigError) as raised:
        load_settings({"GATEWAY_CONFIG": path, "GATEWAY_DATA_DIR": str(tmp_path)})
    assert "sources.billing" in str(raised.value)
    assert named in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_ENV", "staging"),
        ("GATEWAY_DATABASE_URL", "mysql://x"),
        ("RATELIMIT_STORAGE_URI", "memcached://x"),
        ("RATELIMIT_DEFAULT", "fast"),
        ("GATEWAY_TRUSTED_PROXIES", "many"),
        ("GATEWAY_MAX_RETRIES", "-1"),
        ("GATEWAY_DISPATCHER", "maybe"),
    ],
)
def test_bad_variable_is_refused_by_name(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings(
            {
                "INTEGRATION_SECRET_KEY": "x",
                "GATEWAY_DATA_DIR": str(tmp_path),
                name: value,
            }
        )


def test_unreadable_or_invalid_toml_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({"GATEWAY_CONFIG": str(tmp_path / "missing.toml")})
    path = write(tmp_path, "[sources.a\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({"GATEWAY_CONFIG": path})


def test_secret_values_lists_every_secret_for_redaction(tmp_path):
    settings = load_settings(
        {
            "INTEGRATION_SECRET_KEY": "first-secret,second-secret",
            "INTEGRATION_API_KEY": "api-key-value",
            "GATEWAY_DATA_DIR": str(tmp_path),
        }
    )
    assert set(secret_values(settings)) == {
        "first-secret",
        "second-secret",
        "api-key-value",
    }


def test_settings_repr_holds_no_secret(tmp_path):
    settings = load_settings(
        {
            "INTEGRATION_SECRET_KEY": "do-not-print-me",
            "INTEGRATION_API_KEY": "nor-me-either",
            "GATEWAY_DATA_DIR": str(tmp_path),
        }
    )
    text = repr(settings)
    assert "do-not-print-me" not in text
    assert "nor-me-either" not in text


def test_handler_module_that_fails_to_import_stops_start_up(make_app):
    with pytest.raises(HandlerLoadError, match="no_such_team.hooks"):
        make_app(GATEWAY_HANDLERS="no_such_team.hooks")


def test_handler_modules_are_loaded_by_name(make_app, tmp_path, monkeypatch):
    package = tmp_path / "team_hooks_for_config_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "billing.py").write_text(
        "from gateway import on\n\n"
        "@on('invoice.paid')\n"
        "def book_payment(source, event):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        make_app(GATEWAY_HANDLERS="team_hooks_for_config_test.billing")
        loaded = handlers_by_pattern()
        assert (
            "team_hooks_for_config_test.billing.book_payment" in loaded["invoice.paid"]
        )
    finally:
        from gateway.dispatch import signal

        module = sys.modules.pop("team_hooks_for_config_test.billing")
        signal("invoice.paid").disconnect(module.book_payment)
        sys.modules.pop("team_hooks_for_config_test", None)


def test_unset_secret_variable_stops_production(tmp_path):
    path = write(tmp_path, '[sources.billing]\nsecrets = ["env:NOT_SET_ANYWHERE"]\n')
    with pytest.raises(ConfigError, match="sources.billing.*NOT_SET_ANYWHERE"):
        load_settings(
            {
                "GATEWAY_CONFIG": path,
                "GATEWAY_DATA_DIR": str(tmp_path),
                "GATEWAY_ENV": "production",
            }
        )


def test_unset_secret_variable_gets_a_development_secret(tmp_path):
    path = write(tmp_path, '[sources.billing]\nsecrets = ["env:NOT_SET_ANYWHERE"]\n')
    settings = load_settings(
        {"GATEWAY_CONFIG": path, "GATEWAY_DATA_DIR": str(tmp_path)}
    )
    assert settings.sources["billing"].generated_secret
    assert (tmp_path / "dev-secret-billing").exists()


def test_server_start_with_a_bad_handler_exits_3_with_one_clear_line(
    monkeypatch, tmp_path, capsys
):
    from gateway.web import create_app_or_exit

    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GATEWAY_DISPATCHER", "0")
    monkeypatch.setenv("GATEWAY_HANDLERS", "no_such_team.hooks")
    with pytest.raises(SystemExit) as raised:
        create_app_or_exit()
    error = capsys.readouterr().err
    assert raised.value.code == 3
    assert "gateway: configuration error: handler module 'no_such_team.hooks'" in error
    assert "Traceback" not in error

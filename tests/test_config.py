"""collab.config: one frozen value, built from the environment (and flags: test_flags.py)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from collab.config import Config, Retention, settings

DOCS = Path(__file__).resolve().parent.parent / "docs" / "config.md"


def test_environment_then_overrides() -> None:
    env = {"COLLAB_PORT": "9001", "COLLAB_PING_INTERVAL": "", "COLLAB_HISTORY_ENABLED": "off"}
    config = Config.from_env(env, port=None, db_url="sqlite:///x.db")
    assert config.port == 9001  # a flag left unset does not shadow the environment
    assert config.ping_interval is None
    assert config.history_enabled is False
    assert config.db_url == "sqlite:///x.db"
    assert Config.from_env(env, port=7).port == 7


def test_nested_settings_are_variables_too() -> None:
    env = {"COLLAB_RETENTION_KEEP_ALL_SECONDS": "none", "COLLAB_RETENTION_HOURLY_SECONDS": "60"}
    config = Config.from_env(env)
    assert config.retention == Retention(keep_all_seconds=None, hourly_seconds=60.0)
    assert Config.from_env({}).retention == Retention()


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("COLLAB_PORT", "eighty", "COLLAB_PORT: 'eighty' is not an integer >= 0"),
        ("COLLAB_PORT", "", "COLLAB_PORT: '' is not an integer >= 0"),
        ("COLLAB_PING_TIMEOUT", "-3", "COLLAB_PING_TIMEOUT: '-3' is not a number >= 0 or none"),
        ("COLLAB_CLOSE_TIMEOUT", "inf", "COLLAB_CLOSE_TIMEOUT: 'inf' is not a number >= 0"),
        ("COLLAB_HISTORY_ENABLED", "maybe", "COLLAB_HISTORY_ENABLED: 'maybe' is not a boolean"),
    ],
)
def test_bad_values_say_which_variable(variable: str, raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Config.from_env({variable: raw})


def test_every_default_reads_back_as_itself() -> None:
    """What --help shows as a default is a value the flag and the variable accept."""
    for s in settings():
        assert s.parse(s.show(s.default)) == s.default, s.name


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    assert config.replace(port=1).port == 1 and config.port == 8000


def test_docs_list_every_setting_and_no_other() -> None:
    """docs/config.md has a table row per setting (`name` in the first column), with its
    flag and its variable, and no row for a setting that is gone."""
    rows = re.findall(
        r"^\| `([a-z_.]+)` \| `(--[a-z-]+)`, `(COLLAB_[A-Z_]+)` \|", DOCS.read_text(), re.M
    )
    documented = {name: (flag, env) for name, flag, env in rows}
    expected = {s.name: (s.flag, s.env) for s in settings()}
    assert documented == expected

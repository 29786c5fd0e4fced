"""collab.config: one frozen value, built from the environment and flags."""

from __future__ import annotations

import dataclasses

import pytest

from collab.config import Config


def test_environment_then_overrides() -> None:
    env = {"COLLAB_PORT": "9001", "COLLAB_PING_INTERVAL": "", "COLLAB_HISTORY_ENABLED": "off"}
    config = Config.from_env(env, port=None, db_url="sqlite:///x.db")
    assert config.port == 9001  # a flag left unset does not shadow the environment
    assert config.ping_interval is None
    assert config.history_enabled is False
    assert config.db_url == "sqlite:///x.db"
    assert Config.from_env(env, port=7).port == 7


def test_bad_values_say_which_variable() -> None:
    with pytest.raises(ValueError, match="COLLAB_PORT='eighty'"):
        Config.from_env({"COLLAB_PORT": "eighty"})


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    assert config.replace(port=1).port == 1 and config.port == 8000

"""The shipped config file documents every setting with its default; precedence holds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from livecast.config import ConfigError, Settings, load_settings

CONF = Path(__file__).resolve().parent.parent / "conf" / "livecast.toml"


def test_conf_file_equals_defaults_and_lists_every_setting() -> None:
    assert load_settings(CONF, environ={}) == Settings()
    text = CONF.read_text()
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        if section.name == "gifts":
            assert "[[gifts]]" in text
            continue
        assert f"[{section.name}]" in text
        for f in dataclasses.fields(getattr(defaults, section.name)):
            assert f"\n{f.name} = " in text, f"{section.name}.{f.name} missing from conf/livecast.toml"


def test_unknown_and_bad_settings_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nhttp_prot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting server.http_prot"):
        load_settings(bad, environ={})
    with pytest.raises(ConfigError, match="server.http_port"):
        load_settings(None, environ={"LIVECAST_SERVER_HTTP_PORT": "eighty"})
    with pytest.raises(ConfigError, match="hls.container"):
        load_settings(None, environ={"LIVECAST_HLS_CONTAINER": "avi"})

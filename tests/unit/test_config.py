"""Settings: defaults, validation that names the variable, and the table in docs/configuration.md kept true."""

from __future__ import annotations

import pytest

from helpers import ROOT
from tts_service.config import ConfigError, Settings


def test_defaults_follow_the_original_setup():
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("0.0.0.0", 5001)
    assert settings.dsm_model == "kyutai/tts-1.6b-en_fr"
    assert settings.dsm_voice_repo == "kyutai/tts-voices"
    assert settings.default_language == "es"
    assert settings.device == "auto"


@pytest.mark.parametrize("name, value", [
    ("PORT", "0"), ("PORT", "http"), ("TTS_DSM_N_Q", "33"), ("TTS_DSM_TEMPERATURE", "-1"),
    ("TTS_MAX_CHARS", "0"), ("TTS_DEVICE", "gpu"), ("TTS_ROUTES", "es"), ("TTS_RATE_LIMIT", "lots"),
    ("TTS_POCKET_LANGUAGES", "spanish!"), ("TTS_CLEAN_TEXT", "perhaps"),
])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_the_api_key_never_shows_in_a_repr():
    assert "hunter2" not in repr(Settings.from_env({"TTS_API_KEY": "hunter2"}))


def test_configuration_page_documents_every_setting():
    table = (ROOT / "docs" / "configuration.md").read_text()
    for variable, default, _ in Settings.documentation():
        assert f"| `{variable}` |" in table, f"{variable} is missing from the table in docs/configuration.md"


def test_an_empty_log_file_means_stdout_only():
    assert Settings.from_env({"TTS_LOG_FILE": ""}).log_file == ""
    assert Settings.from_env({}).log_file == "tts.log"

"""Which heads time a Pocket model's words, and how a prompt's tokens are shared among its words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tts_service.config import Settings
from tts_service.engines.pocket import alignment

SPANISH = "hf://kyutai/pocket-tts/languages/spanish/model.safetensors@3e82814a68665eec246ff649b14c71331f955c06"


def _package_config(name: str) -> dict:
    import pocket_tts

    return yaml.safe_load((Path(pocket_tts.__file__).parent / "config" / f"{name}.yaml").read_text())


def test_the_released_spanish_checkpoint_has_its_heads():
    assert alignment.released_heads(SPANISH) == ((3, 9), (4, 2), (4, 5), (3, 10))
    assert _package_config("spanish")["weights_path"] == SPANISH


@pytest.mark.parametrize("path", [
    SPANISH.replace("3e82814a", "0e82814a"),  # another revision: other weights
    _package_config("english")["weights_path"],  # the fork lists heads for other English weights
    "/models/es/model.safetensors", None])
def test_other_weights_have_none(path):
    assert alignment.released_heads(path) == ()


def test_every_listed_checkpoint_is_one_the_installed_package_names():
    import pocket_tts

    named = set()
    for config in (Path(pocket_tts.__file__).parent / "config").glob("*.yaml"):
        data = yaml.safe_load(config.read_text())
        named |= {data.get("weights_path"), data.get("weights_path_without_voice_cloning")}
    for key in alignment.RELEASED_HEADS:
        assert f"hf://kyutai/{key}" in named, key


@pytest.mark.parametrize("value, expected", [
    ("", None), ("off", {None: ()}), ("1:0 1:3", {None: ((1, 0), (1, 3))}),
    ("es=3:9,4:2; de=off", {"es": ((3, 9), (4, 2)), "de": ()}),
])
def test_the_setting_reads(value, expected):
    assert Settings.from_env({"TTS_POCKET_WORD_HEADS": value}).pocket_word_heads == expected


@pytest.mark.parametrize("value", ["3-9", "es=", "es=x:1", "spanish!=1:2"])
def test_a_bad_setting_is_refused(value):
    with pytest.raises(ValueError, match="TTS_POCKET_WORD_HEADS"):
        Settings.from_env({"TTS_POCKET_WORD_HEADS": value})


def test_tokens_are_shared_by_the_characters_they_speak():
    prompt = "Hola, soy yo."
    prefixes = ["Hola", "Hola,", "Hola, s", "Hola, soy", "Hola, soy yo", "Hola, soy yo."]
    units = alignment.prompt_units(prompt, prefixes)
    assert units.words == ["Hola", None, "soy", "yo", None]
    expected = np.array([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0],
                         [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]], dtype=np.float32)
    np.testing.assert_allclose(units.shares, expected)
    alignment.name_words([units], "¡Hola, soy yo.")
    assert units.words == ["¡Hola,", None, "soy", "yo.", None]


def test_words_open_as_attention_moves_and_close_in_silence():
    units = alignment.Units(["uno", "dos", None], np.eye(3, dtype=np.float32))
    words = alignment.PieceWords(units, offset=1.0, frame_seconds=0.08)
    voiced, silent = np.full(1920, 0.1, dtype=np.float32), np.zeros(1920, dtype=np.float32)
    on = {0: [0.9, 0.1, 0.0], 1: [0.2, 0.8, 0.0], 2: [0.0, 0.1, 0.9]}
    heard = [words.hear(np.array(on[k]), pcm) for k, pcm in [(0, voiced), (0, voiced), (1, voiced), (2, silent)]]
    assert heard == [[], [], [("uno", 1.0, pytest.approx(1.16))], [("dos", pytest.approx(1.16), pytest.approx(1.24))]]
    assert words.finish(1.4) == [] and words.finished

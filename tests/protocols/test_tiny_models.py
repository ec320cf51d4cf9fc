"""The tiny test models differ from the released ones in size only.

Pocket TTS: each tiny `<language>.yaml` is compared field by field with the installed package's
`pocket_tts/config/<language>.yaml`, so a pocket-tts release that changes text handling (characters
replaced, semicolons, capitalisation, tokenizer kind, ...) shows up here, and the service's tests
run on the released text handling. DSM: the tiny `config.json` is compared with
`scripts/reference_configs/tts-1.6b-en_fr.json`, the released model's config.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import ROOT

import pocket_tts
from tts_service.config import Settings
from tts_service.engines.pocket import PACKAGE_LANGUAGES

RELEASED_POCKET = Path(pocket_tts.__file__).resolve().parent / "config"
REFERENCE_DSM = ROOT / "scripts" / "reference_configs" / "tts-1.6b-en_fr.json"
SERVED = sorted(PACKAGE_LANGUAGES)

# Fields of a Pocket config that may differ: sizes, and where the weights and tokenizer live.
POCKET_SIZES = {
    "flow_lm.flow.depth", "flow_lm.flow.dim",
    "flow_lm.transformer.d_model", "flow_lm.transformer.num_heads", "flow_lm.transformer.num_layers",
    "flow_lm.transformer.attn_dim", "flow_lm.transformer.num_kv_heads",
    "flow_lm.transformer.dim_feedforward", "flow_lm.z_dim",
    "flow_lm.lookup_table.dim", "flow_lm.lookup_table.n_bins", "flow_lm.lookup_table.rank",
    "mimi.inner_dim", "mimi.outer_dim", "mimi.quantizer.dimension", "mimi.quantizer.output_dimension",
    *(f"mimi.{side}.{key}" for side in ("seanet", "decoder_seanet") for key in ("dimension", "n_filters")),
    *(f"mimi.{side}.{key}" for side in ("transformer", "decoder_transformer")
      for key in ("d_model", "num_heads", "num_layers", "dim_feedforward", "input_dimension",
                  "output_dimensions")),
}
POCKET_LOCATIONS = {"weights_path", "flow_lm.lookup_table.tokenizer_path"}
# Released weight locations on Hugging Face that the tiny configs must not point at.
POCKET_DROPPED = {"weights_path_without_voice_cloning", "flow_lm.weights_path", "mimi.weights_path"}

DSM_SIZES = {"card", "n_q", "dep_q", "dim", "text_card", "num_heads", "num_layers",
             "depformer_dim", "depformer_num_heads", "depformer_num_layers",
             "depformer_dim_feedforward", "depformer_low_rank_embeddings",
             "conditioners.speaker_wavs.tensor.dim", "conditioners.control.lut.dim"}
# Per-codebook lists: the tiny model keeps the released values of its first codebooks.
DSM_PREFIXES = {"delays", "depformer_weights_per_step_schedule"}


def flatten(node: object, prefix: str = "") -> dict[str, object]:
    """Nested mappings as {'a.b.c': leaf}; lists are leaves."""
    if not isinstance(node, dict):
        return {prefix: node}
    flat = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def released(language: str) -> dict:
    return yaml.safe_load((RELEASED_POCKET / f"{PACKAGE_LANGUAGES[language]}.yaml").read_text(encoding="utf-8"))


def tiny_path(tiny_models: Path, language: str) -> Path:
    return tiny_models / "pocket" / f"{language}.yaml"


def tiny(tiny_models: Path, language: str) -> dict:
    return yaml.safe_load(tiny_path(tiny_models, language).read_text(encoding="utf-8"))


@pytest.mark.parametrize("language", SERVED)
def test_pocket_config_keeps_every_released_field_but_sizes(tiny_models, language):
    real, small = flatten(released(language)), flatten(tiny(tiny_models, language))
    assert set(small) == set(real) - POCKET_DROPPED, "fields added or lost"
    changed = {key for key in small if small[key] != real[key]}
    assert changed <= POCKET_SIZES | POCKET_LOCATIONS, f"non-size fields changed: {changed - POCKET_SIZES}"
    for key in changed & POCKET_SIZES:
        assert np.all(np.asarray(small[key]) <= np.asarray(real[key])), f"{key} grew"


@pytest.mark.parametrize("language", SERVED)
def test_pocket_config_stays_local(tiny_models, language):
    text = tiny_path(tiny_models, language).read_text(encoding="utf-8")
    assert "hf://" not in text and "https://" not in text
    config = tiny(tiny_models, language)
    assert Path(config["weights_path"]).is_file()
    assert Path(config["flow_lm"]["lookup_table"]["tokenizer_path"]).is_file()


@pytest.mark.parametrize("language", SERVED)
def test_pocket_tokenizer_is_a_tokenizers_json_like_the_released_one(tiny_models, language):
    from pocket_tts.modules.text_conditioner import JsonTokenizer, build_tokenizer

    table = tiny(tiny_models, language)["flow_lm"]["lookup_table"]
    assert table["tokenizer"] == released(language)["flow_lm"]["lookup_table"]["tokenizer"] == "tokenizers"
    tokenizer = build_tokenizer(table["n_bins"], table["tokenizer_path"], table["tokenizer"])
    assert isinstance(tokenizer, JsonTokenizer)
    text = "¿Qué tal? «Très bien», Größe, canção: 3,5 — 42."
    ids = tokenizer.encode(text)
    assert 0 not in ids, "characters of the served languages fall to <unk>"
    assert tokenizer.decode(ids) == text


def test_spanish_replaces_characters_as_released(tiny_models):
    from pocket_tts.utils.config import load_config

    config = load_config(tiny_path(tiny_models, "es"))
    assert config.replace_characters == released("es")["replace_characters"]
    for deleted in ['"', "“", "”", "„", "«", "»", "(", ")", "[", "]", "¡", "¿"]:
        assert config.replace_characters[deleted] == ""


def test_french_text_handling_is_the_released_one(tiny_models):
    from pocket_tts.utils.config import load_config

    config = load_config(tiny_path(tiny_models, "fr"))
    assert config.remove_semicolons is True and config.replace_characters[":"] == ","


@pytest.fixture(scope="module")
def voice_wav(tiny_env) -> str:
    return str(Path(tiny_env["TTS_VOICE_DIR"]) / f"{tiny_env['TTS_POCKET_VOICE']}.wav")


@pytest.mark.parametrize("language", SERVED)
def test_pocket_config_loads_and_speaks(tiny_models, voice_wav, language):
    from pocket_tts import TTSModel

    model = TTSModel.load_model(config=str(tiny_path(tiny_models, language)))
    voice = model.get_state_for_audio_prompt(voice_wav)
    short = model.generate_audio(voice, "Hola.").numpy()
    long = model.generate_audio(voice, "Hola, soy Capibara6 con voz natural. ¿Qué tal estás hoy?").numpy()
    assert model.sample_rate == 24000
    assert np.isfinite(long).all() and float(np.sqrt(np.mean(long ** 2))) > 1e-3
    assert len(long) > len(short) > model.sample_rate // 2, "the length does not follow the text"


def test_spanish_text_left_empty_fails_as_in_the_released_model(tiny_models, voice_wav):
    """A piece the released Spanish handling deletes entirely is refused by the package itself."""
    from pocket_tts import TTSModel

    model = TTSModel.load_model(config=str(tiny_path(tiny_models, "es")))
    voice = model.get_state_for_audio_prompt(voice_wav)
    with pytest.raises(ValueError, match="empty"):
        model.generate_audio(voice, '"')


def test_env_points_at_the_spanish_config_and_the_folder_of_all(tiny_env, tiny_models):
    folder = Path(tiny_env["TTS_POCKET_CONFIG_DIR"])
    assert Path(tiny_env["TTS_POCKET_CONFIG"]) == folder / "es.yaml"
    assert all((folder / f"{language}.yaml").is_file() for language in SERVED)
    settings = Settings.from_env(tiny_env)  # a variable Settings does not know is ignored
    assert settings.pocket_config == tiny_env["TTS_POCKET_CONFIG"]


def test_dsm_config_keeps_every_released_field_but_sizes(tiny_models):
    reference = json.loads(REFERENCE_DSM.read_text())
    config = json.loads((tiny_models / "dsm" / "config.json").read_text())
    real, small = flatten(reference), flatten(config)
    assert set(small) - set(real) == {"mimi_config_name"}, "only the tiny Mimi's config is added"
    assert set(real) <= set(small)
    changed = {key for key in real if small[key] != real[key]}
    assert changed <= DSM_SIZES | DSM_PREFIXES, f"non-size fields changed: {changed - DSM_SIZES - DSM_PREFIXES}"
    for key in changed & DSM_SIZES:
        assert small[key] < real[key], f"{key} grew"
    assert config["delays"] == reference["delays"][:config["n_q"] + 1]
    n_q = config["n_q"]
    assert config["depformer_weights_per_step_schedule"] == reference["depformer_weights_per_step_schedule"][:n_q]
    assert config["conditioners"]["control"]["lut"]["dim"] == config["dim"]


def test_dsm_reference_is_the_model_the_service_and_moshi_load_by_default(tiny_models):
    from moshi.models.tts import DEFAULT_DSM_TTS_REPO

    reference = json.loads(REFERENCE_DSM.read_text())
    assert Settings.from_env({}).dsm_model == DEFAULT_DSM_TTS_REPO == "kyutai/tts-1.6b-en_fr"
    voice = Path(Settings.from_env(dict(line.split("=", 1) for line in
                                        (tiny_models / "env").read_text().splitlines())).dsm_voice)
    model_id = reference["model_id"]
    assert voice.name.endswith(f".{model_id['sig']}@{model_id['epoch']}.safetensors") and voice.is_file()

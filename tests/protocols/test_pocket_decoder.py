"""Mimi's decoder in the frame loop: matrix products against the package's own float32 decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import torch_threads
from scripts.pocket_parity import load_engine

pytestmark = pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning")

CHUNK = 4  # frames per decoder call, as the engine decodes a row
EXACT = 1e-6  # float32 summed in another order, as ALONE_TOLERANCE["off"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def engine(tiny_env):
    return load_engine(tiny_env, "es", quantize="on", precision="float32")


def latents_for(engine, rows: int, frames: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, frames, engine._model.flow_lm.ldim, generator=generator)


def package_audio(model, latents) -> np.ndarray:
    """Each row alone through `MimiModel.decode_from_latent`, CHUNK frames per call ([rows, samples])."""
    from pocket_tts.modules.stateful_module import increment_steps, init_states

    from tts_service.engines.pocket import frames

    mimi = model.mimi
    steps = frames.steps_per_latent(mimi)
    rows = []
    with torch.no_grad():
        for row in latents:
            state = init_states(mimi, batch_size=1, sequence_length=latents.shape[1] * steps)
            pieces = []
            for start in range(0, latents.shape[1], CHUNK):
                chunk = row[None, start:start + CHUNK]
                pieces.append(mimi.decode_from_latent(chunk * model.flow_lm.emb_std + model.flow_lm.emb_mean, state))
                increment_steps(mimi, state, increment=steps * chunk.shape[1])
            rows.append(torch.cat(pieces, dim=-1).view(-1))
    return torch.stack(rows).numpy()


def frame_loop_audio(engine, latents, package_modules: bool = False, switch_at: int | None = None) -> np.ndarray:
    """All rows as one batch through `frames.decode_rows` ([rows, samples]); with `package_modules`
    the package's own SEANet modules run instead of the matrix products (from chunk `switch_at` on)."""
    from tts_service.engines.pocket import frames

    streaming = engine._streaming
    layers = streaming.seanet_layers
    steps = frames.steps_per_latent(engine._model.mimi)
    states = [streaming.mimi_rows.place(streaming.mimi_fresh, latents.shape[1] * steps) for _ in latents]
    pieces = [[] for _ in latents]
    try:
        with torch.no_grad():
            for index, start in enumerate(range(0, latents.shape[1], CHUNK)):
                use_package = package_modules and (switch_at is None or index >= switch_at)
                streaming.seanet_layers = None if use_package else layers
                out = frames.decode_rows(engine._model, streaming, latents[:, start:start + CHUNK], states)
                for row, audio in enumerate(out):
                    pieces[row].append(audio.view(-1))
    finally:
        streaming.seanet_layers = layers
        frames.keep_rows(streaming, [])
    return np.stack([torch.cat(row).numpy() for row in pieces])


def snr(reference: np.ndarray, audio: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((audio - reference) ** 2)))


def test_the_matrix_products_run_where_every_layer_has_their_form(engine):
    from tts_service.engines.pocket import decoder

    layers = engine._streaming.seanet_layers
    assert layers is not None
    kinds = {type(layer) for layer in layers}
    assert {decoder.Conv, decoder.ConvTranspose, decoder.Elu, decoder.Residual} <= kinds


def test_the_matrix_products_say_what_the_packages_float32_decoder_says(engine):
    latents = latents_for(engine, rows=3, frames=3 * CHUNK + 2)  # a last call of two frames too
    reference = package_audio(engine._model, latents)
    audio = frame_loop_audio(engine, latents)
    assert audio.shape == reference.shape
    peak = float(np.abs(reference).max())
    assert peak > 100 * EXACT
    assert float(np.abs(audio - reference).max()) <= EXACT
    assert snr(reference, audio) >= 90


def test_a_row_carries_its_state_between_the_two_decoders(engine):
    """The streaming states are the package's own layout: a row may change decoder mid-answer."""
    latents = latents_for(engine, rows=2, frames=4 * CHUNK, seed=1)
    package = frame_loop_audio(engine, latents, package_modules=True)
    switched = frame_loop_audio(engine, latents, package_modules=True, switch_at=2)
    ours = frame_loop_audio(engine, latents)
    assert float(np.abs(switched - package).max()) <= EXACT
    assert float(np.abs(ours - package).max()) <= EXACT
    # Not the same audio by chance: a wrong carried state shows at the switch.
    assert float(np.abs(package[:, :package.shape[1] // 2] - package[:, package.shape[1] // 2:]).max()) > 100 * EXACT


def test_a_row_says_the_same_alone_and_in_a_batch(engine):
    latents = latents_for(engine, rows=5, frames=2 * CHUNK, seed=2)
    together = frame_loop_audio(engine, latents)
    alone = np.concatenate([frame_loop_audio(engine, latents[i:i + 1]) for i in range(len(latents))])
    assert float(np.abs(together - alone).max()) <= EXACT


def test_a_layer_without_the_form_leaves_the_packages_decoder(engine, monkeypatch):
    from pocket_tts.modules.conv import StreamingConv1d

    from tts_service.engines.pocket import frames

    conv = next(module for module in engine._model.mimi.decoder.modules() if isinstance(module, StreamingConv1d))
    monkeypatch.setattr(conv, "pad_mode", "replicate")
    assert frames.seanet_layers(engine._model.mimi) is None


def test_int8_quantizes_only_the_decoder_transformers_linear_layers(tiny_env, engine):
    fast = load_engine(tiny_env, "es", quantize="on", precision="int8")
    assert fast.decoder_precision == "int8"
    mimi = fast._model.mimi
    assert all(parameter.dtype == torch.float32 for parameter in mimi.decoder.parameters())
    linear = [module for module in mimi.decoder_transformer.modules() if isinstance(module, torch.nn.Linear)]
    quantized = [module for module in mimi.decoder_transformer.modules()
                 if type(module).__module__.startswith("torch.ao.nn.quantized")]
    assert quantized and not linear
    latents = latents_for(engine, rows=2, frames=3 * CHUNK, seed=3)
    exact = frame_loop_audio(engine, latents)
    lossy = frame_loop_audio(fast, latents)
    assert float(np.abs(lossy - exact).max()) > 0  # it did run in int8
    assert snr(exact, lossy) >= 35


def test_auto_precision_is_float32(tiny_env):
    """bfloat16 and int8 are chosen by name only: what they do to the pauses is not shown."""
    auto = load_engine(tiny_env, "es", quantize="on", precision="auto")
    assert auto.decoder_precision == "float32"
    assert next(auto._model.mimi.decoder.parameters()).dtype == torch.float32
    assert any(isinstance(module, torch.nn.Linear) for module in auto._model.mimi.decoder_transformer.modules())


def test_channels_are_ordered_by_sign_after_the_first_call(engine):
    """The first call counts how often each channel is positive; later calls run with every
    layer's channels in that order and still say what the package says."""
    from tts_service.engines.pocket import decoder, frames

    streaming = engine._streaming
    streaming.seanet = None
    latents = latents_for(engine, rows=2, frames=2 * CHUNK, seed=4)
    reference = package_audio(engine._model, latents)
    audio = frame_loop_audio(engine, latents)  # the first call calibrates, the second is ordered
    gemm = frames._seanet(streaming, torch.float32)
    assert gemm.positives is None
    ordered = [step for step in gemm.steps if isinstance(step, decoder._ConvTransposeGemm)]
    assert ordered and all(step.order_out is not None for step in ordered)
    assert any(not torch.equal(step.order_out, torch.arange(len(step.order_out))) for step in ordered)
    assert float(np.abs(audio - reference).max()) <= EXACT

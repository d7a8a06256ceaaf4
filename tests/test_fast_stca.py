"""The fast STCA path against the reference one (STDD_METHOD.md, "Cost"): same outputs, gradients and random draws."""

import pytest
import torch
from stca_oracle import literal_stca_layer
from transformers.models.clip.modeling_clip import CLIPAttention

from modeling_stdd import STDDModel, STDDVisionConfig
from modeling_stdd.modeling_stdd import STDDEncoderLayer, layer_norm_change_coefficients, normalized_projection_basis


def fast_and_reference(tiny_clip_dir, **settings):
    return [
        STDDModel.from_pretrained(tiny_clip_dir, channel_fold=8, stca_implementation=implementation, **settings)
        for implementation in ("fast", "reference")
    ]


def run(model, pixel_values, seed=0):
    """Outputs and weight gradients of one forward + backward, masks drawn from `seed`."""
    torch.manual_seed(seed)
    output = model.get_video_features(pixel_values)
    output.pooler_output.square().sum().backward()
    gradients = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    return output.last_hidden_state, output.pooler_output, gradients


def assert_same_outputs_and_gradients(fast, reference, pixel_values):
    fast_hidden, fast_pooled, fast_gradients = run(fast, pixel_values)
    reference_hidden, reference_pooled, reference_gradients = run(reference, pixel_values)
    torch.testing.assert_close(fast_hidden, reference_hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast_pooled, reference_pooled, atol=1e-5, rtol=1e-5)
    assert fast_gradients.keys() == reference_gradients.keys() and len(fast_gradients) > 0
    for name, gradient in reference_gradients.items():
        tolerance = 1e-5 * max(gradient.abs().max().item(), 1.0)
        torch.testing.assert_close(fast_gradients[name], gradient, atol=tolerance, rtol=1e-4, msg=name)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("num_frames, temporal_scales", [(1, [1, 2]), (3, [1]), (5, [1, 2]), (4, [3, 1]), (6, [1, 2, 3]), (4, [2])])
def test_fast_path_matches_reference_outputs_and_gradients(
    tiny_clip_dir, attn_implementation, training, num_frames, temporal_scales
):
    fast, reference = fast_and_reference(
        tiny_clip_dir, attn_implementation=attn_implementation, temporal_scales=temporal_scales
    )
    pixel_values = torch.randn(2, num_frames, 3, 32, 32, generator=torch.Generator().manual_seed(num_frames))
    assert_same_outputs_and_gradients(fast.train(training), reference.train(training), pixel_values)


@pytest.mark.parametrize(
    "settings",
    [
        dict(channel_fold=2),  # every channel moves: the correction is full rank
        dict(mask_rate=0.0, spatial_repeat=False, temporal_shuffle=False),
        dict(stca_layers=[1], mask_stride=[1, 4, 4], temporal_scales=[2]),
    ],
)
def test_fast_path_matches_reference_across_stca_settings(tiny_clip_dir, settings):
    fast, reference = (
        STDDModel.from_pretrained(tiny_clip_dir, stca_implementation=implementation, **settings).train()
        for implementation in ("fast", "reference")
    )
    assert_same_outputs_and_gradients(fast, reference, torch.randn(1, 4, 3, 32, 32))


def test_training_draws_the_same_random_numbers_with_attention_dropout(tiny_clip_dir):
    pixel_values = torch.randn(2, 3, 3, 32, 32)
    pooled, next_draws = [], []
    for model in fast_and_reference(tiny_clip_dir, attn_implementation="eager"):
        for module in model.modules():
            if isinstance(module, CLIPAttention):
                module.dropout = 0.3
        pooled.append(run(model.train(), pixel_values, seed=7)[1])
        next_draws.append(torch.rand(4))  # the generator moved on by as many draws on both paths
    torch.testing.assert_close(pooled[0], pooled[1], atol=1e-5, rtol=1e-5)
    assert torch.equal(next_draws[0], next_draws[1])


@pytest.mark.parametrize("temporal_scales", [[1, 2], [1, 2, 3], [2]])
def test_layer_matches_the_literal_reading_on_both_paths(tiny_clip_dir, temporal_scales):
    for model in fast_and_reference(tiny_clip_dir, temporal_scales=temporal_scales):
        layer = model.vision_model.encoder.layers[0]
        hidden_states = torch.randn(2 * 5, 17, 32, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            expected = literal_stca_layer(layer, hidden_states, 5)
            actual = layer(hidden_states, None, num_frames=5)
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


class LowRankAdapter(torch.nn.Module):
    """A LoRA-style wrapper: `base(x) + up(down(x))`, exposing the base layer's `weight` and `bias` as PEFT does."""

    def __init__(self, base: torch.nn.Linear, rank: int = 2):
        super().__init__()
        self.base = base
        self.down = torch.nn.Linear(base.in_features, rank, bias=False)
        self.up = torch.nn.Linear(rank, base.out_features, bias=False)
        torch.nn.init.normal_(self.up.weight, std=0.5)

    @property
    def weight(self):
        return self.base.weight

    @property
    def bias(self):
        return self.base.bias

    def forward(self, hidden_states):
        return self.base(hidden_states) + self.up(self.down(hidden_states))


def test_fast_path_follows_adapters_wrapping_the_projections(tiny_clip_dir):
    """Adapters such as LoRA change what q_proj and v_proj compute: the fast path must see it as the reference does."""
    torch.manual_seed(5)
    fast, reference = fast_and_reference(tiny_clip_dir)
    for model in (fast, reference):
        torch.manual_seed(5)
        for module in model.vision_model.modules():
            if isinstance(module, CLIPAttention):
                module.q_proj, module.v_proj = LowRankAdapter(module.q_proj), LowRankAdapter(module.v_proj)
    pixel_values = torch.randn(1, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert_same_outputs_and_gradients(fast.train(), reference.train(), pixel_values)
    with torch.no_grad():
        adapted = fast.eval().get_video_features(pixel_values).pooler_output
        plain = fast_and_reference(tiny_clip_dir)[0].eval().get_video_features(pixel_values).pooler_output
    assert not torch.allclose(adapted, plain, atol=1e-3)


def test_layer_norm_correction_reproduces_the_projection_of_changed_tokens():
    generator = torch.Generator().manual_seed(0)
    width, changed = 24, 6
    layer_norm = torch.nn.LayerNorm(width)
    projection = torch.nn.Linear(width, 10)
    with torch.no_grad():
        for parameter in (layer_norm.weight, layer_norm.bias):
            parameter.copy_(torch.randn(width, generator=generator))
    tokens = 3 * torch.randn(5, width, generator=generator) + 2
    delta = 4 * torch.randn(2, 5, changed, generator=generator)  # two scales
    ratio, coefficients = layer_norm_change_coefficients(tokens, delta, layer_norm.eps)
    basis = normalized_projection_basis(layer_norm, [projection], changed)
    actual = ratio * projection(layer_norm(tokens)) + coefficients @ basis
    moved = tokens + torch.nn.functional.pad(delta, (0, width - changed))
    torch.testing.assert_close(actual, projection(layer_norm(moved)), atol=1e-5, rtol=1e-5)


@pytest.fixture
def stca_path_calls(monkeypatch):
    """The names of the STCA paths (`fast_stca`, `reference_stca`) the encoder layers run, in call order."""
    calls = []
    for name in ("fast_stca", "reference_stca"):
        path = getattr(STDDEncoderLayer, name)

        def recorded(self, *args, _path=path, _name=name, **kwargs):
            calls.append(_name)
            return _path(self, *args, **kwargs)

        monkeypatch.setattr(STDDEncoderLayer, name, recorded)
    return calls


@pytest.mark.parametrize("training", [False, True])
def test_fast_outputs_equal_the_reference_path_that_records_attention_maps(tiny_clip_dir, stca_path_calls, training):
    """
    Attention maps come from `self_attn` calls, which only the reference path makes: with `output_attentions` the fast
    setting runs it, and its maps are the reference setting's. Without maps the fast path runs, and its logits and
    hidden states equal the reference path's (with maps) within 1e-5.
    """
    fast, reference = (model.train(training) for model in fast_and_reference(tiny_clip_dir, attn_implementation="eager"))
    pixel_values = torch.randn(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    text_embeds = torch.randn(4, 16, generator=torch.Generator().manual_seed(3))
    outputs = {}
    for name, model, output_attentions in (("fast", fast, False), ("fast setting, maps", fast, True),
                                           ("reference", reference, True)):
        torch.manual_seed(0)
        with torch.no_grad():
            outputs[name] = model(text_embeds=text_embeds, pixel_values=pixel_values, output_hidden_states=True,
                                  output_attentions=output_attentions)
    assert stca_path_calls == ["fast_stca"] * 2 + ["reference_stca"] * 4  # 2 STCA layers per run
    fast_outputs, reference_outputs = outputs["fast"], outputs["reference"]
    assert fast_outputs.vision_model_output.attentions is None
    torch.testing.assert_close(fast_outputs.logits_per_video, reference_outputs.logits_per_video, atol=1e-5, rtol=1e-5)
    fast_vision, reference_vision = fast_outputs.vision_model_output, reference_outputs.vision_model_output
    torch.testing.assert_close(fast_vision.last_hidden_state, reference_vision.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert len(fast_vision.hidden_states) == len(reference_vision.hidden_states) == 3
    for fast_hidden, reference_hidden in zip(fast_vision.hidden_states, reference_vision.hidden_states):
        torch.testing.assert_close(fast_hidden, reference_hidden, atol=1e-5, rtol=1e-5)
    fast_setting_maps = outputs["fast setting, maps"].vision_model_output.attentions
    assert len(fast_setting_maps) == len(reference_vision.attentions) == 2 * (1 + 2)  # 1 + S maps per STCA layer
    for fast_map, reference_map in zip(fast_setting_maps, reference_vision.attentions):
        torch.testing.assert_close(fast_map, reference_map)


def test_stca_implementation_is_validated_and_routed_at_load(tiny_clip_dir):
    with pytest.raises(ValueError, match="stca_implementation must be one of 'fast', 'reference', got 'quick'"):
        STDDVisionConfig(stca_implementation="quick")
    assert STDDVisionConfig().stca_implementation == "fast"
    model = STDDModel.from_pretrained(tiny_clip_dir, stca_implementation="reference")
    assert model.config.vision_config.stca_implementation == "reference"

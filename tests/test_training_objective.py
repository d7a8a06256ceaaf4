"""The training objective: frozen text side, cross-entropy on the class scores, distillation through the projector."""

import pytest
import torch

from modeling_stdd import STDDModel, STDDTokenizer
from modeling_stdd.prompt_sets_stdd import build_prompt_set, encode_prompt_set
from training.objective import DistillationProjector, FrozenImageTower, STDDTrainingModule, distillation_loss


@pytest.fixture
def model(tiny_clip_dir):
    torch.manual_seed(0)
    return STDDModel.from_pretrained(tiny_clip_dir, num_frames=4)


def video_batch(batch_size=2, num_frames=4):
    torch.manual_seed(1)
    return torch.randn(batch_size, num_frames, 3, 32, 32), torch.tensor([0, 2][:batch_size])


def test_projector_starts_as_identity_and_has_no_biases():
    projector = DistillationProjector(16)
    frames = torch.randn(2, 4, 16)
    assert torch.equal(projector(frames), frames)
    assert all(module.bias is None for module in projector.proj if isinstance(module, torch.nn.Linear))
    assert distillation_loss(frames, frames).item() == pytest.approx(0, abs=1e-6)
    assert distillation_loss(frames, -frames).item() == pytest.approx(2, abs=1e-6)


def test_class_prompts_are_encoded_once_and_normalized(model):
    prompts = build_prompt_set(model, STDDTokenizer(), ["a run.", "a jump.", "a walk."], "{}")
    assert prompts.text_embeds.shape == (3, 16)
    assert torch.allclose(prompts.text_embeds.norm(dim=-1), torch.ones(3))
    grouped = encode_prompt_set(model, STDDTokenizer(), {"run": ["a run.", "running."], "jump": ["a jump."]},
                                grouped=True, batch_size=2)
    assert grouped.prompt_class_ids.tolist() == [0, 0, 1]
    assert torch.allclose(grouped.text_embeds[0], prompts.text_embeds[0], atol=1e-6)


def test_cross_entropy_matches_the_model_forward(model):
    prompts = build_prompt_set(model, STDDTokenizer(), ["a run.", "a jump.", "a walk."], "{}")
    module = STDDTrainingModule(model, distillation_weight=0.0).eval()
    pixel_values, labels = video_batch()
    outputs = module(pixel_values, labels, prompts)
    reference = model(pixel_values=pixel_values, text_embeds=prompts.text_embeds, labels=labels)
    assert torch.allclose(outputs["logits"], reference.logits_per_video, atol=1e-5)
    assert outputs["loss"].item() == pytest.approx(reference.loss.item(), abs=1e-5)
    assert outputs["distillation"].item() == 0 and module.projector is None


def test_only_the_image_tower_and_projector_learn(model):
    prompts = build_prompt_set(model, STDDTokenizer(), ["a run.", "a jump.", "a walk."], "{}")
    teacher = FrozenImageTower(model)
    module = STDDTrainingModule(model, distillation_weight=2.0).train()
    pixel_values, labels = video_batch()
    outputs = module(pixel_values, labels, prompts, teacher(pixel_values))
    assert outputs["loss"].item() == pytest.approx(
        outputs["cross_entropy"].item() + 2.0 * outputs["distillation"].item(), rel=1e-5
    )
    outputs["loss"].backward()
    text_side = [*model.text_model.parameters(), *model.text_projection.parameters(), model.logit_scale]
    assert all(parameter.grad is None for parameter in text_side)
    assert model.vision_model.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    assert module.projector.proj[-1].weight.grad.abs().sum() > 0
    assert all(not parameter.requires_grad for parameter in teacher.parameters())


def test_teacher_is_the_frozen_starting_tower_without_stca(model):
    pixel_values, _ = video_batch()
    teacher = FrozenImageTower(model)
    before = teacher(pixel_values)
    with torch.no_grad():
        model.vision_model.embeddings.patch_embedding.weight.add_(1.0)
    teacher.train()
    assert not teacher.training
    assert torch.equal(teacher(pixel_values), before)
    # frame t's embedding does not depend on the other frames: the teacher has no temporal mixing
    assert torch.allclose(teacher(pixel_values[:, :1])[:, 0], before[:, 0], atol=1e-5)
    assert before.shape == (2, 4, 16)
    assert torch.allclose(before.norm(dim=-1), torch.ones(2, 4))


def test_gradient_checkpointing_gives_the_same_gradients(tiny_clip_dir):
    prompts = None
    gradients = []
    for checkpointing in (False, True):
        model = STDDModel.from_pretrained(tiny_clip_dir, num_frames=4)
        if prompts is None:
            prompts = build_prompt_set(model, STDDTokenizer(), ["a.", "b.", "c."], "{}")
        if checkpointing:
            model.activation_checkpointing_enable()
        module = STDDTrainingModule(model, distillation_weight=0.0).train()
        pixel_values, labels = video_batch()
        torch.manual_seed(5)  # the same STCA mask schedule in both runs
        module(pixel_values, labels, prompts)["loss"].backward()
        gradients.append(model.vision_model.embeddings.patch_embedding.weight.grad.clone())
    assert torch.allclose(gradients[0], gradients[1], atol=1e-6)

"""
STDD's training objective (STDD_METHOD.md, section 4): cross-entropy on the class scores against frozen prompt
embeddings, plus distillation of the trainable image tower towards a frozen copy of the starting CLIP image tower
through a residual projector that exists only for this loss (it is not part of the saved model).
"""

import copy

import torch
from torch import nn

from modeling_stdd import STDDModel
from modeling_stdd.modeling_stdd import class_scores_of_checked_prompts
from modeling_stdd.prompt_sets_stdd import PromptSet


# Residual projector: f' = f + PROJECTOR_SCALE * Proj(f).
PROJECTOR_SCALE = 0.1


class DistillationProjector(nn.Module):
    """`f' = f + 0.1 * Proj(f)`, Proj = Linear(E, E) -> GELU -> Linear(E, E), no biases, last layer zero-initialized."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Linear(embed_dim, embed_dim, bias=False), nn.GELU(), nn.Linear(embed_dim, embed_dim, bias=False)
        )
        nn.init.zeros_(self.proj[-1].weight)

    def forward(self, frame_embeds: torch.Tensor) -> torch.Tensor:
        return frame_embeds + PROJECTOR_SCALE * self.proj(frame_embeds)


def distillation_loss(projected: torch.Tensor, teacher_embeds: torch.Tensor) -> torch.Tensor:
    """`1 - cos(f', f_frozen)` averaged over all frames of all videos; both `(B, T, E)`."""
    return (1 - nn.functional.cosine_similarity(projected, teacher_embeds.to(projected.dtype), dim=-1)).mean()


class FrozenImageTower(nn.Module):
    """
    A frozen copy of a CLIP image tower and its projection, taken before training. Frames go through CLIP's plain
    image path (no STCA), one frame at a time.
    """

    def __init__(self, model: STDDModel):
        super().__init__()
        self.vision_model = copy.deepcopy(model.vision_model)
        self.visual_projection = copy.deepcopy(model.visual_projection)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        """Always in evaluation mode."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        """`(B, T, 3, H, W)` -> L2-normalized frame embeddings `(B, T, E)`."""
        frames = pixel_values.flatten(0, 1)  # images: CLIP's plain path
        outputs = self.vision_model(pixel_values=frames, interpolate_pos_encoding=interpolate_pos_encoding)
        embeds = self.visual_projection(outputs.pooler_output)
        return nn.functional.normalize(embeds, dim=-1).unflatten(0, pixel_values.shape[:2])


class STDDTrainingModule(nn.Module):
    """
    What the optimizer trains: the STDD model (its text tower frozen, its temperature `logit_scale` trained only with
    `train_logit_scale`) and, when the distillation weight is not 0, the distillation projector. `forward` returns
    the loss terms and the class scores of a batch.
    """

    def __init__(self, model: STDDModel, distillation_weight: float, train_logit_scale: bool = False):
        super().__init__()
        self.model = model
        # Without distillation the projector would hold parameters that get no gradient, which DDP rejects.
        self.projector = DistillationProjector(model.config.projection_dim) if distillation_weight else None
        self.distillation_weight = distillation_weight
        freeze_text_side(model)
        model.logit_scale.requires_grad_(train_logit_scale)

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor, prompts: PromptSet,
        teacher_embeds: torch.Tensor | None = None, interpolate_pos_encoding: bool = False,
    ) -> dict[str, torch.Tensor]:
        """
        pixel_values `(B, T, 3, H, W)`, labels `(B,)`, teacher_embeds `(B, T, E)` (needed when the distillation
        weight is not 0). Returns `loss`, `cross_entropy`, `distillation` and `logits` `(B, K)`.
        """
        frame_embeds = self.model.get_video_features(
            pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding
        ).pooler_output
        frame_embeds = nn.functional.normalize(frame_embeds, dim=-1)  # (B, T, E)
        logits = class_scores_of_checked_prompts(  # checked once by encode_prompt_set
            frame_embeds, prompts.text_embeds, self.model.logit_scale.exp(),
            prompts.prompt_class_ids, prompts.num_classes,
        )
        cross_entropy = nn.functional.cross_entropy(logits.float(), labels)
        loss, distillation = cross_entropy, torch.zeros_like(cross_entropy)
        if self.distillation_weight:
            distillation = distillation_loss(self.projector(frame_embeds), teacher_embeds)
            loss = cross_entropy + self.distillation_weight * distillation.float()
        return {"loss": loss, "cross_entropy": cross_entropy, "distillation": distillation, "logits": logits}


def freeze_text_side(model: STDDModel):
    """The text tower, its projection and the temperature stay as they are: prompt embeddings are computed once."""
    for module in (model.text_model, model.text_projection):
        module.requires_grad_(False)
    model.logit_scale.requires_grad_(False)


__all__ = [
    "DistillationProjector",
    "FrozenImageTower",
    "STDDTrainingModule",
    "distillation_loss",
]

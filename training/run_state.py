"""
What a training run carries from epoch to epoch and saves in every checkpoint (see training/checkpointing.py): where
it stands (`TrainingProgress`) and the running sum of the weights it averages over the chosen epochs
(`WeightAverager`).
"""

from dataclasses import dataclass, field

import torch

from modeling_stdd import STDDModel


@dataclass
class TrainingProgress:
    """Where a run stands, saved with every checkpoint."""

    epoch: int = 0
    global_step: int = 0
    skipped_videos: int = 0
    nonfinite_steps_skipped: int = 0
    training_seconds: float = 0.0
    last_epoch_loss: dict = field(default_factory=dict)

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict):
        self.__dict__.update(state)


@dataclass
class WeightAverager:
    """Uniform average of the trainable weights at the end of the chosen epochs (kept as a float32 running sum)."""

    epochs: list[int]
    total: dict[str, torch.Tensor] = field(default_factory=dict)
    added: list[int] = field(default_factory=list)

    def add(self, model: STDDModel, epoch: int):
        if epoch not in self.epochs:
            return
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                weights = parameter.detach().float().cpu()
                self.total[name] = self.total[name] + weights if name in self.total else weights.clone()
        self.added.append(epoch)

    def apply_to(self, model: STDDModel) -> bool:
        """Replace the model's trainable weights by the average; False when no epoch was averaged."""
        if not self.added:
            return False
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, total in self.total.items():
                parameters[name].copy_(total / len(self.added))
        return True

    def state_dict(self) -> dict:
        return {"epochs": self.epochs, "total": self.total, "added": self.added}

    def load_state_dict(self, state: dict):
        """Resume the running sum of a checkpoint, whose epochs must all be among this run's epochs to average."""
        stray = [epoch for epoch in state["added"] if epoch not in self.epochs]
        if stray:
            raise ValueError(
                f"The checkpoint's weight average already holds epochs {stray}, which this run would not average "
                f"(it averages {self.epochs or 'no epochs'}, from --average-epochs and --epochs); resume with the "
                "settings of the interrupted run, or start a new run."
            )
        self.total, self.added = state["total"], list(state["added"])

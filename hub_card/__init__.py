"""
Publish a trained STDD model on the Hugging Face Hub: `export_repo` writes a self-contained repo folder (weights,
config with `auto_map` and the custom pipeline, processor, model code, label texts with their prompt embeddings,
model card) that loads with plain transformers and `trust_remote_code=True`; `push_repo` uploads it.

Command line: `python -m hub_card export --help`, `python -m hub_card push --help`.
"""

from .card import check_model_card, check_repo_id, read_eval_results, render_model_card
from .export import ExportResult, check_repo_folder, export_repo
from .push import UploadPlan, plan_upload, push_repo


__all__ = [
    "ExportResult",
    "UploadPlan",
    "check_model_card",
    "check_repo_folder",
    "check_repo_id",
    "export_repo",
    "plan_upload",
    "push_repo",
    "read_eval_results",
    "render_model_card",
]

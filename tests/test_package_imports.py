"""
What each way in imports: `python -m modeling_stdd.askg`'s file tools start without torch or transformers, while
`import modeling_stdd` anywhere else still registers STDD with transformers' Auto classes and the pipeline task.
Each case runs in a fresh interpreter; `python -X importtime` lists every module it imports.
"""

import json
import os
import subprocess
import sys

import pytest
from askg_testing import REPO_ROOT, make_entry
from modeling_stdd.askg import write_askg_file


HEAVY_PACKAGES = {"torch", "transformers"}
TASK = "zero-shot-video-classification"
# Prints where transformers resolves STDD's model types and the task, touching no attribute of modeling_stdd.
REGISTRATION_REPORT = f"""
import json
from transformers import AutoConfig
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING
from transformers.pipelines import PIPELINE_REGISTRY

def name(cls):
    return f"{{cls.__module__}}.{{cls.__name__}}"

configs = {{model_type: type(AutoConfig.for_model(model_type)) for model_type in ("stdd", "stdd_vision_model", "stdd_text_model")}}
print(json.dumps({{
    "configs": [name(config) for config in configs.values()],
    "models": [name(MODEL_MAPPING[configs[model_type]]) for model_type in ("stdd", "stdd_vision_model")],
    "processor": name(PROCESSOR_MAPPING[configs["stdd"]]),
    "pipeline": name(PIPELINE_REGISTRY.check_task("{TASK}")[1]["impl"]),
}}))
"""
REGISTERED = {
    "configs": [
        "modeling_stdd.configuration_stdd.STDDConfig",
        "modeling_stdd.configuration_stdd.STDDVisionConfig",
        "modeling_stdd.configuration_stdd.STDDTextConfig",
    ],
    "models": ["modeling_stdd.modeling_stdd.STDDModel", "modeling_stdd.modeling_stdd.STDDVisionModel"],
    "processor": "modeling_stdd.processing_stdd.STDDProcessor",
    "pipeline": "modeling_stdd.pipeline_stdd.ZeroShotVideoClassificationPipeline",
}


def run_python(*arguments, cwd) -> subprocess.CompletedProcess:
    """`python -X importtime ARGUMENTS` with the repository importable; fails the test if it fails."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", *map(str, arguments)],
        capture_output=True, text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def imported_modules(stderr: str) -> set[str]:
    """Module names of the `import time: <self> | <cumulative> | <indented name>` lines of `-X importtime`."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.fixture
def label_file(tmp_path):
    return write_askg_file({"stirring coffee": make_entry("stirring coffee")}, tmp_path / "db.yml")


@pytest.mark.parametrize(
    "module_option, command",
    [
        (["-m", "modeling_stdd.askg"], ["validate", "db.yml"]),
        (["-mmodeling_stdd.askg"], ["validate", "db.yml"]),
        (["-m", "modeling_stdd.askg.__main__"], ["validate", "db.yml"]),
        (["-m", "modeling_stdd.askg"], ["verbalize", "db.yml", "--out", "clauses.yml"]),
        (["-m", "modeling_stdd.askg"], ["prompts", "db.yml", "--out", "label_texts.json"]),
    ],
)
def test_askg_file_tools_import_neither_torch_nor_transformers(label_file, module_option, command):
    modules = imported_modules(run_python(*module_option, *command, cwd=label_file.parent).stderr)
    assert "modeling_stdd.askg.schema" in modules
    assert not modules & HEAVY_PACKAGES


def test_import_modeling_stdd_registers_the_auto_classes_and_the_task(tmp_path):
    completed = run_python("-c", "import modeling_stdd\n" + REGISTRATION_REPORT, cwd=tmp_path)
    assert json.loads(completed.stdout) == REGISTERED
    assert HEAVY_PACKAGES <= imported_modules(completed.stderr)


def test_importing_modeling_stdd_askg_from_python_loads_the_whole_package(tmp_path):
    """Only the command line defers the model stack; a program importing the subpackage gets the registration."""
    completed = run_python("-c", "import modeling_stdd.askg\n" + REGISTRATION_REPORT, cwd=tmp_path)
    assert json.loads(completed.stdout) == REGISTERED


def test_the_askg_command_line_gets_the_model_stack_and_registration_on_first_use(tmp_path):
    """As `python -m modeling_stdd.askg` starts (its command line as Python sets it while locating the module)."""
    script = (
        "import sys\n"
        "sys.argv, sys.orig_argv = ['-m', 'validate'], [sys.executable, '-m', 'modeling_stdd.askg', 'validate']\n"
        "import modeling_stdd\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'the model stack was imported'\n"
        "from modeling_stdd import STDDModel\n"
        "assert STDDModel.__module__ == 'modeling_stdd.modeling_stdd'\n" + REGISTRATION_REPORT
    )
    assert json.loads(run_python("-c", script, cwd=tmp_path).stdout) == REGISTERED

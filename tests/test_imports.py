"""docs/architecture.md: the tabular path never loads torch — listing every task (as serving, tuning and
`dojo serve`'s parent do) must not import it; neural tasks import torch only when they build or load a model."""
import subprocess
import sys


def test_listing_every_task_and_the_server_does_not_import_torch():
    code = ("import sys; import modeldojo.tasks as tasks; tasks.load_all(); "
            "import modeldojo.serving.app, modeldojo.serving.predictor, modeldojo.export.runtime; "
            "[tasks.get(name).codec for name in tasks.TASKS]; print('torch' in sys.modules)")
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.strip() == "False"


def test_torchvision_is_not_installed_in_the_project_environment():
    """PyPI torchvision beside the CPU torch build fails to import (its compiled ops link CUDA) and, merely
    installed, breaks `from transformers import BertModel`: no dependency may drag it in (detection uses torch,
    kornia and pycocotools instead)."""
    import importlib.metadata
    import importlib.util

    assert importlib.util.find_spec("torchvision") is None
    try:
        importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        return
    raise AssertionError("torchvision is installed in the project environment")

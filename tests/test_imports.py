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

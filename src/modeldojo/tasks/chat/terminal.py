"""`dojo chat RUN`: a conversation in the terminal with a chat run or export — the same engine, template and
generation settings as `dojo serve`'s /v1/chat/completions, answers streamed token by token."""
from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Callable, TextIO

HELP = "/reset starts a new conversation, /exit (or Ctrl+D) quits"


def converse(predictor, *, system: str | None = None, max_tokens: int | None = None, temperature: float = 0.0,
             read: Callable[[str], str] = input, write: TextIO = sys.stdout) -> int:
    """Read questions until /exit or end of input; print each answer as it is generated. Returns the number of
    answers given."""
    from .codec import engine_of

    engine = engine_of(predictor.model, SimpleNamespace(max_queue=1))
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    start = len(history)
    answered = 0
    write.write(f"chatting with {predictor.name} ({HELP})\n")
    write.flush()
    while True:
        try:
            question = read("you> ")
        except EOFError:
            write.write("\n")
            break
        command = question.strip()
        if not command:
            continue
        if command in ("/exit", "/quit"):
            break
        if command == "/reset":
            del history[start:]
            write.write("(new conversation)\n")
            continue
        if command.startswith("/"):
            write.write(f"unknown command {command}; {HELP}\n")
            continue
        history.append({"role": "user", "content": question})
        write.write("bot> ")
        pieces = []
        with engine.stream(history, max_tokens=max_tokens, temperature=temperature) as stream:
            for piece in stream:
                pieces.append(piece)
                write.write(piece)
                write.flush()
            answer = stream.answer
        text = answer.text if answer is not None else "".join(pieces)
        history.append({"role": "assistant", "content": text})
        suffix = " [cut at the token limit]" if answer is not None and answer.finish_reason == "length" else ""
        write.write(f"{suffix}\n")
        answered += 1
    return answered

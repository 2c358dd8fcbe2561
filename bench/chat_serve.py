"""Generation speed of a served chat model: `dojo serve RUN` answering the real `openai` client.

* batch-1 greedy tokens/s through POST /v1/chat/completions, against the same model's plain
  `model.generate` in this process (the peer: no server, no template checks, no queue) — same prompts, same
  token counts;
* requests/s for short answers (16 tokens) at 4 and 16 concurrent clients (generations are queued one at a
  time on the model: the numbers show what that costs).

    .venv/bin/python bench/chat_quality.py --variants lora-warm        # or any chat run
    .venv/bin/python bench/chat_serve.py --run /tmp/chat-bench-XXXX/runs/lora-warm
"""
from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

QUESTIONS = ["Do I need a building permit to replace my windows?", "What is ROT deduction?",
             "How long does a bathroom renovation take?", "Who checks the electrical installation?",
             "Can I build a small guest house without a permit?"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def served(run: Path, port: int):
    command = [sys.executable, "-m", "modeldojo.cli", "serve", run.name, "--runs-dir", str(run.parent), "--port",
               str(port), "--max-queue", "64", "--timeout", "600", "-q"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError("server not ready")


def in_process(run: Path, new_tokens: int) -> dict[int, list[float]]:
    """tokens/s of plain model.generate on the run's model (greedy, batch 1, eval mode), forcing the same token
    count, at 1 and at 2 torch threads: on a shared 2-core machine 2 threads collapsed to 3-6 tokens/s while
    another job trained, 1 thread gave 15-18 — the peer is given its better setting."""
    import torch

    from modeldojo import api
    from modeldojo.tasks.chat.template import prompt_ids

    task = api.load(run.name, runs_dir=run.parent)._fitted()
    task.model.eval()
    rates: dict[int, list[float]] = {1: [], 2: []}
    warm = torch.tensor([prompt_ids(task.tokenizer, [{"role": "user", "content": "Hi"}], task.template.text)])
    with torch.no_grad():  # warm-up, as the server's first request is
        task.model.generate(input_ids=warm, attention_mask=torch.ones_like(warm), max_new_tokens=4, do_sample=False)
    for question in QUESTIONS:
        ids = torch.tensor([prompt_ids(task.tokenizer, [{"role": "user", "content": question}], task.template.text)])
        for threads in rates:
            torch.set_num_threads(threads)
            started = time.perf_counter()
            with torch.no_grad():
                task.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                    min_new_tokens=new_tokens, do_sample=False)
            rates[threads].append(new_tokens / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a chat run folder")
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    import openai

    run = Path(args.run).resolve()
    port = free_port()
    server = served(run, port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
        client.chat.completions.create(model=run.name, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                       temperature=0)  # warm-up
        rates = []
        for question in QUESTIONS:
            started = time.perf_counter()
            answer = client.chat.completions.create(model=run.name, messages=[{"role": "user", "content": question}],
                                                    max_tokens=args.tokens, temperature=0)
            rates.append(answer.usage.completion_tokens / (time.perf_counter() - started))
        throughput = {}
        for clients in (4, 16):
            def ask(index: int) -> None:
                client.chat.completions.create(model=run.name, messages=[{"role": "user", "content":
                                               QUESTIONS[index % len(QUESTIONS)]}], max_tokens=16, temperature=0)

            requests = clients * 3
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(ask, range(requests)))
            throughput[clients] = requests / (time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(60)
    plain = in_process(run, args.tokens)
    by_threads = {threads: statistics.median(values) for threads, values in plain.items()}
    served_rate, plain_rate = statistics.median(rates), max(by_threads.values())
    print("plain model.generate tokens/s by torch threads: " +
          ", ".join(f"{threads}: {rate:.1f}" for threads, rate in by_threads.items()))
    print(f"\n| measure | dojo serve (openai client) | plain model.generate | ratio |\n|---|---|---|---|")
    print(f"| batch-1 greedy tokens/s (median of {len(QUESTIONS)}) | {served_rate:.1f} | {plain_rate:.1f} | "
          f"{served_rate / plain_rate:.2f} |")
    for clients, rate in throughput.items():
        print(f"| req/s, 16-token answers, {clients} concurrent clients | {rate:.2f} | | |")


if __name__ == "__main__":
    main()

"""LoRA instruction tuning of SmolLM2-135M-Instruct: dojo's `train_chat` (its current loss, and the chunked loss of
tasks/chat/loss.py) against TRL's `SFTTrainer` + PEFT — tokens per CPU-second, wall tokens/s and peak RSS.

Same model (the packaged SmolLM2-135M-Instruct, fp32), data (the 503 English FAQ pairs of
`zaragoza-construction-faq`, CC-BY-4.0: one user question, one assistant answer, the model's own template —
which adds its default system prompt on both sides), loss on the assistant answer only, batch 4, max length
256, LoRA r=8 / alpha=16 / dropout 0.05 on every linear layer but lm_head, AdamW at 2e-4 with a linear decay and
no warmup or weight decay, grad-norm clip 1.0, seed 0, 2 torch threads, the same number of optimizer steps.

Every run is its own process (TRL in its own virtual environment, bench/.venvs/trl, made on first use with
`pip install trl==1.16.* peft -c constraints/cpu.txt`). Counted: the non-pad input tokens of every optimizer
step after the first (the first step pays one-time costs), over the wall and the process CPU time from the end
of step 1 to the end of the last step. Peak RSS is the process's whole-life high-water mark (VmHWM: model
loading included); "RSS at start" is the resident size when training begins (libraries; the safetensors weights
are memory-mapped and page in during the first forward), "RSS after step 1" what stays resident after it
(weights, optimizer state, and what the allocator kept of the step's activations).

Variants: `ours` (ChatTrainee.loss: the model's own loss over full logits), `ours-chunked` (ChatTrainee.loss
replaced in that process by chunked_causal_lm_loss), `trl` (TRL at CPU-sane settings: fp32, no gradient
checkpointing, group_by_length, completion-only loss from prompt-completion data), `trl-defaults` (TRL's own
bf16 autocast + gradient checkpointing, random order: crawls on an AVX2 CPU, so capped in steps and time),
and with --reft `reft` / `reft-chunked` (our LoReFT strategy, same steps; TRL has no ReFT). Note that TRL 1.16
already computes its loss through a fused, tiled LM head (`add_fused_lm_head`); without Triton (CPU) it scores
every position, not only the trained ones.

    .venv/bin/python bench/chat.py             # full: 20 steps, 3 repeats (over an hour on a shared 2-core box)
    .venv/bin/python bench/chat.py --steps 8   # 8 steps, 3 repeats: 44 min here at load average ~6
    .venv/bin/python bench/chat.py --quick     # 8 steps, 1 repeat (~15 min)
    .venv/bin/python bench/chat.py --long      # prompts padded with FAQ context to ~256 tokens: 4 x 256 batches
    .venv/bin/python bench/chat.py --reft      # adds the ReFT variants
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRL_VENV = ROOT / "bench" / ".venvs" / "trl"
TRL_REQUIREMENTS = ["torch", "trl==1.16.*", "peft"]  # versions from constraints/cpu.txt (torch: the CPU build)
HYPER = {"batch": 4, "max_length": 256, "lr": 2e-4, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
         "seed": 0, "threads": 2}
OURS = ("ours", "ours-chunked", "ours-kept-dropout", "ours-checkpointed")
REFT = ("reft", "reft-chunked", "reft-checkpointed")
ENVIRONMENT = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}


# -- measurement inside a child (stdlib + torch only: it runs in both virtual environments) -------------------

def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Meter:
    """Tokens per optimizer step, the (wall, CPU) clock at each step's end, RSS high-water marks. Written to `out`
    after every step, so a run killed by its time limit still says how far it got."""

    def __init__(self, out: Path, variant: str) -> None:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.out, self.pending, self.started = out, 0, False
        self.data = {"variant": variant, "steps": [], "losses": [], "torch_threads": None, "info": {}}
        register_optimizer_step_post_hook(self._step_done)

    def count(self, attention_mask, loss=None) -> None:
        if not self.started:  # training begins: note the load-time peak, then restart the high-water mark
            import torch

            self.started = True
            self.data["load_peak_kb"] = _status_kb("VmHWM")
            self.data["rss_at_start_kb"] = _status_kb("VmRSS")
            self.data["torch_threads"] = torch.get_num_threads()
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # reset VmHWM: from here on it is the training peak
        self.pending += int(attention_mask.sum())

    def loss(self, value: float) -> None:
        self.data["losses"].append(value)

    def _step_done(self, optimizer, args, kwargs) -> None:
        self.data["steps"].append({"tokens": self.pending, "wall": time.perf_counter(), "cpu": time.process_time()})
        self.data.setdefault("rss_after_step1_kb", _status_kb("VmRSS"))
        self.pending = 0
        self.data["train_peak_kb"] = _status_kb("VmHWM")
        self.write()

    def write(self) -> None:
        self.data["end_peak_kb"] = _status_kb("VmHWM")
        self.out.write_text(json.dumps(self.data))


def child_ours(spec: dict, meter: Meter, variant: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modeldojo.config import Config
    from modeldojo.events import EventBus
    from modeldojo.tasks.chat.loss import chunked_causal_lm_loss
    from modeldojo.tasks.chat.trainee import ChatTrainee, train_chat

    original = ChatTrainee.loss

    def chunked(self, model, batch):
        extra = {"prompt_lengths": batch["prompt_lengths"]} if "prompt_lengths" in batch else {}
        return chunked_causal_lm_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                      batch["divisor"], **extra)

    compute = chunked if variant.endswith(("chunked", "kept-dropout", "checkpointed")) else original
    if variant == "ours-kept-dropout":  # before the adapters recomputed their dropout: PEFT keeps mask and copy
        import modeldojo.training.loop as loop

        loop.recompute_adapter_dropout = lambda model: 0

    def measured(self, model, batch):
        meter.count(batch["attention_mask"])
        loss = compute(self, model, batch)
        meter.loss(float(loss))
        return loss

    ChatTrainee.loss = measured
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    overrides = {"train.batch_size": HYPER["batch"], "train.max_steps": spec["steps"], "train.epochs": 1,
                 "train.learning_rate": HYPER["lr"], "train.precision": "fp32", "train.threads": HYPER["threads"],
                 "train.seed": HYPER["seed"], "train.warmup": 0.0, "train.weight_decay": 0.0,
                 "train.schedule": "linear", "train.max_grad_norm": 1.0, "model.max_length": HYPER["max_length"]}
    if variant.endswith("checkpointed"):
        overrides["train.activation_checkpointing"] = True
    if variant.startswith("reft"):
        overrides["finetune.strategy"] = "reft"
    else:
        overrides.update({"finetune.strategy": "lora", "finetune.lora_rank": HYPER["lora_r"],
                          "finetune.lora_alpha": HYPER["lora_alpha"], "finetune.lora_dropout": HYPER["lora_dropout"]})
    trained = train_chat(model, tokenizer, spec["conversations"], None, Config().with_overrides(overrides),
                         EventBus(), None)
    meter.data["info"] = {key: trained.info[key] for key in ("trainable_parameters", "train_conversations",
                                                             "trained_tokens", "dropped")}


def child_trl(spec: dict, meter: Meter, variant: str) -> None:
    import torch

    torch.set_num_threads(HYPER["threads"])
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging
    from trl import SFTConfig, SFTTrainer

    logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    # Prompt-completion conversational data: TRL renders the prompt with the generation prompt, trains on the rest.
    dataset = Dataset.from_list([{"prompt": c[:-1], "completion": c[-1:]} for c in spec["conversations"]])
    settings = dict(per_device_train_batch_size=HYPER["batch"], max_steps=spec["steps"], learning_rate=HYPER["lr"],
                    max_length=HYPER["max_length"], seed=HYPER["seed"], lr_scheduler_type="linear", warmup_steps=0,
                    weight_decay=0.0, max_grad_norm=1.0, report_to="none", save_strategy="no", logging_steps=1,
                    disable_tqdm=True, use_cpu=True, dataloader_num_workers=0)
    if variant == "trl":  # CPU-sane: fp32, no recomputation, batches of similar lengths (as ours)
        settings.update(bf16=False, gradient_checkpointing=False, train_sampling_strategy="group_by_length")
    lora = LoraConfig(r=HYPER["lora_r"], lora_alpha=HYPER["lora_alpha"], lora_dropout=HYPER["lora_dropout"],
                      target_modules="all-linear", task_type="CAUSAL_LM")

    class Measured(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                meter.count(inputs["attention_mask"])
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if model.training:
                meter.loss(float(result[0] if return_outputs else result))
            return result

    with tempfile.TemporaryDirectory() as folder:
        trainer = Measured(model=model, args=SFTConfig(output_dir=folder, **settings), train_dataset=dataset,
                           processing_class=tokenizer, peft_config=lora)
        meter.data["info"] = {"trainable_parameters": sum(p.numel() for p in trainer.model.parameters()
                                                          if p.requires_grad),
                              "bf16": trainer.args.bf16, "gradient_checkpointing": trainer.args.gradient_checkpointing,
                              "completion_only_loss": trainer.args.completion_only_loss,
                              "sampling": trainer.args.train_sampling_strategy}
        trainer.train()


def child_main(variant: str, spec_path: str, out: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    meter = Meter(Path(out), variant)
    (child_trl if variant.startswith("trl") else child_ours)(spec, meter, variant)
    meter.write()


# -- the parent: data, virtual environment, runs, summary ------------------------------------------------------

def faq_conversations() -> list[list[dict]]:
    from importlib import resources

    path = resources.files("zaragoza_construction_faq").joinpath("data/faq-en-alpaca.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [[{"role": "user", "content": row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")},
             {"role": "assistant", "content": row["output"]}] for row in rows]


def long_conversations(conversations: list[list[dict]], model: str, limit: int) -> list[list[dict]]:
    """Each question after as many other FAQ pairs (as context) as fit in `limit` tokens with its answer:
    batches of 4 x ~256, the shape the memory target is stated at."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)

    def length(conversation):
        return len(tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"])

    made = []
    for number, (question, answer) in enumerate(conversations):
        context, best = [], [question, answer]
        for step in range(1, len(conversations)):
            other = conversations[(number + step) % len(conversations)]
            context.append(f"Q: {other[0]['content']}\nA: {other[1]['content']}")
            user = {"role": "user", "content": "Context:\n" + "\n\n".join(context) + "\n\nQuestion: " +
                    question["content"]}
            if length([user, answer]) > limit:
                break
            best = [user, answer]
        made.append(best)
    return made


def ensure_trl_venv() -> Path:
    python = TRL_VENV / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import trl, peft"], capture_output=True).returncode == 0:
        return python
    print(f"creating {TRL_VENV.relative_to(ROOT)} (TRL 1.16 + PEFT, torch CPU from constraints/cpu.txt) …",
          flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", TRL_VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *TRL_REQUIREMENTS, "-c", ROOT / "constraints" / "cpu.txt"],
                   check=True)
    return python


def run_child(python: Path, variant: str, spec: Path, folder: Path, timeout: float) -> dict:
    """One run in its own process, killed (with its process group) past `timeout` seconds."""
    out, log = folder / f"{variant}.json", folder / f"{variant}.log"
    out.unlink(missing_ok=True)
    started, load = time.perf_counter(), os.getloadavg()[0]  # other work on the machine skews every figure
    with open(log, "w") as stream:
        process = subprocess.Popen([python, __file__, "--child", variant, "--spec", spec, "--out", out],
                                   stdout=stream, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                   env={**os.environ, **ENVIRONMENT})
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = "timeout"
    data = json.loads(out.read_text()) if out.exists() else {"steps": []}
    data.update(exit=code, process_seconds=time.perf_counter() - started, load=load, load_after=os.getloadavg()[0])
    if code != 0:
        data["log_tail"] = log.read_text()[-1500:]
    return summarise(data)


def summarise(data: dict) -> dict:
    steps = data["steps"]
    if len(steps) >= 2:
        first, last = steps[0], steps[-1]
        tokens = sum(step["tokens"] for step in steps[1:])
        wall, cpu = last["wall"] - first["wall"], last["cpu"] - first["cpu"]
        data.update(measured_steps=len(steps) - 1, tokens=tokens, wall=wall, cpu=cpu, tokens_per_cpu_s=tokens / cpu,
                    tokens_per_s=tokens / wall, seconds_per_step=wall / (len(steps) - 1),
                    tokens_per_step=tokens / (len(steps) - 1))
    peaks = [data.get(key, 0) for key in ("load_peak_kb", "train_peak_kb", "end_peak_kb")]
    data["peak_rss_gb"] = max(peaks) / 1024 ** 2 if any(peaks) else None
    data["train_peak_gb"] = data.get("end_peak_kb", 0) / 1024 ** 2 or None
    data["rss_at_start_gb"] = data.get("rss_at_start_kb", 0) / 1024 ** 2 or None
    data["rss_after_step1_gb"] = data.get("rss_after_step1_kb", 0) / 1024 ** 2 or None
    losses = data.get("losses") or []
    data["mean_loss"] = statistics.fmean(losses) if losses else None
    data.pop("steps", None)
    data.pop("losses", None)
    return data


def median(runs: list[dict], key: str):
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(value, pattern: str, missing: str = "—") -> str:
    return missing if value is None else format(value, pattern)


LABELS = {"ours": "dojo train_chat, current loss (full logits)", "ours-chunked": "dojo train_chat, chunked loss",
          "ours-kept-dropout": "dojo train_chat, chunked loss, adapter dropout kept (before)",
          "ours-checkpointed": "dojo train_chat, chunked loss, train.activation_checkpointing=on",
          "trl": "TRL SFTTrainer, CPU-sane (fp32, no GC)", "trl-defaults": "TRL SFTTrainer, defaults (bf16 + GC)",
          "reft": "dojo ReFT, current loss", "reft-chunked": "dojo ReFT, chunked loss",
          "reft-checkpointed": "dojo ReFT, chunked loss, train.activation_checkpointing=on"}


def report(results: dict[str, list[dict]], args, shape: str) -> None:
    rows = {}
    for variant, runs in results.items():
        rows[variant] = {key: median(runs, key) for key in ("tokens_per_cpu_s", "tokens_per_s", "seconds_per_step",
                                                           "tokens_per_step", "peak_rss_gb", "rss_at_start_gb",
                                                           "rss_after_step1_gb",
                                                           "mean_loss", "measured_steps")}
        rows[variant]["runs"] = len(runs)
        rows[variant]["done"] = sum(run["exit"] == 0 for run in runs)
    print(f"\n## LoRA SFT, SmolLM2-135M-Instruct, {shape}, batch {HYPER['batch']}, fp32, {args.steps} steps "
          f"(medians of {args.repeats})\n")
    print("| variant | tokens / CPU-s | tokens / s (wall) | s / step | tokens / step | peak RSS GB | RSS at start GB |"
          " RSS after step 1 GB | mean train loss | runs ok |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for variant, row in rows.items():
        print(f"| {LABELS[variant]} | {fmt(row['tokens_per_cpu_s'], '.0f')} | {fmt(row['tokens_per_s'], '.0f')} | "
              f"{fmt(row['seconds_per_step'], '.2f')} | {fmt(row['tokens_per_step'], '.0f')} | "
              f"{fmt(row['peak_rss_gb'], '.2f')} | {fmt(row['rss_at_start_gb'], '.2f')} | "
              f"{fmt(row['rss_after_step1_gb'], '.2f')} | "
              f"{fmt(row['mean_loss'], '.3f')} | {row['done']}/{row['runs']} |")
    print()
    for ours in [v for v in (*OURS, *REFT) if v in rows]:
        for peer in [v for v in ("trl", "trl-defaults") if v in rows]:
            a, b = rows[ours], rows[peer]
            if a["tokens_per_cpu_s"] and b["tokens_per_cpu_s"]:
                print(f"{ours} / {peer}: tokens per CPU-second {a['tokens_per_cpu_s'] / b['tokens_per_cpu_s']:.2f}x, "
                      f"wall tokens/s {a['tokens_per_s'] / b['tokens_per_s']:.2f}x, peak RSS "
                      f"{a['peak_rss_gb'] / b['peak_rss_gb']:.2f}x "
                      f"({a['peak_rss_gb']:.2f} vs {b['peak_rss_gb']:.2f} GB)")
    for variant, runs in results.items():
        for run in runs:
            if run["exit"] != 0:
                print(f"\n{variant}: exit {run['exit']} after {run['process_seconds']:.0f} s, "
                      f"{run.get('measured_steps', 0) + 1 if run.get('measured_steps') else 'fewer than 2'} steps done"
                      + (f"\n{run['log_tail']}" if run["exit"] != "timeout" else ""))
    targets = []
    if "ours-chunked" in rows and rows["ours-chunked"]["peak_rss_gb"]:
        targets.append(f"chunked peak RSS {rows['ours-chunked']['peak_rss_gb']:.2f} GB (target <= 2.0)")
    if "reft-chunked" in rows and rows["reft-chunked"]["peak_rss_gb"]:
        targets.append(f"ReFT chunked peak RSS {rows['reft-chunked']['peak_rss_gb']:.2f} GB (target <= 1.8)")
    best = max((rows[v]["tokens_per_cpu_s"] or 0 for v in OURS if v in rows), default=0)
    if best and "trl" in rows and rows["trl"]["tokens_per_cpu_s"]:
        targets.append(f"best ours / TRL tokens per CPU-second {best / rows['trl']['tokens_per_cpu_s']:.2f}x "
                       "(target >= 1.3)")
    if targets:
        print("\ntargets: " + "; ".join(targets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 steps, 1 repeat, TRL defaults capped at 3 steps")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 20; --quick 8)")
    parser.add_argument("--repeats", type=int, help="runs per variant (default 3; --quick 1)")
    parser.add_argument("--long", action="store_true", help="prompts filled with FAQ context to ~256 tokens")
    parser.add_argument("--reft", action="store_true", help="also our ReFT strategy, both losses")
    parser.add_argument("--only", nargs="*", choices=[*OURS, "trl", "trl-defaults", *REFT], help="these variants")
    parser.add_argument("--skip-defaults", action="store_true", help="skip TRL at its defaults (it crawls)")
    parser.add_argument("--defaults-steps", type=int, help="TRL defaults: steps (default 6; --quick 3)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run before it is killed")
    parser.add_argument("--defaults-timeout", type=float, default=420, help="seconds for a TRL-defaults run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args.child, args.spec, args.out)
    args.steps = args.steps or (8 if args.quick else 20)
    args.repeats = args.repeats or (1 if args.quick else 3)
    defaults_steps = args.defaults_steps or (3 if args.quick else 6)
    variants = list(args.only or [*OURS[:2], "trl", *([] if args.skip_defaults else ["trl-defaults"]),
                                  *(REFT[:2] if args.reft else [])])

    sys.path.insert(0, str(ROOT / "src"))
    from modeldojo.tasks.chat.base_model import default_model

    model = default_model()
    conversations = faq_conversations()
    if args.long:
        conversations = long_conversations(conversations, model, HYPER["max_length"] - 4)
    trl_python = ensure_trl_venv() if any(v.startswith("trl") for v in variants) else None
    import torch

    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}; model {model}")
    print(f"data: {len(conversations)} FAQ conversations{' with context' if args.long else ''}; {HYPER}; "
          f"{args.steps} steps x {args.repeats} repeats; variants {variants}", flush=True)
    results: dict[str, list[dict]] = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        for repeat in range(args.repeats):
            for variant in variants:
                if variant == "trl-defaults" and repeat:
                    continue  # once: it is the slow reference point, not a contender
                steps = defaults_steps if variant == "trl-defaults" else args.steps
                spec = folder / f"spec-{steps}.json"
                if not spec.exists():
                    spec.write_text(json.dumps({"model": model, "conversations": conversations, "steps": steps}))
                python = trl_python if variant.startswith("trl") else Path(sys.executable)
                timeout = args.defaults_timeout if variant == "trl-defaults" else args.timeout
                run = run_child(python, variant, spec, folder, timeout)
                results[variant].append(run)
                print(f"[{repeat + 1}/{args.repeats}] {variant:13s} exit {run['exit']}: "
                      f"{fmt(run.get('tokens_per_cpu_s'), '.0f')} tokens/CPU-s, {fmt(run.get('tokens_per_s'), '.0f')} "
                      f"tokens/s, {fmt(run.get('seconds_per_step'), '.2f')} s/step, peak RSS "
                      f"{fmt(run.get('peak_rss_gb'), '.2f')} GB (at start {fmt(run.get('rss_at_start_gb'), '.2f')}), "
                      f"loss {fmt(run.get('mean_loss'), '.3f')}, {run['process_seconds']:.0f} s, "
                      f"load average {run['load']:.1f} -> "
                      f"{run['load_after']:.1f}; {run.get('info')}",
                      flush=True)
    shape = "FAQ + context (~256 tokens)" if args.long else "FAQ (mean ~101 tokens, max 169)"
    report(results, args, shape)


if __name__ == "__main__":
    main()

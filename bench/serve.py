"""HTTP serving throughput and latency: `dojo serve` (ONNX Runtime, dynamic batching) against a naive server
(FastAPI + the run's own model, one forward per request — what one writes first), same machine, same run,
same request bodies. Load: wrk from Debian's package on 127.0.0.1 (1 thread, 16 connections, 10 s each),
POST /predict with one row per request. Prints req/s, latency percentiles, errors and the ratio to the peer.

    .venv/bin/python examples/reviews_data.py && .venv/bin/dojo train examples/reviews.yaml
    .venv/bin/python examples/ames_demo.py     # the ames-demo run (or --table-run NAME)
    .venv/bin/python bench/serve.py            # ~5 min; needs `apt-get install wrk`
    .venv/bin/python bench/serve.py --only logging --repeats 3   # --log-predictions on vs off, tabular run
    .venv/bin/python bench/serve.py --only logging --repeats 3 --start-postgres   # + a PostgreSQL log

`--only logging`: the tabular run served with and without `--log-predictions` (every request logged, masked),
alternating, `--repeats` times each; prints the median req/s and p99 of each and their ratio (issue 17's target:
p99 within 5 %). `--log-database URL` adds a third setting, `--log-predictions URL` (rows in dojo_prediction_log),
in the same alternation; `--start-postgres` starts a throw-away PostgreSQL server for it (initdb into a temporary
folder, pg_ctl on a free port of 127.0.0.1, as the `postgres` user under root: tests/postgres_server.py's helpers;
the server's default durability settings, fsync on) and stops it at the end. For each logged run the table shows
the requests wrk counted, the /predict requests the server answered (its /metrics, warm-up included) and the
entries that reached the store; the server's "entries lost" warnings are printed when there are any.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

PYTHON = sys.executable
LUA = """
counter = 0
bodies = {}
for line in io.lines("%s") do bodies[#bodies + 1] = line end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  return wrk.format(nil, "/predict", nil, bodies[counter %% #bodies + 1])
end
"""


def naive_app(reference: str, runs_dir: str):
    """The peer: a plain FastAPI endpoint calling the run's model on each request as it comes."""
    from fastapi import FastAPI

    import modeldojo as dojo

    model = dojo.load(reference, runs_dir)
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict):  # a sync endpoint: FastAPI runs it on its thread pool, one request per call
        rows = [row if isinstance(row, dict) else {model.features[0]: row} for row in body["inputs"]]
        prediction = model.predict_frame(pd.DataFrame.from_records(rows, columns=model.features))
        return {"predictions": [str(value) for value in prediction.values]}

    return app


def wait_ready(url: str, path: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stdout.read()}")
        try:
            if httpx.get(url + path, timeout=1).status_code in (200, 405):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def measure(command: list[str], ready_path: str, bodies: Path, args, label: str, counted=None) -> dict:
    """Start the server (`command` + port), warm it with 3 s of load, then measure `args.seconds` with wrk.
    `counted` (a callable, after the server stopped: the entries its prediction log stored) adds the columns
    "wrk requests", "served" (200s of /predict on /metrics, warm-up included) and "logged"."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([arg.replace("PORT", str(port)) for arg in command], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        wait_ready(url, ready_path, process)
        if "--workers" in command:  # readiness came from one worker; give the others time to load and warm up
            time.sleep(10)
        script = Path(tempfile.mkdtemp()) / "post.lua"
        script.write_text(LUA % bodies)
        wrk = ["wrk", "-t1", "-c", str(args.connections), "-s", str(script)]
        subprocess.run([*wrk, "-d", "3s", url], capture_output=True, check=True)  # warm-up
        output = subprocess.run([*wrk, "-d", f"{args.seconds}s", "--latency", url], capture_output=True, text=True,
                                check=True).stdout
        metrics = httpx.get(url + "/metrics").text if ready_path == "/v2/health/ready" else ""
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:  # the naive server may still be working through a backlog
            process.kill()
            process.wait()
    counts = {}
    if counted is not None:
        served = re.search(r'^dojo_requests_total\{route="/predict",status="200"\} ([\d.e+]+)$', metrics, re.M)
        counts = {"wrk requests": int(re.search(r"(\d+) requests in", output).group(1)),
                  "served": int(float(served.group(1))) if served else -1, "logged": counted()}
        lost = [line for line in process.stdout.read().splitlines() if "prediction log" in line]
        if lost:
            print(f"{label}: " + "\n  ".join(lost))
    batches = dict(re.findall(r"^dojo_batch_size_(sum|count) ([\d.e+]+)$", metrics, re.M))
    # With --workers 2, /metrics comes from whichever worker takes the connection (metrics are per process): one
    # that served none of wrk's keep-alive connections has no batches to show.
    mean_batch = round(float(batches["sum"]) / float(batches["count"]), 1) \
        if batches and float(batches["count"]) else (1.0 if not batches else float("nan"))
    return {"server": label, **parse_wrk(output), "mean batch": mean_batch, **counts}


def parse_wrk(output: str) -> dict:
    def milliseconds(text: str) -> float:
        number, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(number) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    percentiles = dict(re.findall(r"^\s+(50|75|90|99)(?:\.000)?%\s+(\S+)\s*$", output, re.M))
    if "99" not in percentiles:
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)$", output, re.M)
    return {"req/s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p50 ms": milliseconds(percentiles["50"]), "p99 ms": milliseconds(percentiles["99"]),
            "non-2xx": int(errors.group(1)) if errors else 0, "socket errors": socket_errors.group(1) if
            socket_errors else ""}


def text_bodies(args, folder: Path) -> Path:
    from transformers import AutoTokenizer

    import modeldojo as dojo

    model = dojo.load(args.text_run, args.runs_dir)
    tokenizer = AutoTokenizer.from_pretrained(Path(args.runs_dir) / args.text_run / "export/onnx/tokenizer")
    texts = pd.read_csv(args.text_data)[model.features[0]].astype(str)
    short = [text for text in texts if len(tokenizer(text)["input_ids"]) <= 64][:300]
    path = folder / "text.jsonl"
    path.write_text("".join(json.dumps({"inputs": [text]}) + "\n" for text in short))
    print(f"text: {len(short)} reviews of ≤ 64 tokens, one per request")
    return path


def table_bodies(args, folder: Path) -> Path:
    import modeldojo as dojo

    model = dojo.load(args.table_run, args.runs_dir)
    rows = pd.read_csv(args.table_data)[model.features].head(300)
    path = folder / "table.jsonl"
    path.write_text("".join(json.dumps({"inputs": [record]}) + "\n"
                            for record in json.loads(rows.to_json(orient="records"))))
    print(f"tabular: {len(rows)} Ames rows ({len(model.features)} columns), one per request")
    return path


def load_postgres_helpers():
    """tests/postgres_server.py, imported by path (its helpers find the binaries and run them as `postgres`)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "postgres_server.py"
    spec = importlib.util.spec_from_file_location("dojo_test_postgres_server", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def throwaway_postgres(database: str = "dojo_log"):
    """A PostgreSQL server in a temporary folder on a free port, with an empty `database`; yields its URL."""
    import psycopg2
    import pytest

    pg = load_postgres_helpers()
    bindir = pg.find_bindir()
    if bindir is None:
        sys.exit(f"--start-postgres: {pg.INSTALL_HINT}")
    initdb, pg_ctl = os.path.join(bindir, "initdb"), os.path.join(bindir, "pg_ctl")
    try:
        runner = pg._Runner()
        base = pg._make_base(runner)
    except pytest.skip.Exception as reason:  # the helpers skip a test; here that ends the bench
        sys.exit(f"--start-postgres: {reason}")
    data, sockdir, log = (os.path.join(base, name) for name in ("data", "socket", "server.log"))
    started = False
    try:
        os.mkdir(sockdir, 0o700)
        runner.own(sockdir)
        proc = runner.run([initdb, "-D", data, "-A", "trust", "-U", pg.USER, "--no-sync", "-E", "UTF8",
                           "--locale=C"], cwd=base, timeout=180)
        if proc.returncode:
            sys.exit(f"initdb failed:\n{pg._output(proc)[-3000:]}")
        port = free_port()
        proc = runner.run([pg_ctl, "-w", "-t", "60", "-D", data, "-l", log, "-o",
                           f"-h 127.0.0.1 -p {port} -k {sockdir} -c max_connections=100", "start"],
                          cwd=base, timeout=120)
        started = proc.returncode == 0
        if not started:
            sys.exit(f"PostgreSQL did not start: {pg._output(proc)}\n{pg._tail(log)}")
        connection = psycopg2.connect(host="127.0.0.1", port=port, user=pg.USER, dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {database}")
        connection.close()
        print(f"PostgreSQL ({Path(bindir).parent.name}) on 127.0.0.1:{port}, database {database}")
        yield f"postgresql://{pg.USER}@127.0.0.1:{port}/{database}"
    finally:
        if started or os.path.exists(os.path.join(data, "postmaster.pid")):
            runner.run([pg_ctl, "-D", data, "-m", "fast", "stop"], cwd=base, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def database_rows(url: str) -> int:
    """Rows in the prediction-log table (0 before the first server created it)."""
    from sqlalchemy import create_engine, inspect, text

    from modeldojo.serving.log_stores import TABLE, _engine_url

    engine = create_engine(_engine_url(url))
    try:
        if not inspect(engine).has_table(TABLE):
            return 0
        with engine.connect() as connection:
            return connection.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar_one()
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--text-run", default="reviews")
    parser.add_argument("--text-data", default="data/reviews_test.csv")
    parser.add_argument("--table-run", default="ames-demo")
    parser.add_argument("--table-data", default="data/ames.csv")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", choices=["text", "tabular", "logging"])
    parser.add_argument("--repeats", type=int, default=3, help="--only logging: measurements of each setting")
    parser.add_argument("--log-database", metavar="URL",
                        help="--only logging: a third setting, --log-predictions URL (e.g. postgresql://…)")
    parser.add_argument("--start-postgres", action="store_true",
                        help="--only logging: start a throw-away PostgreSQL server for --log-database")
    parser.add_argument("--naive-server", nargs=2, metavar=("RUN", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        import uvicorn

        uvicorn.run(naive_app(args.naive_server[0], args.runs_dir), host="127.0.0.1", port=int(args.naive_server[1]),
                    log_level="warning", loop="uvloop", http="httptools")
        return
    if not shutil.which("wrk"):
        sys.exit("needs wrk: apt-get install wrk")
    from modeldojo.export.exporter import export

    folder = Path(tempfile.mkdtemp())
    dojo_serve = [str(Path(PYTHON).with_name("dojo")), "serve", "--quiet", "--runs-dir", args.runs_dir, "--port",
                  "PORT"]
    naive = [PYTHON, __file__, "--runs-dir", args.runs_dir, "--naive-server"]
    results = []
    if args.only in (None, "text"):
        for quantize in (None, "int8"):
            export(args.text_run, runs_dir=args.runs_dir, quantize=quantize)
        bodies = text_bodies(args, folder)
        exports = Path(args.runs_dir) / args.text_run / "export"
        results.append(measure([*naive, args.text_run, "PORT"], "/docs", bodies, args,
                               "text · naive FastAPI + PyTorch eager, per request"))
        for name, extra in (("int8", []), ("int8, 2 workers", ["--workers", "2"]), ("fp32", []),
                            ("fp32, 2 workers", ["--workers", "2"])):
            target = str(exports / ("onnx-int8" if name.startswith("int8") else "onnx"))
            results.append(measure([*dojo_serve, target, *extra], "/v2/health/ready", bodies, args,
                                   f"text · dojo serve, ONNX {name}"))
    if args.only == "logging":
        with contextlib.ExitStack() as stack:
            if args.start_postgres:
                args.log_database = stack.enter_context(throwaway_postgres())
            logging_comparison(args, folder, dojo_serve)
        return
    if args.only in (None, "tabular"):
        exported = export(args.table_run, runs_dir=args.runs_dir)
        preprocessing = json.loads((Path(exported["folder"]) / "manifest.json").read_text())["preprocessing"]
        backend = "ONNX" if preprocessing["backend"] == "onnx" else \
            f"native {preprocessing['learner']} file ({preprocessing['why_native']})"
        bodies = table_bodies(args, folder)
        results.append(measure([*naive, args.table_run, "PORT"], "/docs", bodies, args,
                               "tabular · naive FastAPI + LightGBM, per request"))
        for name, extra in (("1 worker", []), ("2 workers", ["--workers", "2"])):
            results.append(measure([*dojo_serve, args.table_run, *extra], "/v2/health/ready", bodies, args,
                                   f"tabular · dojo serve, export: {backend}, {name}"))
    table = pd.DataFrame(results)
    for kind in ("text", "tabular"):
        rows = table["server"].str.startswith(kind)
        if rows.any():
            table.loc[rows, "× naive"] = (table.loc[rows, "req/s"] / table.loc[rows, "req/s"].iloc[0]).round(2)
    print(f"\nwrk -t1 -c{args.connections} -d{args.seconds}s, one row per POST /predict, {os.cpu_count()} cores")
    print(table.to_string(index=False))


def logging_comparison(args, folder: Path, dojo_serve: list[str]) -> None:
    bodies = table_bodies(args, folder)
    results = []
    for repeat in range(args.repeats):
        logs = folder / f"logs-{repeat}"
        settings = [("without prediction log", [], None),
                    ("with --log-predictions", ["--log-predictions", str(logs)],
                     lambda logs=logs: sum(1 for path in logs.glob("predictions-*.jsonl") for _ in path.open()))]
        if args.log_database:  # the table holds every run's rows: count what this run added
            before = database_rows(args.log_database)
            settings.append(("with --log-predictions URL (PostgreSQL)", ["--log-predictions", args.log_database],
                             lambda before=before: database_rows(args.log_database) - before))
        for label, extra, counted in settings:
            results.append(measure([*dojo_serve, args.table_run, *extra], "/v2/health/ready", bodies, args,
                                   f"logging · {label}", counted))
    table = pd.DataFrame(results)
    medians = table.groupby("server", sort=False)[["req/s", "p50 ms", "p99 ms"]].median()
    print(f"\nwrk -t1 -c{args.connections} -d{args.seconds}s, one row per POST /predict, {os.cpu_count()} cores")
    print(table.to_string(index=False))
    print(medians.to_string())
    off = medians.loc["logging · without prediction log"]
    for label in medians.index[1:]:
        on = medians.loc[label]
        print(f"{label.removeprefix('logging · ')} / without: req/s {on['req/s'] / off['req/s']:.3f}, "
              f"p99 {on['p99 ms'] / off['p99 ms']:.3f}")
    logged = table.dropna(subset=["logged"]).groupby("server", sort=False)[["wrk requests", "served", "logged"]].sum()
    print(logged.astype(int).to_string())


if __name__ == "__main__":
    main()

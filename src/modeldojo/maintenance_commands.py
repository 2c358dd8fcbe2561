"""`dojo monitor` and `dojo models`: the maintenance commands (printing through cli._Output)."""
from __future__ import annotations

from rich.markup import escape

from .errors import ConfigError


def add_parsers(command, reading) -> None:
    """The two commands' parsers (cli._parser's `command` factory and its `reading` parent)."""
    monitor = command("monitor", "Drift of new rows (or of a prediction log) against the run's training rows: "
                      "per-column two-sample tests corrected across columns with effect-size floors, prediction "
                      "drift, accuracy estimated without labels (classifiers); report.html + summary.json; exit 7 "
                      "on an alert.",
                      "dojo monitor ames --data this_month.csv\n  dojo monitor ames --logs prediction-logs/",
                      [reading])
    monitor.add_argument("run", help="run name or folder (or models:/NAME@champion)")
    monitor.add_argument("--data", help="the new rows (CSV/TSV/JSONL/Parquet)")
    monitor.add_argument("--logs", metavar="DIR|URL", help="a `dojo serve --log-predictions` folder or database URL "
                         "instead of --data")
    monitor.add_argument("--correction", choices=["holm", "bh"], default="holm",
                         help="multiple-testing correction across columns (default holm)")
    monitor.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    retrain = command("retrain", "Train a challenger with the champion's config on old + new rows; promote it only "
                      "when a paired bootstrap interval of its advantage on the same held-out rows lies above the "
                      "margin, no class regresses and its export passes parity.",
                      "dojo retrain prices --data this_month.csv\n  dojo retrain churn --data new.csv --margin 0.01")
    retrain.add_argument("name", help="the registered model (its champion is the baseline)")
    retrain.add_argument("--data", required=True, help="the new labelled rows")
    retrain.add_argument("--margin", type=float, default=0.0, help="the advantage the interval must exceed "
                         "(accuracy points, or absolute error for regression; default 0)")
    retrain.add_argument("--tolerance", type=float, default=0.05, help="largest drop of any class's recall "
                         "(default 0.05)")
    retrain.add_argument("--no-export", action="store_true", help="skip the export parity requirement")
    models = command("models", "Model versions on MLflow's registry: register a run as the next version of a name, "
                     "list versions, promote one to champion, roll the champion back.",
                     "dojo models register ames --name prices   # version 1 is the champion, later ones "
                     "challengers\n  dojo models list prices\n  dojo models promote prices 2\n"
                     "  dojo models rollback prices\n  dojo serve models:/prices@champion")
    models.add_argument("action", choices=["register", "list", "promote", "rollback"])
    models.add_argument("subject", metavar="RUN|NAME", help="register: the run; otherwise the model name")
    models.add_argument("version", nargs="?", type=int, help="promote: the version to make champion")
    models.add_argument("--name", help="register: the model name")
    models.add_argument("--alias", choices=["champion", "challenger"], help="register: the alias to give "
                        "(default: champion for a new name, else challenger)")
    models.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite file in the runs folder)")


def monitor(args, out) -> int:
    from . import commands as _commands
    from .monitoring.monitor import EXIT_CODE, monitor as run_monitor

    data = _commands._read_for_run(args, out, args.data) if args.data else None
    summary = run_monitor(args.run, data, logs=args.logs, runs_dir=_commands._runs_dir(args), correction=args.correction,
                          alpha=args.alpha)
    columns = summary["drift"]["columns"]
    out.table("Drift by column", ["column", "test", "p (corrected)", "effect", "drifted"],
              [[c["column"], c["test"], f"{c['p_value_corrected']:.3g}", f"{c['effect_name']} {c['effect_size']:.3g}",
                "yes" if c["drifted"] else ""] for c in columns])
    estimated = summary.get("estimated_performance")
    if estimated:
        values = ", ".join(f"{chunk['estimated']:.3f}" for chunk in estimated["chunks"][:10])
        out.say(f"estimated accuracy without labels, by chunk: {values}")
    out.say(f"{'[bold red]ALERT[/]' if summary['alert'] else '[green]no alert[/]'}: report {escape(summary['folder'])}/"
            "report.html")
    out.result(summary)
    return EXIT_CODE if summary["alert"] else 0


def retrain(args, out) -> int:
    from . import commands as _commands
    from .retraining import retrain as run_retrain

    decision = run_retrain(args.name, args.data, runs_dir=_commands._runs_dir(args), margin=args.margin,
                           tolerance=args.tolerance, export=not args.no_export)
    mark = "[green]✓ promoted[/]" if decision["promoted"] else "[yellow]not promoted[/]"
    out.say(f"{mark}: {escape(decision['reason'])}")
    out.result(decision)
    return 0


def models(args, out) -> int:
    from . import commands as _commands, versions

    place = {"runs_dir": _commands._runs_dir(args), "uri": args.tracking_uri}
    if args.action == "register":
        if not args.name:
            raise ConfigError("dojo models register RUN --name NAME: give the model name")
        result = versions.register(args.subject, args.name, alias=args.alias, **place)
        out.say(f"[green]✓[/] {escape(result['name'])} version {result['version']} ({result['alias']}) from run "
                f"{escape(result['run'])}")
    elif args.action == "list":
        rows = versions.versions(args.subject, **place)
        out.table(f"Versions of {args.subject}", ["version", "aliases", "run", "task", "metrics"],
                  [[r["version"], ", ".join(r["aliases"]), r["run"], r["task"],
                    ", ".join(f"{k} {v:.4g}" for k, v in list(r["metrics"].items())[:4])] for r in rows])
        result = {"versions": rows}
    elif args.action == "promote":
        if args.version is None:
            raise ConfigError("dojo models promote NAME VERSION: give the version")
        result = versions.promote(args.subject, args.version, **place)
        out.say(f"[green]✓[/] {escape(args.subject)} champion: version {result['champion']} (was {result['previous']})")
    else:
        result = versions.rollback(args.subject, **place)
        out.say(f"[green]✓[/] {escape(args.subject)} champion: version {result['champion']} again (version "
                f"{result['rolled_back']} rolled back)")
    out.result(result)
    return 0

"""Command line: `dataaudit run`, `dataaudit demo`, `dataaudit compare`.

Exit codes: 0 success; 1 a --fail-on condition is met (or an analysis failed);
2 bad input or usage.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import traceback
import warnings
from pathlib import Path

EXIT_OK, EXIT_FAIL_ON, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A flag or argument that cannot be used as given."""


def _add_common_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty output folder, replacing dataaudit's files there",
    )
    parser.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="COND",
        help="exit 1 when a metric condition holds, e.g. 'label_error_rate>0.05' "
        "(repeat or comma-separate; keys are the metrics in summary.json)",
    )
    parser.add_argument(
        "--html-max-rows",
        type=int,
        default=500,
        metavar="N",
        help="rows per table in report.html (the CSVs hold every row; default 500)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--embedding-map",
        dest="embedding_map_method",
        choices=("pca", "tsne"),
        help="2-D projection of the embedding map: pca (instant) or tsne (clearer clusters, "
        "a few seconds; default pca, tsne for the demo)",
    )
    parser.add_argument(
        "--knn",
        dest="knn_mode",
        choices=("exact", "approx", "auto"),
        help="similarity search for duplicates and outliers: exact, approx (IVF, recall measured "
        "and reported) or auto (approx above --knn-approx-above items; default)",
    )
    parser.add_argument(
        "--knn-approx-above",
        dest="knn_approx_threshold",
        type=int,
        metavar="N",
        help="in auto mode, search approximately above N items (default 50,000: exact search "
        "of 100k x 128 takes ~30 s on 2 cores, approximate ~5 s at recall@10 ~0.98)",
    )
    _add_label_next(parser)
    _add_shift(parser)
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="print every step")


def _add_label_next(parser: argparse.ArgumentParser) -> None:
    from dataaudit.analyses.label_next import STRATEGIES, parse_mix

    def mix_spec(text: str) -> str:
        try:
            parse_mix(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    def budget(text: str) -> int:
        if not text.strip().isdigit():
            raise argparse.ArgumentTypeError(f"must be a whole number ≥ 0, got {text!r}")
        return int(text)

    group = parser.add_argument_group("label next")
    group.add_argument(
        "--budget",
        type=budget,
        metavar="N",
        help="items to queue in label_next.csv (default 100)",
    )
    group.add_argument(
        "--strategy",
        choices=STRATEGIES,
        metavar="NAME",
        help="how to pick them: " + ", ".join(STRATEGIES) + " (default mix)",
    )
    group.add_argument(
        "--label-next-mix",
        type=mix_spec,
        metavar="SPEC",
        help="budget shares of the mix, e.g. 'uncertainty:0.9,rare:0.04,ood:0.03,lookalike:0.03'",
    )


def _add_shift(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("shift")
    group.add_argument(
        "--reference-split",
        metavar="NAME",
        help="split the current one is compared with (default: train)",
    )
    group.add_argument(
        "--current-split",
        metavar="NAME",
        help="split compared with the reference (default: production, else test, else the one "
        "other split)",
    )


def _add_engine(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine (a Dask cluster: pip install 'dataaudit[dask]')")
    group.add_argument(
        "--engine",
        choices=("inprocess", "dask"),
        help="where the analyses run: in this process (default) or as map/reduce over the "
        "partitions of the inputs on a Dask cluster (--table may then be a folder or glob of "
        "Parquet files, any fsspec URL)",
    )
    group.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler")
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="start a local cluster of N worker processes, each with a memory limit past which "
        "it spills to disk (--worker-memory)",
    )
    group.add_argument(
        "--worker-memory",
        metavar="SIZE",
        help="memory limit per --workers process, e.g. 4GB (default: an equal share of RAM)",
    )
    group.add_argument(
        "--analyses",
        metavar="A,B",
        help="run only these analyses (the others are listed as skipped); the Dask engine "
        "needs this while some analyses do not run on it yet",
    )


def _engine_options(args: argparse.Namespace) -> dict:
    """audit()'s engine arguments from the flags; UsageError for combinations that cannot work."""
    engine = getattr(args, "engine", None) or "inprocess"
    scheduler, workers = getattr(args, "scheduler", None), getattr(args, "workers", None)
    analyses = getattr(args, "analyses", None)
    options = {"engine": engine}
    if analyses:
        options["analyses"] = tuple(a.strip() for a in analyses.split(",") if a.strip())
    if engine != "dask":
        if scheduler is not None or workers is not None:
            raise UsageError("--scheduler and --workers need --engine dask.")
        return options
    if (scheduler is None) == (workers is None):
        raise UsageError("--engine dask needs either --scheduler ADDRESS or --workers N.")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}.")
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UsageError("--engine dask needs Dask: pip install 'dataaudit[dask]'.") from None
    return options


@contextlib.contextmanager
def _engine_session(args: argparse.Namespace, out: Path, options: dict):
    """For --engine dask: the cluster's client and the folder where workers write parts."""
    if options["engine"] != "dask":
        yield options
        return
    from dataaudit.engine.dask_engine import cluster_session

    with cluster_session(args.scheduler, args.workers, args.worker_memory, out) as cluster:
        yield {**options, **cluster}


def build_parser() -> argparse.ArgumentParser:
    from dataaudit import __version__

    parser = argparse.ArgumentParser(
        prog="dataaudit",
        description="Audit a training run's data: label errors, duplicates and leakage, outliers, "
        "failure slices and what to label next. Writes report.html, ranked CSVs and summary.json.",
    )
    parser.add_argument("--version", action="version", version=f"dataaudit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="audit your inputs",
        description="Audit an examples table with the model's probabilities "
        "(and optionally embeddings).",
    )
    inputs = run.add_argument_group("inputs")
    inputs.add_argument(
        "--table",
        default=None,
        metavar="T",
        help="examples table, CSV or Parquet: id, label (empty = unlabeled), split, metadata "
        "(required, here or in the config file)",
    )
    inputs.add_argument(
        "--probs",
        default=None,
        metavar="P",
        help="out-of-sample probabilities: .npy N x K or M x N x K, or Parquet/CSV with "
        "an id column and one column per class",
    )
    inputs.add_argument(
        "--embeddings",
        metavar="E",
        help="embeddings: .npy N x d, or Parquet/CSV with id + vector columns",
    )
    inputs.add_argument(
        "--classes",
        metavar="C",
        help="class names in probability-column order: comma-separated, or a file "
        "with one per line (default: classes.txt beside --probs, else sorted labels). A keyed "
        "probability file's header is matched to them by name",
    )
    inputs.add_argument(
        "--unlabeled-values",  # comma-separated; split by make_config, like a config file's list
        metavar="V,W",
        help="label values that mean unlabeled besides an empty cell, e.g. 'NA,-1' "
        "(default: none; 'NA', 'None', 'null' are class names)",
    )
    inputs.add_argument(
        "--allow-label-mismatch",
        action="store_true",
        default=None,
        help="continue (with a warning) when the labels agree with the model no better than "
        "chance, or far better under another class order; only for a model that really is "
        "that poor (by default the run stops with exit 2)",
    )
    columns = run.add_argument_group("column roles")
    columns.add_argument("--id-col", default="id", help="id column (default: id)")
    columns.add_argument("--label-col", default="label", help="label column (default: label)")
    columns.add_argument(
        "--split-col", default="split", help="split column (default: split; missing = one split)"
    )
    columns.add_argument("--text-col", help="text column, shown as snippets")
    columns.add_argument("--image-col", help="image-path column, shown as thumbnails")
    columns.add_argument(
        "--ignore-cols", default="", metavar="A,B", help="columns that are not slice metadata"
    )
    run.add_argument(
        "--out", metavar="DIR", help="output folder (required, here or in the config file)"
    )
    run.add_argument(
        "--config",
        metavar="FILE",
        help="settings file (TOML): every option of this command, [columns] and [checks] "
        "(default: dataaudit.toml, else [tool.dataaudit] in pyproject.toml, in the current "
        "folder); flags override it",
    )
    run.add_argument(
        "--verdicts",
        metavar="LEDGER.parquet",
        help="reviewers' verdicts (dataaudit verdicts import): items reviewed ok leave "
        "relabel.csv, confirmed errors stay on top, pending items leave the queue",
    )
    run.add_argument(
        "--baseline",
        metavar="OLD_DIR",
        help="output folder of an earlier run: the report shows what changed since, "
        "comparison.json is written, and --fail-on can use its keys (e.g. 'regression>0')",
    )
    _add_common_output(run)
    _add_engine(run)

    demo = commands.add_parser(
        "demo",
        help="build planted-problem data from scikit-learn's digits and audit it",
        description="Run the audit on bundled data with "
        "planted problems (flips, duplicates, a bad slice, OOD items).",
    )
    demo.add_argument(
        "--out",
        default="dataaudit-demo",
        metavar="DIR",
        help="output folder (default: dataaudit-demo)",
    )
    _add_common_output(demo)
    demo.set_defaults(embedding_map_method="tsne")  # the demo's picture shows the classes

    compare = commands.add_parser(
        "compare",
        help="what changed between two saved runs",
        description="Compare two earlier runs (their --out folders), matching items by id: "
        "error rates per split, class and slice with a paired test, label errors fixed / new, "
        "duplicates and leakage, the label-next queue, items added or removed. Writes the newer "
        "run's report with a 'what changed' section, comparison.json and comparison CSVs.",
    )
    compare.add_argument("old_dir", metavar="OLD_DIR", help="output folder of the baseline run")
    compare.add_argument("new_dir", metavar="NEW_DIR", help="output folder of the newer run")
    compare.add_argument("--out", required=True, metavar="DIR", help="output folder")
    compare.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty output folder, replacing dataaudit's files there",
    )
    compare.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="COND",
        help="exit 1 when a condition holds, e.g. 'regression>0' or 'leakage_appeared>0' "
        "(keys: the comparison's summary in comparison.json and the newer run's metrics)",
    )
    quiet = compare.add_mutually_exclusive_group()
    quiet.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    quiet.add_argument("-v", "--verbose", action="store_true", help="print every step")

    export = commands.add_parser(
        "export", help="hand a run's ranked list to an annotation tool"
    ).add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    studio = export.add_parser(
        "label-studio",
        help="Label Studio tasks (JSON) and a matching labeling config (XML)",
        description="One Label Studio task per row of relabel.csv or label_next.csv: the item "
        "(image or text), its id and the audit's context, and the suggested (relabel) or "
        "predicted (label next) label as a pre-annotation with its score. The labeling config "
        "is written beside the tasks as <name>.config.xml.",
    )
    studio.add_argument("run_dir", metavar="RUN_DIR", help="output folder of a run")
    studio.add_argument("--out", required=True, metavar="TASKS.json", help="tasks file to write")
    studio.add_argument("--list", choices=("relabel", "label_next"), default="relabel")
    studio.add_argument(
        "--media-root",
        metavar="PREFIX",
        help="URL prefix for images (e.g. /data/local-files/?d= or s3://bucket/); the path "
        "below the table's folder is appended (default: the image paths as they are)",
    )
    studio.add_argument(
        "--ledger",
        metavar="LEDGER.parquet",
        help="record the exported items as pending in this ledger, so the next run's queue "
        "does not send them again",
    )
    studio.add_argument("--force", action="store_true", help="replace an existing tasks file")

    verdicts = commands.add_parser(
        "verdicts", help="bring reviewers' verdicts back into the ledger"
    ).add_subparsers(dest="verdicts_action", metavar="ACTION", required=True)
    importing = verdicts.add_parser(
        "import",
        help="append verdicts to the ledger (the latest verdict per id wins; history stays)",
        description="Read verdicts on a run's lists (relabel.csv / label_next.csv with the "
        "verdict column filled in: error, ok, unsure or a class name, and an optional "
        "corrected_label; or a Label Studio JSON export) and append them to the ledger.",
    )
    importing.add_argument("run_dir", metavar="RUN_DIR", help="output folder of the run")
    importing.add_argument(
        "--from",
        dest="source",
        nargs=2,
        required=True,
        metavar=("KIND", "FILE"),
        help="csv FILE or label-studio EXPORT.json",
    )
    importing.add_argument("--ledger", required=True, metavar="LEDGER.parquet")
    importing.add_argument(
        "--list",
        choices=("relabel", "label_next"),
        help="which list a CSV holds (default: told by its columns)",
    )
    for sub in (studio, importing):
        quiet = sub.add_mutually_exclusive_group()
        quiet.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
        quiet.add_argument("-v", "--verbose", action="store_true", help="print every step")

    history = commands.add_parser(
        "history",
        help="many saved runs in one page: metrics over time, learning curve",
        description="Read the output folders of earlier runs (folders or globs, ordered by when "
        "each run started) and write history.html (headline metrics with intervals, per-class "
        "error rates, a learning curve with what the next labels would buy, label errors that "
        "persisted), history.csv (run, started_at, metric, value, ci_low, ci_high) and "
        "history_label_errors.csv.",
    )
    history.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="output folders of runs")
    history.add_argument("--out", required=True, metavar="DIR", help="output folder")
    history.add_argument(
        "--next-labels",
        type=int,
        metavar="N",
        help="labels to project the learning curve over (default: the median added per run)",
    )
    history.add_argument(
        "--force", action="store_true", help="replace the history files of an earlier call"
    )
    quiet = history.add_mutually_exclusive_group()
    quiet.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    quiet.add_argument("-v", "--verbose", action="store_true", help="print every step")
    return parser


def _config_options(args: argparse.Namespace) -> dict:
    options = {"html_max_rows": args.html_max_rows, "seed": args.seed}
    # Analyses add flags whose dest is an AuditConfig field; pass through whichever were given.
    from dataclasses import fields

    from dataaudit.config import AuditConfig

    reserved = {"columns", "classes", "html_max_rows", "seed"}
    for f in fields(AuditConfig):
        if f.name not in reserved and getattr(args, f.name, None) is not None:
            options[f.name] = getattr(args, f.name)
    return options


REQUIRED_RUN_OPTIONS = ("table", "probs", "out")


def parse_args(argv: list[str] | None):
    """argv -> (parser, args, settings): a config file's options become the `run` parser's
    defaults, so flags on the command line win, then the file, then the built-in defaults."""
    from dataaudit.configfile import RunSettings, find_config_file, read_settings

    parser = build_parser()
    args = parser.parse_args(argv)
    settings = RunSettings()
    if args.command == "run":
        run_parser = _subparser(parser, "run")
        settings = read_settings(find_config_file(args.config, Path.cwd()), run_parser)
        if settings.options:
            run_parser.set_defaults(**settings.options)
            args = parser.parse_args(argv)
        missing = [name for name in REQUIRED_RUN_OPTIONS if getattr(args, name) is None]
        if missing:
            flags = ", ".join(f"--{name}" for name in missing)
            raise UsageError(
                f"run: {flags} required (give the flag, or set it in dataaudit.toml / --config)"
            )
    return parser, args, settings


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


def main(argv: list[str] | None = None) -> int:
    from dataaudit.configfile import ConfigFileError

    try:
        parser, args, settings = parse_args(argv)
    except (ConfigFileError, UsageError) as exc:
        print(f"dataaudit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    verbosity = 0 if args.quiet else 2 if args.verbose else 1
    try:
        with warnings.catch_warnings():  # restores the filters and showwarning afterwards
            warnings.showwarning = _show_warning
            return _command(args, verbosity, settings)
    except KeyboardInterrupt:
        print(
            "dataaudit: interrupted; files already in the output folder were left as they were.",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # a bug of ours: a named message, the traceback only with -v
        if verbosity == 2:
            traceback.print_exc()
        print(
            f"dataaudit: internal error ({type(exc).__name__}: {exc}). Files already in the "
            "output folder were left as they were. This is a bug in dataaudit: please report it "
            "with the command line and the output of the same command with -v.",
            file=sys.stderr,
        )
        return EXIT_FAIL_ON


# Control characters (a file or column name may hold an ANSI escape) are shown, never sent raw.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if chr(c) not in "\n"}


def terminal_safe(text: str) -> str:
    return text.translate(_CONTROL)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A Python warning the run did not catch as a coded AuditWarning: one coded line, no
    source line, never a raw warning on the terminal."""
    from dataaudit.problems import audit_warning_from_python

    caught = warnings.WarningMessage(message, category, filename, lineno)
    text = f"dataaudit: warning: {audit_warning_from_python(caught, 'dataaudit')}"
    print(terminal_safe(text), file=sys.stderr)


def _command(args: argparse.Namespace, verbosity: int, settings) -> int:
    if args.command == "compare":
        return _compare_command(args, verbosity)
    if args.command == "history":
        return _history_command(args, verbosity)
    if args.command == "export":
        return _export_command(args, verbosity)
    if args.command == "verdicts":
        return _verdicts_command(args, verbosity)
    return _run_command(args, verbosity, settings)


def _run_command(args: argparse.Namespace, verbosity: int, settings=None) -> int:
    from dataaudit.fail_on import FailOnError, parse_conditions
    from dataaudit.files import OutputError
    from dataaudit.outputs import open_output_folder, planned_outputs
    from dataaudit.problems import InputError

    try:
        conditions = parse_conditions(args.fail_on)
        engine_options = _engine_options(args)
        baseline = _load_report(getattr(args, "baseline", None), "--baseline")
        checks = settings.checks if settings else ()
        problems = _option_problems(args, conditions, checks, comparison=baseline is not None)
        if problems:
            raise InputError(problems)
        planned = planned_outputs(comparison=baseline is not None, demo=args.command == "demo")
        folder = open_output_folder(args.out, args.force, planned)
    except (FailOnError, OutputError, UsageError) as exc:
        print(f"dataaudit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InputError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_USAGE
    with folder:  # holds the folder's lock until the outputs are written
        return _audit_into(folder, args, conditions, baseline, verbosity, settings, engine_options)


def _option_problems(args: argparse.Namespace, conditions, checks, comparison: bool) -> list:
    """Every problem with the options, found before any data is read (dataaudit.options)."""
    from dataaudit.options import config_problems, fail_on_problems, strategy_problems
    from dataaudit.pipeline import make_config

    classes = args.classes if args.command == "run" else None
    config = make_config(classes=classes, **_config_options(args))
    problems = config_problems(config) + fail_on_problems(conditions, comparison, checks)
    if args.command == "run":
        problems += strategy_problems(config, args.probs, args.embeddings)
    return problems


def _audit_into(
    folder,
    args: argparse.Namespace,
    conditions,
    baseline,
    verbosity: int,
    settings=None,
    engine_options=None,
) -> int:
    from dataaudit.context import Progress
    from dataaudit.files import OutputError
    from dataaudit.pipeline import audit
    from dataaudit.problems import InputError

    def say(message: str) -> None:
        if verbosity:
            print(terminal_safe(message), file=sys.stderr)

    out = folder.path
    for note in folder.notes:
        say(f"dataaudit: {note}")
    start = time.perf_counter()
    options = _config_options(args)
    try:
        if args.command == "demo":
            from dataaudit.demo import DEMO_FILES, write_demo_inputs

            say("Building the demo data from scikit-learn's digits (planted problems) …")
            paths = write_demo_inputs(out / "inputs", seed=args.seed)
            folder.adopt(out / "inputs" / name for name in DEMO_FILES)
            report = audit(
                paths["table"], paths["probs"], paths["embeddings"], verbosity=verbosity, **options
            )
        else:
            with _engine_session(args, out, engine_options or {"engine": "inprocess"}) as engine:
                report = audit(
                    args.table,
                    args.probs,
                    args.embeddings,
                    verbosity=verbosity,
                    id_col=args.id_col,
                    label_col=args.label_col,
                    split_col=args.split_col,
                    text_col=args.text_col,
                    image_col=args.image_col,
                    classes=args.classes,
                    verdicts=args.verdicts,
                    **options,
                    **engine,
                    ignore_cols=tuple(c.strip() for c in args.ignore_cols.split(",") if c.strip()),
                )
    except InputError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_USAGE

    for warning in report.all_warnings():
        say(f"dataaudit: warning: {warning}")
    if baseline is not None:
        report = _with_comparison(baseline, report, args.baseline)
        say(_describe_comparison(report.comparison))
    if settings is not None and settings.path is not None:
        report.run["config_file"] = str(settings.path.resolve())
        say(f"Settings read from {settings.path}.")
    check_problem = _evaluate_checks(report, (settings.checks if settings else ()), conditions)
    try:
        with Progress(verbosity).step("write the report and exports"):
            written = folder.write(report)
    except OutputError as exc:
        print(f"dataaudit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    written += _place_parts(out)
    say(f"Wrote {len(written)} outputs to {out}/ in {time.perf_counter() - start:.1f} s:")
    for path in written:
        say(f"  {path}")
    if report.failed:
        for name, why in report.failed.items():
            print(f"dataaudit: analysis {name!r} failed: {why.splitlines()[0]}", file=sys.stderr)
        return EXIT_FAIL_ON
    return _exit_for_checks(report, check_problem)


def _place_parts(out: Path) -> list[Path]:
    """The Dask workers' per-item Parquet datasets, moved from their staging folder into audit/."""
    from dataaudit.engine import PARTS_PREFIX

    staged = sorted(out.glob(f"{PARTS_PREFIX}*"))
    if not staged:
        return []
    from dataaudit.engine.dask_engine import place_parts

    return [moved for folder in staged for moved in place_parts(folder, out)]


def _load_report(folder: str | None, flag: str):
    """The report saved in an earlier run's output folder (None when no folder was given)."""
    if folder is None:
        return None
    from dataaudit.report import AuditReport, ReportLoadError

    try:
        return AuditReport.load(folder)
    except ReportLoadError as exc:
        raise UsageError(f"{flag}: {exc}") from exc


def _with_comparison(baseline, report, baseline_path: str):
    import dataclasses

    from dataaudit.compare import compare

    diff = compare(baseline, report, baseline_path=str(Path(baseline_path).resolve()))
    return dataclasses.replace(report, comparison=diff)


def _describe_comparison(diff) -> str:
    s = diff.summary
    text = (
        f"Compared with the baseline: {s['regression']} regression(s), {s['improvement']} "
        f"improvement(s); {s['items_only_new']:,} items added, {s['items_only_old']:,} removed"
    )
    if "label_errors_fixed" in s:
        text += f"; label errors {s['label_errors_fixed']:,} fixed, {s['label_errors_new']:,} new"
    return text + "."


def _compare_command(args: argparse.Namespace, verbosity: int) -> int:
    from dataaudit.fail_on import FailOnError, parse_conditions
    from dataaudit.files import OutputError
    from dataaudit.options import fail_on_problems
    from dataaudit.outputs import open_output_folder, planned_outputs
    from dataaudit.problems import InputError

    try:
        conditions = parse_conditions(args.fail_on)
        problems = fail_on_problems(conditions, comparison=True)
        if problems:
            print(InputError(problems).render(), file=sys.stderr)
            return EXIT_USAGE
        old = _load_report(args.old_dir, "OLD_DIR")
        new = _load_report(args.new_dir, "NEW_DIR")
        folder = open_output_folder(args.out, args.force, planned_outputs(comparison=True))
    except (FailOnError, OutputError, UsageError) as exc:
        print(f"dataaudit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with folder:
        if verbosity:
            for note in folder.notes:
                print(terminal_safe(f"dataaudit: {note}"), file=sys.stderr)
        report = _with_comparison(old, new, args.old_dir)
        check_problem = _evaluate_checks(report, (), conditions)
        try:
            written = folder.write(report)
        except OutputError as exc:
            print(f"dataaudit: {exc}", file=sys.stderr)
            return EXIT_USAGE
    out = folder.path
    if verbosity:
        print(_describe_comparison(report.comparison), file=sys.stderr)
        print(f"Wrote {len(written)} outputs to {out}/:", file=sys.stderr)
        for path in written:
            print(f"  {path}", file=sys.stderr)
    return _exit_for_checks(report, check_problem)


def _export_command(args: argparse.Namespace, verbosity: int) -> int:
    from dataaudit.render.label_studio import write_label_studio

    out = Path(args.out)
    try:
        report = _load_report(args.run_dir, "RUN_DIR")
        if out.exists() and not args.force:
            raise UsageError(f"{out} exists; pass --force to replace it, or choose another --out.")
        if out.is_dir() or not out.parent.is_dir():
            raise UsageError(f"--out {out}: give a file path in an existing folder.")
        tasks_path, config_path, tasks = write_label_studio(report, out, args.list, args.media_root)
    except (UsageError, ValueError, OSError) as exc:
        print(f"dataaudit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.ledger:
        from dataaudit.verdicts import append, normalise, run_lists

        lists = run_lists(report, args.run_dir)
        ids = [t["data"]["dataaudit_id"] for t in tasks]
        sent = _unanswered(ids)
        append(args.ledger, normalise(sent, lists, args.list, str(tasks_path), "label-studio"))
    if verbosity:
        print(
            f"Wrote {len(tasks):,} tasks to {tasks_path} and the labeling config to {config_path}.",
            file=sys.stderr,
        )
    return EXIT_OK


def _unanswered(ids: list[str]):
    """Rows sent out with no verdict yet, as verdict import reads them."""
    import pandas as pd

    blank = [""] * len(ids)
    return pd.DataFrame(
        {
            "id": ids,
            "verdict": blank,
            "corrected_label": blank,
            "reviewer": blank,
            "reviewed_at": blank,
        }
    )


def _verdicts_command(args: argparse.Namespace, verbosity: int) -> int:
    from dataaudit.verdicts import (
        VerdictError,
        append,
        describe,
        from_csv,
        from_label_studio,
        run_lists,
    )

    kind, path = args.source
    try:
        if kind not in ("csv", "label-studio"):
            raise UsageError(f"--from {kind}: expected csv or label-studio")
        if not Path(path).is_file():
            raise UsageError(f"--from {kind} {path}: no such file")
        report = _load_report(args.run_dir, "RUN_DIR")
        lists = run_lists(report, args.run_dir)
        rows = from_csv(path, lists, args.list) if kind == "csv" else from_label_studio(path, lists)
        ledger = append(args.ledger, rows)
    except UsageError as exc:
        print(f"dataaudit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VerdictError as exc:
        print(f"dataaudit: cannot import the verdicts:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    if verbosity:
        print(
            f"Appended {len(rows):,} verdicts ({describe(rows)}) to {args.ledger} "
            f"({len(ledger):,} rows in all).",
            file=sys.stderr,
        )
    return EXIT_OK


HISTORY_FILES = ("history.html", "history.csv", "history_label_errors.csv")


def _history_command(args: argparse.Namespace, verbosity: int) -> int:
    from dataaudit.files import OutputError, check_writable_dir
    from dataaudit.history import HistoryError, build_history, load_runs
    from dataaudit.render.history_html import write_history

    try:
        if args.next_labels is not None and args.next_labels <= 0:
            raise UsageError(f"--next-labels must be a positive number, got {args.next_labels}")
        runs = load_runs(args.run_dirs)
        out = check_writable_dir(args.out)
        existing = [name for name in HISTORY_FILES if (out / name).exists()]
        if existing and not args.force:
            raise UsageError(
                f"{out} already holds {', '.join(existing)}; pass --force to replace them "
                "(nothing else in the folder is touched), or choose another --out."
            )
    except (HistoryError, OutputError, UsageError) as exc:
        print(f"dataaudit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    history = build_history(runs, args.next_labels)
    try:
        written = write_history(history, out)
    except OSError as exc:  # disk full, permissions: named, exit 2 like every output problem
        from dataaudit.files import describe_os_error

        print(
            f"dataaudit: cannot write the history into {out} ({describe_os_error(exc)}).",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if verbosity:
        print(f"Read {len(runs)} runs; {history.curve.message}", file=sys.stderr)
        for path in written:
            print(f"  {path}", file=sys.stderr)
    return EXIT_OK


def _evaluate_checks(report, specs, conditions) -> str | None:
    """Set report.checks from the config file's checks and --fail-on; the problem, if one cannot
    be evaluated (the outputs are still written, without checks)."""
    from dataaudit.checks import CheckError, evaluate, fail_on_checks

    try:
        report.checks = evaluate([*specs, *fail_on_checks(conditions)], report.metrics())
    except CheckError as exc:
        report.checks = []
        return str(exc)
    return None


def _exit_for_checks(report, problem: str | None) -> int:
    """EXIT_FAIL_ON when a check fails, EXIT_USAGE when one could not be evaluated."""
    from dataaudit.checks import FAIL, WARN

    if problem is not None:
        print(f"dataaudit: {problem}", file=sys.stderr)
        return EXIT_USAGE
    for check in report.checks:
        if check.status in (FAIL, WARN):
            print(f"dataaudit: check {check.status}: {check.message}", file=sys.stderr)
    return EXIT_FAIL_ON if any(c.status == FAIL for c in report.checks) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

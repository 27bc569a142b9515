"""The `assistant` command: a thin edge over plain functions that tests call too.

Each command parses its options, calls the functions below this layer (import_file, label,
build_dataset, train_student, run_eval, build_report, the registry, Store reads) and prints their
result. Domain errors (AssistantError) become one clear line on stderr and exit code 1. Commands import
what they use inside themselves, so `assistant users` or `--help` starts without loading torch.
Multi-GPU training runs it as `torchrun ... -m assistant.shells.cli train`: every command is registered
before the `__main__` block at the end.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from functools import wraps

import typer

from assistant.errors import AssistantError
from distill.formats import ALIASES, FORMATS

app = typer.Typer(help="Customer-support assistant: a distilled student model, routed to a teacher when needed.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def friendly(fn):
    """Turn our own errors, and a missing optional dependency, into one line and a non-zero exit instead of a
    traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AssistantError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1)
        except ModuleNotFoundError as exc:
            from assistant.settings import missing_extra

            hint = missing_extra(exc)
            if hint is None:
                raise
            typer.secho(f"error: {hint}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1)

    return wrapper


def _notice(settings) -> None:
    """Say, once, when teacher variables were ignored (a key exported for another tool)."""
    if settings.teacher_notice:
        typer.secho(f"note: {settings.teacher_notice}", err=True, fg=typer.colors.YELLOW)


def _settings(**overrides):
    from assistant.settings import Settings

    settings = Settings.from_env()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(settings, **overrides) if overrides else settings


@app.command()
@friendly
def serve(
    host: str = typer.Option(None, help="Bind address (default: ASSISTANT_HOST, GRADIO_SERVER_NAME or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default: ASSISTANT_PORT, GRADIO_SERVER_PORT or 7860)."),
    open_browser: bool = typer.Option(False, "--open", help="Open the chat in a browser once it is up."),
):
    """Start the public chat and the signed-in console."""
    from assistant.shells.web import serve as serve_web
    from distill.sample import open_services

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = _settings(host=host, port=port)
    typer.echo(f"state directory: {settings.home}")
    _notice(settings)
    typer.echo("loading models and the knowledge base (first start embeds the sample company, ~30 s)...")
    services = open_services(settings)
    typer.echo(f"student: {services.student.description}")
    typer.echo(f"teacher: {services.teacher.description}")
    serve_web(services, open_browser=open_browser)


@app.command()
@friendly
def ask(
    message: str = typer.Argument(..., help="A customer message."),
    mode: str = typer.Option("Auto", help="Student, Teacher or Auto."),
):
    """Answer one message from the command line (logged like a chat exchange)."""
    from assistant.chat import respond
    from distill.sample import open_services

    services = open_services(_settings())
    for event in respond(services, [{"role": "user", "content": message}], mode, session_id="cli"):
        if event.kind == "delta":
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif event.kind == "reset":
            sys.stdout.write("\n[teacher failed; the student answers]\n")
        elif event.kind == "done":
            ex = event.exchange
            typer.echo(f"\n\n[{ex['routed_to']}: {ex['model_name']} | {ex['route_reason']} | "
                       f"{ex['latency_ms']:.0f} ms | {ex['output_tokens']} tokens]", err=True)


def _parse_columns(spec: str | None) -> dict | None:
    if not spec:
        return None
    from assistant.errors import InputError

    try:
        return dict(part.split("=", 1) for part in spec.split(","))
    except ValueError:
        raise InputError("--csv-columns takes role=column pairs, e.g. conversation=ticket,role=who,text=body") from None


@app.command("import")
@friendly
def import_cmd(
    path: str = typer.Argument(..., help="Export file (or saved Hugging Face dataset folder)."),
    format: str = typer.Option(None, "--format", help=f"{', '.join([*FORMATS, *ALIASES])} (default: detected)."),
    strict: bool = typer.Option(False, help="Import nothing if any record is bad."),
    scrub: bool = typer.Option(True, "--scrub/--no-scrub", help="Replace PII with typed placeholders before storing (on by default)."),
    csv_columns: str = typer.Option(None, help="CSV column names, e.g. conversation=ticket_id,role=sender,text=body,timestamp=sent."),
    near_duplicate_threshold: float = typer.Option(0.8, help="MinHash similarity at which a conversation is flagged as a near-duplicate."),
    encoding: str = typer.Option(None, help="Text encoding of the file, e.g. cp1252 (default: detected; the summary says which was used)."),
):
    """Import logged support conversations (PII scrubbed, duplicates skipped, bad records listed)."""
    from tqdm import tqdm

    from assistant.store import open_store
    from distill.importer import import_file

    store = open_store(_settings())
    with tqdm(desc="records", unit=" rec", disable=None) as bar:
        summary = import_file(store, path, format, scrub=scrub, strict=strict, csv_columns=_parse_columns(csv_columns),
                              near_duplicate_threshold=near_duplicate_threshold, encoding=encoding,
                              progress=lambda n: bar.update(n - bar.n))
    typer.echo("\n".join(summary.lines()))


kb_app = typer.Typer(help="The help-center knowledge base the teacher is grounded in.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")


@kb_app.command("import")
@friendly
def kb_import(path: str = typer.Argument(..., help="Folder of .md/.txt/.html articles, or a Zendesk Guide / Intercom JSON export.")):
    """Import articles as a new KB version (chunked and embedded)."""
    from assistant.retrieval import embedder_for
    from assistant.store import open_store
    from distill.kb import import_kb

    settings = _settings()
    result = import_kb(open_store(settings), path, embedder_for(settings))
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if result.unchanged:
        typer.echo(f"unchanged: the latest KB version {result.version} already has exactly these {result.articles} articles")
    else:
        typer.echo(f"KB version {result.version}: {result.articles} articles, {result.chunks} chunks embedded")


@kb_app.command("search")
@friendly
def kb_search(query: str = typer.Argument(..., help="A customer question."),
              k: int = typer.Option(3, help="Passages and cases to show.")):
    """Show exactly the grounding the teacher would be given for this question."""
    from assistant.models import grounding_block
    from assistant.retrieval import build_retriever, embedder_for
    from assistant.store import open_store

    settings = _settings()
    store = open_store(settings)
    if store.kb_version() is None:
        typer.echo("the KB is empty: run `assistant kb import PATH` first", err=True)
    retriever = build_retriever(store, embedder_for(settings))
    grounding = retriever.ground([{"role": "user", "content": query}], k_kb=k, k_cases=k)
    for hit in grounding["kb"]:
        typer.echo(f"[kb {hit.score:.2f}] {hit.item['title']}")
    for hit in grounding["cases"]:
        typer.echo(f"[case {hit.score:.2f}] conversation {hit.item['conversation_id']}")
    typer.echo("\n" + grounding_block(grounding))


@app.command("label")
@friendly
def label_cmd(
    source: str = typer.Option("auto", help="teacher, logged or both (auto: teacher when one is configured, else the agents' logged replies)."),
    concurrency: int = typer.Option(4, help="Teacher requests in flight at once."),
    limit: int = typer.Option(None, help="Label at most this many conversations."),
    final_turn_only: bool = typer.Option(False, help="Label only the last agent turn of each conversation."),
    resolved_only: bool = typer.Option(False, help="Only conversations marked resolved."),
    min_csat: float = typer.Option(None, help="Only conversations with at least this CSAT (1-5)."),
    budget: float = typer.Option(None, help="Stop cleanly once the teacher has cost this many US$ (default: ASSISTANT_LABEL_BUDGET, 2; 0 = no job budget, the daily one still applies)."),
    rpm: int = typer.Option(None, help="Requests-per-minute limit."),
    tpm: int = typer.Option(None, help="Tokens-per-minute limit."),
    max_tokens: int = typer.Option(300, help="Longest teacher reply."),
    batch: bool = typer.Option(False, help="Use the OpenAI Batch API (half price, up to 24 h; run again to resume)."),
    seed: int = typer.Option(13, help="Seed of the train/validation/test split."),
    allow_failed: bool = typer.Option(False, "--allow-failed", help="Build the dataset even if the job left turns unlabelled (done with N failed turns, or stopped at a budget)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before a paid teacher is called (asked only on a terminal)."),
):
    """Label conversations with the teacher (or the agents' replies) and build a versioned dataset.

    Before anything is paid it says what the job will call and about what it costs, under which budget;
    on a terminal it then asks once (skip with --yes)."""
    from assistant.store import open_store
    from distill.dataset import build_dataset
    from distill.label import LabelOptions, label, label_plan

    settings = _settings()
    _notice(settings)
    store = open_store(settings)
    options = LabelOptions(source=source, concurrency=concurrency, limit=limit, final_turn_only=final_turn_only,
                           resolved_only=resolved_only, min_csat=min_csat, budget=budget, rpm=rpm, tpm=tpm,
                           max_tokens=max_tokens, batch=batch)
    plan = label_plan(store, settings, options)
    typer.echo(plan.line())
    if plan.paid and not yes and sys.stdin.isatty() and not typer.confirm("call the teacher?", default=True):
        typer.echo("nothing was called")
        raise typer.Exit(1)
    bar = _Progress("labelling", " turns", every=0)  # the summary below says it all in a log file
    result = label(store, settings, options, progress=lambda p: bar(
        p.done, p.total, f"{p.cached} reused, {p.input_tokens + p.output_tokens:,} tokens, ${p.cost:.4f}"))
    bar.close()
    typer.echo(f"label job {result.job_id}: {result.status}; labels by {result.teacher} (source: {result.source})")
    typer.echo("  " + result.progress.line())
    typer.echo(f"  accepted {result.progress.accepted}, rejected {result.progress.rejected} "
               f"(review with: assistant labels rejected --job {result.job_id})")
    if result.status.startswith("done") or (allow_failed and result.status.startswith("stopped")):
        ds = build_dataset(store, settings, result.job_id, seed=seed, allow_failed=allow_failed)
        counts = ", ".join(f"{s} {c['rows']}" for s, c in ds.manifest["counts"].items())
        typer.echo(f"dataset {ds.version} ({'new' if ds.created else 'unchanged'}): {counts} -> {ds.path}")


labels_app = typer.Typer(help="Review labels.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")


@labels_app.command("rejected")
@friendly
def labels_rejected(job: int = typer.Option(None, help="Label job id (default: the latest)."),
                    limit: int = typer.Option(20, help="How many to show.")):
    """Show rejected labels with the reason, for review."""
    from assistant.store import open_store

    store = open_store(_settings())
    job = job or store.latest_label_job()
    reasons = store.rejection_reasons(job)
    typer.echo(f"label job {job}: " + (", ".join(f"{reason} ({n})" for reason, n in reasons) or "nothing rejected"))
    for r in store.rejected_labels(job, limit):
        typer.echo(f"- conversation {r['conversation_id']} turn {r['message_index']}: {r['reason']}\n    {r['reply'][:200]!r}")


datasets_app = typer.Typer(help="Dataset versions.", invoke_without_command=True)
app.add_typer(datasets_app, name="datasets")


@datasets_app.callback()
@friendly
def datasets_cmd(ctx: typer.Context):
    """List dataset versions."""
    if ctx.invoked_subcommand:
        return
    from assistant.store import open_store

    for r in open_store(_settings()).datasets():
        typer.echo(f"{r['version']}  train {r['n_train']}  validation {r['n_validation']}  test {r['n_test']}  "
                   f"teacher: {r['teacher']}  {r['created_at']}  {r['path']}")


@datasets_app.command("export")
@friendly
def datasets_export(version: str = typer.Argument(None, help="Dataset version (default: the newest)."),
                    plain: bool = typer.Option(False, "--plain", help="Lay turns out for a plain student (no grounding).")):
    """Per-turn rows as the student is trained on them, for TRL (prompt-completion) and OpenAI fine-tuning.

    Retrieval-augmented by default: each customer message carries the grounding the student reads, retrieved
    as training retrieves it (never from the validation or test conversations)."""
    from assistant.grounding import student_layout
    from assistant.store import open_store
    from distill.dataset import export_turns, load_dataset
    from distill.pipeline import grounding_for_training, held_out_retriever

    settings = _settings()
    store = open_store(settings)
    dd, manifest = load_dataset(store, version)
    if plain:
        layout = lambda messages, conversation_id: student_layout(messages)  # noqa: E731
    else:
        layout = grounding_for_training(held_out_retriever(store, settings, dd), [dd[s] for s in dd])
    folder = settings.home / "datasets" / manifest["version"]
    for path in export_turns(dd, folder, layout, grounded=not plain):
        typer.echo(str(path))


class _Progress:
    """A tqdm bar on a terminal; in a log file, a plain line every `every` updates (and the last one) instead."""

    def __init__(self, desc: str, unit: str, every: int = 1):
        from tqdm import tqdm

        self.bar = tqdm(desc=desc, unit=unit, disable=None)
        self.desc, self.every = desc, every

    def __call__(self, done: int, total: int, text: str = "") -> None:
        if self.bar.disable:
            if self.every and (done % self.every == 0 or done == total):
                typer.echo(f"{self.desc}: {done}/{total} {text}".rstrip())
            return
        self.bar.total, self.bar.n = total, done
        self.bar.set_postfix_str(text, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _train_help(name: str) -> str:
    from distill.train import config_help

    return config_help()[name]


def _train_default(name: str):
    """CLI defaults come from TrainConfig itself, so the two never drift apart."""
    from distill.train import TrainConfig

    return getattr(TrainConfig(), name)


@app.command("train")
@friendly
def train_cmd(
    dataset: str = typer.Option(None, help="Dataset version (default: the newest)."),
    epochs: int = typer.Option(_train_default("epochs"), help=_train_help("epochs")),
    learning_rate: float = typer.Option(_train_default("learning_rate"), help=_train_help("learning_rate")),
    batch_tokens: int = typer.Option(_train_default("batch_tokens"), help=_train_help("batch_tokens")),
    grad_accum: int = typer.Option(_train_default("grad_accum"), help=_train_help("grad_accum")),
    lora_r: int = typer.Option(_train_default("lora_r"), help=_train_help("lora_r")),
    lora_alpha: int = typer.Option(_train_default("lora_alpha"), help=_train_help("lora_alpha")),
    lora_dropout: float = typer.Option(_train_default("lora_dropout"), help=_train_help("lora_dropout")),
    max_length: int = typer.Option(_train_default("max_length"), help=_train_help("max_length")),
    memory_limit_mb: int = typer.Option(_train_default("memory_limit_mb"), help=_train_help("memory_limit_mb")),
    gradient_checkpointing: bool = typer.Option(_train_default("gradient_checkpointing"),
                                                "--gradient-checkpointing/--no-gradient-checkpointing",
                                                help=_train_help("gradient_checkpointing")),
    turns: str = typer.Option(_train_default("turns"), help=_train_help("turns")),
    early_stopping_patience: int = typer.Option(_train_default("early_stopping_patience"), help=_train_help("early_stopping_patience")),
    max_steps: int = typer.Option(_train_default("max_steps"), help=_train_help("max_steps")),
    seed: int = typer.Option(_train_default("seed"), help=_train_help("seed")),
    retrieval_augmented: bool = typer.Option(_train_default("retrieval_augmented"), "--retrieval-augmented/--plain",
                                             help=_train_help("retrieval_augmented")),
    load_in_4bit: bool = typer.Option(_train_default("load_in_4bit"), "--load-in-4bit", help=_train_help("load_in_4bit")),
    loss: str = typer.Option(_train_default("loss"), help=_train_help("loss")),
    export_type: str = typer.Option(None, help="GGUF type for serving: q8_0 (default, see README), f16 or q4_0; none registers the adapter only (non-GGUF bases)."),
    eval_limit: int = typer.Option(40, help="Validation turns in the promotion check."),
    promote: bool = typer.Option(True, "--promote/--no-promote", help="Compare with the serving student and promote if better."),
    force: bool = typer.Option(False, help="Promote even if the quick evaluation is not better."),
):
    """Fine-tune the student (LoRA) on a dataset, export it to GGUF, register it, and promote it if better."""
    from tqdm import tqdm

    from assistant.store import open_store
    from distill.pipeline import train_student
    from distill.train import TrainConfig

    settings = _settings()
    config = TrainConfig(epochs=epochs, learning_rate=learning_rate, batch_tokens=batch_tokens, grad_accum=grad_accum,
                         lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, max_length=max_length,
                         memory_limit_mb=memory_limit_mb, gradient_checkpointing=gradient_checkpointing,
                         turns=turns, early_stopping_patience=early_stopping_patience, max_steps=max_steps, seed=seed,
                         retrieval_augmented=retrieval_augmented, load_in_4bit=load_in_4bit, loss=loss)
    bar = _Progress("training", " steps")
    outcome = train_student(open_store(settings), settings, dataset_version=dataset, config=config, gguf_type=export_type,
                            promote=promote, force=force, eval_limit=eval_limit,
                            progress=lambda p: bar(p.step, p.total_steps, p.line()),
                            log=lambda line: tqdm.write(line))
    bar.close()
    if outcome is None:
        return  # a helper process of a multi-GPU run (torchrun / accelerate launch): the main process reports
    typer.echo(f"{outcome.version}: {'promoted, now serving' if outcome.promoted else 'registered, not serving'} "
               f"({outcome.gguf_path or 'adapter only'})")


models_app = typer.Typer(help="Student model versions.", invoke_without_command=True)
app.add_typer(models_app, name="models")


@models_app.callback()
@friendly
def models_list(ctx: typer.Context):
    """List student versions (the serving one is marked)."""
    if ctx.invoked_subcommand:
        return
    from assistant.store import open_store
    from assistant import students
    from distill import registry

    store = open_store(_settings())
    rows = students.versions(store)
    if not rows:
        typer.echo("no trained versions yet: the base student serves (assistant train)")
    for row in rows:
        typer.echo(registry.describe(row))
    if not students.serving(store):
        typer.echo("serving: the base student")


@models_app.command("rollback")
@friendly
def models_rollback():
    """Serve the previously promoted version again (or the base)."""
    from assistant.store import open_store
    from distill import registry

    typer.echo(f"now serving: {registry.rollback(open_store(_settings()))}")


@models_app.command("export")
@friendly
def models_export(version: str = typer.Argument(..., help="A registered version (assistant models)."),
                  ollama: bool = typer.Option(False, "--ollama", help="Write an Ollama Modelfile beside the version's GGUF.")):
    """Make a version's GGUF usable by other tools: --ollama writes a Modelfile for `ollama create`."""
    from assistant import students
    from assistant.errors import InputError
    from assistant.store import open_store
    from distill.modelfile import ollama_name, retrieval_warning, write_modelfile

    if not ollama:
        raise InputError("say which tool to export for: --ollama")
    settings = _settings()
    row = students.resolve(open_store(settings), version)
    if not row.get("gguf_path"):
        raise InputError(f"{version} has no GGUF (trained with --export-type none): nothing Ollama can load")
    augmented = students.retrieval_augmented(row)
    path = write_modelfile(row["gguf_path"], version=version, retrieval_augmented=augmented,
                           context=settings.student_context, max_new_tokens=settings.max_new_tokens)
    if augmented:
        typer.secho(f"warning: {retrieval_warning(version)}", err=True, fg=typer.colors.YELLOW)
    typer.echo(f"wrote {path}\nthen: cd {path.parent} && ollama create {ollama_name(version)} -f Modelfile")


@models_app.command("promote")
@friendly
def models_promote(version: str = typer.Argument(..., help="Version to serve.")):
    """Serve a registered version (no evaluation: your call)."""
    from assistant.store import open_store
    from distill import registry

    registry.promote(open_store(_settings()), version, "promoted by hand")
    typer.echo(f"now serving: {version}")


@app.command("eval")
@friendly
def eval_cmd(
    dataset: str = typer.Option(None, help="Dataset version (default: the newest); its test split is evaluated."),
    arms: str = typer.Option("teacher,base,student,routed,retrieval", help="Comma-separated arms."),
    student: str = typer.Option(None, help="Model version for the student arm (default: the serving one)."),
    judge: str = typer.Option(None, help="teacher (default when one is configured), none, or BASE_URL#MODEL."),
    limit: int = typer.Option(None, help="Evaluate at most this many turns."),
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Also measure memory and throughput per arm."),
    split: str = typer.Option("test", help="test (the held-out A/B), or validation: outcomes that `assistant router "
                                           "train` and `router calibrate` learn from."),
    router: str = typer.Option(None, help="Router of the routed arm (default: ASSISTANT_ROUTER)."),
):
    """Offline A/B on the held-out test split; stores the run and writes the report."""
    from assistant.store import open_store
    from eval.abtest import EvalConfig, run_eval
    from eval.report import build_report

    settings = _settings()
    store = open_store(settings)
    config = EvalConfig(dataset=dataset, arms=tuple(a.strip() for a in arms.split(",") if a.strip()), student=student,
                        judge=judge, limit=limit, split=split, router=router)
    bar = _Progress("evaluating", " replies", every=25)
    run_id = run_eval(store, settings, config, progress=lambda arm, done, total: bar(done, total, arm))
    bar.close()
    if measure:
        from eval.measure import measure_run

        typer.echo("measuring memory and throughput per arm...")
        measure_run(store, settings, run_id)
    html_path, md_path = build_report(store, settings, run_id)
    typer.echo(f"evaluation run {run_id} stored; report: {html_path}")


@app.command("report")
@friendly
def report_cmd(run: int = typer.Option(None, help="Evaluation run id (default: the latest)."),
               open_browser: bool = typer.Option(False, "--open", help="Open the HTML report in a browser.")):
    """Write the A/B report (HTML with embedded plots, and Markdown) from the stored evaluation."""
    from assistant.store import open_store
    from eval.report import build_report

    settings = _settings()
    html_path, md_path = build_report(open_store(settings), settings, run)
    typer.echo(f"{html_path}\n{md_path}")
    if open_browser:
        import webbrowser

        webbrowser.open(html_path.as_uri())


@app.command("routers")
@friendly
def routers_list():
    """The routers Auto can use, and the learned router's versions (the serving one is marked)."""
    from assistant.router import ROUTERS
    from assistant.store import open_store
    from eval.router_train import describe

    settings = _settings()
    store = open_store(settings)
    for name, text in ROUTERS.items():
        typer.echo(f"{'*' if name == settings.router else ' '} {name:11} {text}")
    rows = store.router_versions()
    typer.echo("\nlearned versions:" if rows else "\nno learned router trained yet (assistant router train)")
    for row in rows:
        typer.echo("  " + describe(row))


router_app = typer.Typer(help="Train and calibrate routers.", no_args_is_help=True)
app.add_typer(router_app, name="router")


@router_app.command("train")
@friendly
def router_train_cmd():
    """Train the learned router on validation-split evaluations and logged feedback, and serve it."""
    from assistant.store import open_store
    from eval.router_train import train_router

    result = train_router(open_store(_settings()))
    m, t = result["metrics"], result["trained_on"]
    weights = ", ".join(f"{f} {c:+.2f}" for f, c in zip(result["model"]["features"], result["model"]["coef"]))
    typer.echo(f"trained {result['version']} on {m['examples']} turns ({m['student_worse']} where the student did worse; "
               f"sources {t['sources']}); cross-validated AUC {m['cv_auc'][str(m['penalty'])]:.2f}\n"
               f"weights (standardised): {weights}\nnow serving it to ASSISTANT_ROUTER=learned; calibrate it: "
               "assistant router calibrate --router learned --teacher-share 0.2")


@router_app.command("calibrate")
@friendly
def router_calibrate_cmd(
    teacher_share: float = typer.Option(..., help="Target share of turns sent to the teacher, 0-1 (e.g. 0.2)."),
    router: str = typer.Option(None, help="Router to calibrate (default: ASSISTANT_ROUTER)."),
):
    """Set a router's threshold so it sends the target share of validation turns to the teacher."""
    from assistant.store import open_store
    from eval.router_train import calibrate

    settings = _settings()
    r = calibrate(open_store(settings), router or settings.router, teacher_share)
    typer.echo(f"{r['router']} ({r['version']}): threshold {r['threshold']:.4f} sends {r['achieved']:.1%} of {r['n']} "
               f"turns to the teacher (target {r['teacher_share']:.0%}); from {r['source']}. Auto uses it from now on.")


@app.command("settings")
@friendly
def show_settings():
    """Show the effective settings and the environment variables that set them."""
    settings = _settings()
    _notice(settings)
    for name, env, value, help_text in settings.describe():
        typer.echo(f"{name:20} {value}\n{'':20} {env}: {help_text}")


users_app = typer.Typer(help="Console users (sign-in for Import, Label, Retrain, Report, Models).", invoke_without_command=True)
app.add_typer(users_app, name="users")


@users_app.callback()
@friendly
def users_list(ctx: typer.Context):
    """List console users (names only; passwords are stored as scrypt hashes)."""
    if ctx.invoked_subcommand:
        return
    from assistant.users import read_users_file, users_path

    path = users_path(_settings())
    names = sorted(read_users_file(path))
    typer.echo("\n".join(names) if names else f"no console users in {path}: the console is served on loopback only")


@users_app.command("add")
@friendly
def users_add(
    name: str = typer.Argument(..., help="User name."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input (for scripts)."),
):
    """Add a console user, or change their password (asked twice, not echoed)."""
    from assistant.users import add_user, users_path

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    path = users_path(_settings())
    new = add_user(path, name, password)
    typer.echo(f"{'added' if new else 'changed the password of'} {name} in {path}; restart `assistant serve` to apply")


@users_app.command("remove")
@friendly
def users_remove(name: str = typer.Argument(..., help="User name.")):
    """Remove a console user."""
    from assistant.users import remove_user, users_path

    path = users_path(_settings())
    remove_user(path, name)
    typer.echo(f"removed {name} from {path}; restart `assistant serve` to apply")


bench_app = typer.Typer(help="Benchmarks that print measured figures (README's performance section).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("serve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                             "help_option_names": []})
def bench_serve(ctx: typer.Context):
    """Serving speed: raw llama.cpp vs the app's student path vs 1/4/8 chats at once (options: --help)."""
    from eval.bench_serve import main

    main(list(ctx.args))


if __name__ == "__main__":
    app()

"""The `fastlane` command: run containers as jobs and follow them, list tasks, jobs and executions,
print their output, stop and retry them, and reach the job browser through a signing proxy.
Reference: docs/cli.md."""
from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import click

from . import __version__, output
from .client import Api, path
from .config import AUTH_MODES, DEFAULT_URL, resolve
from .errors import INTERRUPTED, OK, USAGE, CliError, epilog
from .follow import Ending, Follower
from .progress import Progress

F = TypeVar("F", bound=Callable[..., Any])
EPILOG = epilog()
SERVICE_OPTIONS = ("url", "user", "password", "api_key", "aws_profile", "aws_region", "auth", "ws_url")


def _service_option_list() -> list[Callable[[Any], Any]]:
    return [
        click.option("--url", metavar="URL", help=f"The service's URL [env FASTLANE_URL; default {DEFAULT_URL}]."),
        click.option("--user", metavar="NAME", help="Basic auth user [env FASTLANE_USER]."),
        click.option("--password", metavar="SECRET", help="Basic auth password [env FASTLANE_PASSWORD]."),
        click.option("--api-key", metavar="KEY", help="API Gateway API key, sent as x-api-key [env FASTLANE_API_KEY]."),
        click.option("--aws-profile", metavar="NAME",
                     help="Sign with SigV4 using this AWS profile's credentials [env FASTLANE_AWS_PROFILE]."),
        click.option("--aws-region", metavar="REGION",
                     help="The API's region for SigV4, when its URL does not say [env FASTLANE_AWS_REGION]."),
        click.option("--auth", type=click.Choice(AUTH_MODES),
                     help="Force an auth mode (by default: from the credentials given; sigv4 for an "
                          "execute-api URL) [env FASTLANE_AUTH]."),
        click.option("--ws-url", metavar="URL", help="The live-log websocket, when the service's stream page does "
                                                     "not tell it [env FASTLANE_WS_URL]."),
    ]


def service_options(command: F) -> F:
    """The options that say where the service is and how to authenticate, on every command that
    calls it (and on `fastlane` itself, before the command); replaced by one `api` argument. Each
    falls back to its environment variable, then the config file (docs/cli.md#configuration)."""

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        before = click.get_current_context().find_root().obj or {}
        flags = {name: kwargs.pop(name) for name in SERVICE_OPTIONS}
        flags = {name: value if value is not None else before.get(name) for name, value in flags.items()}
        return command(Api(resolve(flags)), **kwargs)

    for option in reversed(_service_option_list()):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def group_service_options(group: F) -> F:
    for option in reversed(_service_option_list()):
        group = option(group)
    return group


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the service's JSON, for scripts.")(command)


class Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order they are declared, most used first


@click.group(cls=Group, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fastlane")
@group_service_options
@click.pass_context
def cli(ctx: click.Context, /, **flags: Any) -> None:
    """Run containers as jobs on fastlane and follow them.

    Where the service is and how to reach it: --url and the auth options (here or after the
    command), or FASTLANE_URL and friends, or ~/.config/fastlane/config.toml (docs/cli.md)."""
    ctx.obj = flags


# run ---------------------------------------------------------------------------------------------


def _pairs(values: tuple[str, ...], what: str, from_environment: bool = False) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not key:
            raise CliError(f"{what} '{value}' must be KEY=VALUE", USAGE)
        if not sep:
            if not from_environment:
                raise CliError(f"{what} '{value}' must be KEY=VALUE", USAGE)
            if key not in os.environ:
                raise CliError(f"{what} '{key}' has no value here: give KEY=VALUE, or set {key} in your environment", USAGE)
            item = os.environ[key]
        found[key] = item
    return found


def _epoch(value: str | None, option: str) -> float | None:
    """Epoch seconds, or an ISO 8601 date and time (local time when it names no zone)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise CliError(f"{option} '{value}' is neither epoch seconds nor a date and time like 2030-01-31T08:00:00+01:00",
                       USAGE) from None


def _metadata(values: tuple[str, ...]) -> dict[str, Any] | None:
    if not values:
        return None
    found: dict[str, Any] = {}
    for value in values:
        if value.lstrip().startswith("{"):
            found.update(_json_object(value, "--metadata", "a JSON object or KEY=VALUE"))
        else:
            found.update(_pairs((value,), "--metadata"))
    return found


def _json_object(value: str, option: str, what: str) -> dict[str, Any]:
    """An option's JSON object, or a usage error naming the option."""
    try:
        data = json.loads(value)
    except ValueError as error:
        raise CliError(f"{option} is not valid JSON: {error}", USAGE) from None
    if not isinstance(data, dict):
        raise CliError(f"{option} must be {what}", USAGE)
    return data


def _hooks(urls: dict[str, tuple[str, ...]]) -> dict[str, list[dict[str, str]]]:
    return {event: [{"url": url} for url in given] for event, given in urls.items() if given}


def build_payload(image: str, command: tuple[str, ...], env: tuple[str, ...], retries: int | None,
                  timeout: float | None, cron: str | None, timezone: str | None, start_in: str | None,
                  start_at: str | None, expiration: str | None, metadata: tuple[str, ...],
                  notify: dict[str, tuple[str, ...]], webhooks: dict[str, tuple[str, ...]], payload: str | None) -> dict[str, Any]:
    """The job's JSON body (API.md, "Job payload") from the options of `run`."""
    body: dict[str, Any] = {"image": image, "command": shlex.join(command)}
    if payload:
        body = {**_json_object(payload, "--payload", "a JSON object of payload keys"), **body}
    optional: dict[str, Any] = {
        "envs": _pairs(env, "-e", from_environment=True) or None,
        "retries": retries,
        "timeout": timeout,
        "cron": cron,
        "timezone": timezone,
        "startIn": start_in,
        "startAt": _epoch(start_at, "--start-at"),
        "expiration": _epoch(expiration, "--expiration"),
        "metadata": _metadata(metadata),
        "notify": {event: list(emails) for event, emails in notify.items() if emails} or None,
        "webhooks": _hooks(webhooks) or None,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


def _print_ids(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.emit_json(answer)
        return
    output.pairs([("task", answer.get("taskId")), ("job", answer.get("jobId")),
                  ("execution", answer.get("executionId") or "none yet (scheduled)"), ("url", answer.get("jobUrl"))])


def _follow(api: Api, task: str, job: str, execution: str | None, follow_retries: bool, quiet: bool,
            stop_on_interrupt: bool, start: str | None = None) -> int:
    """Follows the job (or one execution) to its end; the exit code, with the reason on stderr."""
    progress = Progress(quiet=quiet)
    follower = Follower(api, task, job, execution, follow_retries=follow_retries, progress=progress, start=start)
    try:
        ending: Ending = follower.follow()
    except KeyboardInterrupt:
        progress.clear()
        if stop_on_interrupt:
            api.post(path("tasks", task, "jobs", job, "stop"))
            click.echo(f"fastlane: interrupted; stopped job {job}", err=True)
        else:
            click.echo(f"fastlane: stopped following; the job goes on (`fastlane stop {task} {job}` stops it)", err=True)
        return INTERRUPTED
    reason = ending.reason()
    if reason:
        click.echo(f"fastlane: {reason}", err=True)
    return ending.exit_code()


@cli.command(epilog=EPILOG, context_settings={"allow_interspersed_args": False})
@click.argument("image")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-t", "--task", metavar="TASK", help="The task the job goes in [env FASTLANE_TASK; default 'default'].")
@click.option("-e", "--env", multiple=True, metavar="KEY=VALUE",
              help="An environment variable of the container (KEY alone: its value here). Repeatable.")
@click.option("--retries", type=click.IntRange(min=0), help="New executions after a non-zero exit.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop an execution running longer than this.")
@click.option("--cron", metavar="EXPR", help="Run on every tick of a 5-field cron expression (prints the ids and returns).")
@click.option("--timezone", metavar="ZONE", help="The cron expression's time zone (e.g. Europe/Paris; UTC by default).")
@click.option("--start-in", metavar="DURATION", help="Run once after this delay: 10s, 2m, 4h30m25s.")
@click.option("--start-at", metavar="WHEN", help="Run once at this time: epoch seconds or ISO 8601.")
@click.option("--expiration", metavar="WHEN", help="Never start after this time: epoch seconds or ISO 8601.")
@click.option("--metadata", multiple=True, metavar="JSON|KEY=VALUE", help="Client data kept with the job. Repeatable.")
@click.option("--idempotency-key", metavar="KEY", help="The same key and options within 24 h create nothing new.")
@click.option("--notify-succeeds", multiple=True, metavar="EMAIL", help="E-mail when it exits 0. Repeatable.")
@click.option("--notify-fails", multiple=True, metavar="EMAIL", help="E-mail when it fails. Repeatable.")
@click.option("--notify-finishes", multiple=True, metavar="EMAIL", help="E-mail when it ends. Repeatable.")
@click.option("--webhook-succeeds", multiple=True, metavar="URL", help="POST the execution when it exits 0. Repeatable.")
@click.option("--webhook-fails", multiple=True, metavar="URL", help="POST the execution when it fails. Repeatable.")
@click.option("--webhook-finishes", multiple=True, metavar="URL", help="POST the execution when it ends. Repeatable.")
@click.option("--payload", metavar="JSON", help="More payload keys as a JSON object (retry policy, concurrency, ...).")
@click.option("-d", "--detach", is_flag=True, help="Print the ids and return instead of following the job.")
@click.option("--no-follow-retries", is_flag=True, help="Stop at the first execution's end even if the job retries it.")
@click.option("--stop-on-interrupt", is_flag=True, help="Ctrl-C stops the job too, not only the following.")
@click.option("-q", "--quiet", is_flag=True, help="No notes on stderr (reasons for failures are still printed).")
@click.option("--json", "as_json", is_flag=True, help="With --detach: print the service's answer as JSON.")
@service_options
def run(api: Api, image: str, command: tuple[str, ...], task: str | None, env: tuple[str, ...], retries: int | None,
        timeout: float | None, cron: str | None, timezone: str | None, start_in: str | None, start_at: str | None,
        expiration: str | None, metadata: tuple[str, ...], idempotency_key: str | None,
        notify_succeeds: tuple[str, ...], notify_fails: tuple[str, ...], notify_finishes: tuple[str, ...],
        webhook_succeeds: tuple[str, ...], webhook_fails: tuple[str, ...], webhook_finishes: tuple[str, ...],
        payload: str | None, detach: bool, no_follow_retries: bool, stop_on_interrupt: bool, quiet: bool,
        as_json: bool) -> int:
    """Run IMAGE with COMMAND as a job, follow its output live and exit with its exit code.

    \b
      fastlane run ubuntu -- sh -c 'echo out; echo err >&2; exit 3'
      fastlane run --task reports -e MODE=full --retries 2 --timeout 600 my/image -- report.py
      fastlane run --detach --json alpine -- sleep 30

    stdout goes to stdout and stderr to stderr as the container writes them. A job that retries is
    followed into its next execution (--no-follow-retries stops at the first), and the exit code is
    the last execution's. A cron job prints its ids and returns, as --detach does."""
    if command[:1] == ("--",):
        command = command[1:]  # IMAGE -- COMMAND: after IMAGE everything is the command, "--" included
    if not command:
        raise CliError("give the command to run after the image: fastlane run IMAGE -- COMMAND...", USAGE)
    body = build_payload(image, command, env, retries, timeout, cron, timezone, start_in, start_at, expiration,
                         metadata, {"succeeds": notify_succeeds, "fails": notify_fails, "finishes": notify_finishes},
                         {"succeeds": webhook_succeeds, "fails": webhook_fails, "finishes": webhook_finishes}, payload)
    if as_json and not (detach or cron):
        raise CliError("--json prints the ids, so it goes with --detach (the output of a followed job is its own)", USAGE)
    task = task or api.settings.task
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    answer = api.post(path("tasks", task), body, headers=headers)
    if detach or cron:
        _print_ids(answer, as_json)
        if cron and not detach and not as_json and not quiet:
            click.echo(f"fastlane: a cron job runs on every tick; `fastlane logs -f {answer['taskId']} {answer['jobId']}` "
                       "follows its latest execution", err=True)
        return OK
    return _follow(api, answer["taskId"], answer["jobId"], None, not no_follow_retries, quiet, stop_on_interrupt,
                   start=answer.get("executionId"))


# ls ----------------------------------------------------------------------------------------------


def _latest(api: Api, task: str, job_id: str) -> dict[str, Any]:
    return dict(api.get(path("tasks", task, "jobs", job_id)).get("job") or {})


def _schedule_text(job: dict[str, Any]) -> str:
    metadata = job.get("metadata") or {}
    if metadata.get("cron"):
        return f"cron {metadata['cron']} {metadata.get('timezone') or ''}".strip()
    return "scheduled" if job.get("scheduled") else "-"


@cli.command(epilog=EPILOG)
@click.argument("task", required=False)
@click.argument("job", required=False)
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True, help="Which page of the list.")
@json_option
@service_options
def ls(api: Api, task: str | None, job: str | None, page: int, as_json: bool) -> int:
    """List tasks; a task's jobs (with each one's latest status); a job's executions.

    \b
      fastlane ls
      fastlane ls TASK
      fastlane ls TASK JOB"""
    if task is None:
        data = api.get("/tasks", page=page)
        if as_json:
            output.emit_json(data)
            return OK
        output.table(["TASK", "JOBS", "CREATED", "LAST MODIFIED"],
                     [[item.get("taskId", ""), str(item.get("jobsCount", "")), output.when(item.get("createdAt")),
                       output.when(item.get("lastModifiedAt"))] for item in data.get("items") or []])
        output.page_footer(data, "tasks")
        return OK
    if job is None:
        data = api.get(path("tasks", task), page=page)
        jobs = data.get("jobs") or []
        with ThreadPoolExecutor(max_workers=8) as pool:
            details = list(pool.map(lambda item: _latest(api, task, item["id"]), jobs))
        if as_json:
            output.emit_json({**data, "jobs": details})
            return OK
        rows = []
        for item, detail in zip(jobs, details, strict=True):
            latest = (detail.get("executions") or [{}])[0]
            rows.append([item.get("id", ""), output.status_text(latest.get("status")),
                         "-" if latest.get("exitCode") is None else str(latest["exitCode"]),
                         detail.get("image", ""), detail.get("command", ""), _schedule_text(detail),
                         str(detail.get("executionCount", "")), output.when(item.get("createdAt"))])
        output.table(["JOB", "STATUS", "EXIT", "IMAGE", "COMMAND", "SCHEDULE", "RUNS", "CREATED"], rows,
                     title=f"task {data.get('taskId', task)}")
        output.page_footer(data, "jobs")
        return OK
    data = api.get(path("tasks", task, "jobs", job), page=page)
    if as_json:
        output.emit_json(data)
        return OK
    detail = data.get("job") or {}
    metadata = detail.get("metadata") or {}
    output.pairs([("task", task), ("job", detail.get("jobId", job)), ("image", detail.get("image")),
                  ("command", detail.get("command")), ("schedule", _schedule_text(detail)),
                  ("next run", output.when((detail.get("schedule") or {}).get("nextRunAt"))
                   if (detail.get("schedule") or {}).get("nextRunAt") else None),
                  ("retries", f"{metadata.get('retry_count', 0)} of {metadata.get('retries', 0)}"),
                  ("timeout", f"{metadata['timeout']} s" if metadata.get("timeout") else None),
                  ("envs", metadata.get("envs")), ("metadata", metadata.get("custom")),
                  ("executions", str(detail.get("executionCount", 0))), ("created", output.when(detail.get("createdAt")))])
    click.echo()
    output.table(["EXECUTION", "STATUS", "EXIT", "CREATED", "STARTED", "DURATION", "REASON"],
                 [[item.get("executionId", ""), output.status_text(item.get("status")),
                   "-" if item.get("exitCode") is None else str(item["exitCode"]), output.when(item.get("createdAt")),
                   output.when(item.get("startedAt")), output.duration(item.get("startedAt"), item.get("finishedAt")),
                   item.get("reason") or item.get("waitingFor") or ""] for item in detail.get("executions") or []])
    output.page_footer(data, "executions")
    return OK


# logs --------------------------------------------------------------------------------------------


@cli.command(epilog=EPILOG)
@click.argument("task")
@click.argument("job")
@click.argument("execution", required=False)
@click.option("-f", "--follow", is_flag=True,
              help="Follow the output live to the end and exit with the execution's code, like `run`.")
@click.option("--no-follow-retries", is_flag=True, help="With -f: stop at this execution's end even if the job retries it.")
@click.option("-q", "--quiet", is_flag=True, help="With -f: no notes on stderr.")
@service_options
def logs(api: Api, task: str, job: str, execution: str | None, follow: bool, no_follow_retries: bool, quiet: bool) -> int:
    """Print the output of a job's latest execution (or of EXECUTION): stdout to stdout, stderr to stderr.

    With -f, follow it live: the output so far, then each line as it is written, to the end (into
    the job's retries unless --no-follow-retries or an EXECUTION is named)."""
    if follow:
        return _follow(api, task, job, execution, not no_follow_retries, quiet, stop_on_interrupt=False)
    for which, target in (("stdout", sys.stdout.buffer), ("stderr", sys.stderr.buffer)):
        pages, _ = api.output(task, job, execution, which)
        for page in pages:
            target.write(page)
        target.flush()
    return OK


# status, stop, retry -----------------------------------------------------------------------------


@cli.command(epilog=EPILOG)
@json_option
@service_options
def status(api: Api, as_json: bool) -> int:
    """The farm: executions by status, pools, queues, scheduled jobs."""
    data = api.get("/status")
    if as_json:
        output.emit_json(data)
        return OK
    output.pairs([("version", data.get("version")), ("backend", data.get("backend")),
                  ("isolation", data.get("isolation")), ("tasks", str(data.get("tasks", ""))),
                  ("jobs", str(data.get("jobs", "")))])
    click.echo()
    executions = data.get("executions") or {}
    output.table(["STATUS", "EXECUTIONS"], [[output.status_text(name), str(count)] for name, count in executions.items()])
    pools = data.get("pools") or []
    if pools:
        click.echo()
        output.table(["POOL", "MATCH", "RUNNING", "LIMIT"],
                     [[p.get("name", ""), p.get("match", ""), str(p.get("running", "")),
                       "-" if p.get("maxRunning") is None else str(p["maxRunning"])] for p in pools])
    queues = data.get("queues") or {}
    if queues:
        click.echo()
        output.table(["QUEUE", "VISIBLE", "IN FLIGHT", "DELAYED"],
                     [[name, str(q.get("visible", "")), str(q.get("inFlight", "")), str(q.get("delayed", ""))]
                      for name, q in queues.items() if isinstance(q, dict)])
    scheduled = data.get("scheduled") or {}
    if scheduled.get("jobs"):
        click.echo()
        output.table(["SCHEDULED JOB", "TASK", "NEXT RUN"],
                     [[j.get("jobId", ""), j.get("taskId", ""), output.when(j.get("nextRunAt") or j.get("nextRun"))]
                      for j in scheduled["jobs"] if isinstance(j, dict)])
    return OK


# executions across tasks ------------------------------------------------------------------------

SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _since(value: str | None, now: float) -> float | None:
    """`--since`: a duration back from now (`30m`, `12h`, `1d`, `2w`), or a moment (epoch seconds,
    an ISO 8601 date and time)."""
    if value is None:
        return None
    text = value.strip().lower()
    if len(text) > 1 and text[-1] in SINCE_UNITS and text[:-1].isdigit():
        return now - int(text[:-1]) * SINCE_UNITS[text[-1]]
    try:
        return _epoch(value, "--since")
    except CliError:
        raise CliError(f"--since '{value}' is neither a duration back from now (30m, 12h, 1d, 2w) nor a moment "
                       "(epoch seconds or a date and time like 2030-01-31T08:00:00+01:00)", USAGE) from None


@cli.command(epilog=EPILOG)
@click.option("--status", "statuses", multiple=True, metavar="STATUS",
              help="Only executions in this status (repeat it, or comma-separate: failed,timedout).")
@click.option("--since", metavar="WHEN", help="Only those that entered their status since then: 1d, 12h, 30m, "
                                              "or epoch seconds or a date and time.")
@click.option("--task", "task_prefix", metavar="PREFIX", help="Only executions of tasks whose id starts with PREFIX.")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True, help="Which page of the list.")
@click.option("--retry", "retry_them", is_flag=True,
              help="Retry the job of each execution listed on this page, once per job, and say how each went.")
@json_option
@service_options
def executions(api: Api, statuses: tuple[str, ...], since: str | None, task_prefix: str | None, page: int,
               retry_them: bool, as_json: bool) -> int:
    """List executions across tasks, newest first by the time they entered their status; with
    --retry, retry the jobs of those listed.

    \b
      fastlane executions --status failed --since 1d
      fastlane executions --status failed,timedout --task reports- --retry"""
    status = ",".join(part.strip() for value in statuses for part in value.split(",") if part.strip()) or None
    started = _since(since, datetime.now().timestamp())
    data = api.get("/executions", status=status, since=None if started is None else f"{started:.3f}",
                   task=task_prefix, page=page)
    items = data.get("items") or []
    if retry_them:
        if not items:
            raise CliError("no execution is listed, so none was retried", USAGE)
        body: dict[str, Any] = {"executions": [item["executionId"] for item in items]}
        if task_prefix:
            body["task"] = task_prefix
        answer = api.post("/executions/retry", body)
        if as_json:
            output.emit_json(answer)
            return OK
        results = answer.get("results") or []
        output.table(["EXECUTION", "TASK", "OUTCOME", "NEW EXECUTION"],
                     [[r.get("executionId", ""), r.get("taskId") or "", str(r.get("status", "")) if not r.get("error")
                       else f"{r.get('status')}: {r['error']}", (r.get("retry") or {}).get("executionId") or ""]
                      for r in results])
        good = sum(1 for r in results if 200 <= int(r.get("status") or 0) < 300)
        click.echo(f"{good} of {len(results)} retried")
        return OK
    if as_json:
        output.emit_json(data)
        return OK
    output.table(["EXECUTION", "TASK", "JOB", "STATUS", "EXIT", "SINCE", "DURATION", "REASON"],
                 [[item.get("executionId", ""), item.get("taskId", ""), item.get("jobId", ""),
                   output.status_text(item.get("status")), "-" if item.get("exitCode") is None else str(item["exitCode"]),
                   output.when(item.get("statusAt")), output.duration(item.get("startedAt"), item.get("finishedAt")),
                   item.get("reason") or item.get("waitingFor") or ""] for item in items])
    output.page_footer(data, "executions")
    return OK


@cli.command(epilog=EPILOG)
@click.argument("task")
@click.argument("job")
@click.argument("execution", required=False)
@json_option
@service_options
def stop(api: Api, task: str, job: str, execution: str | None, as_json: bool) -> int:
    """Stop a job: its running execution, its schedule and pending retries. With EXECUTION, stop
    that execution only (the schedule stays)."""
    route = path("tasks", task, "jobs", job, *(("executions", execution) if execution else ()), "stop")
    data = api.post(route)
    if as_json:
        output.emit_json(data)
    elif execution:
        click.echo(f"stopped execution {execution} of job {job}")
    else:
        click.echo(f"stopped job {job}: its running execution, schedule and pending retries")
    return OK


def _schedule_control(api: Api, task: str, job: str, action: str, as_json: bool) -> int:
    data = api.post(path("tasks", task, "jobs", job, action))
    if as_json:
        output.emit_json(data)
        return OK
    schedule = data.get("schedule") or {}
    if action == "pause":
        click.echo(f"paused job {job}: its schedule fires nothing until it is resumed")
    else:
        upcoming = schedule.get("nextRuns") or []
        when = output.when(upcoming[0]) if upcoming else "nothing pending"
        click.echo(f"resumed job {job}: next run {when}")
    return OK


def _schedule_command(action: str, summary: str) -> None:
    """`pause` and `resume`: the same arguments, one route each."""

    @cli.command(name=action, epilog=EPILOG, help=summary)
    @click.argument("task")
    @click.argument("job")
    @json_option
    @service_options
    def command(api: Api, task: str, job: str, as_json: bool) -> int:
        return _schedule_control(api, task, job, action, as_json)


_schedule_command("pause", "Pause a scheduled job: its ticks are skipped (and counted) until it is resumed.")
_schedule_command("resume", "Resume a paused job: its next run is computed from now.")


@cli.command(epilog=EPILOG)
@click.argument("task")
@click.argument("job")
@click.option("-f", "--follow", is_flag=True, help="Follow the new execution's output and exit with its code, like `run`.")
@click.option("--idempotency-key", metavar="KEY", help="The same key within 24 h starts nothing new.")
@click.option("-q", "--quiet", is_flag=True, help="With -f: no notes on stderr.")
@json_option
@service_options
def retry(api: Api, task: str, job: str, follow: bool, idempotency_key: str | None, quiet: bool, as_json: bool) -> int:
    """Start a new execution of a job now (a scheduled job: run now; its schedule is unchanged)."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    data = api.post(path("tasks", task, "jobs", job, "retry"), headers=headers)
    if follow:
        return _follow(api, task, job, None, True, quiet, stop_on_interrupt=False, start=data.get("executionId"))
    if as_json:
        output.emit_json(data)
    else:
        click.echo(data.get("executionId") or "")
    return OK


# ui ----------------------------------------------------------------------------------------------


@cli.command(epilog=EPILOG)
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="The proxy's port on 127.0.0.1 (0: a free one).")
@click.option("--no-browser", is_flag=True, help="Print the URL instead of opening a browser.")
@click.option("--proxy/--no-proxy", "use_proxy", default=None,
              help="Serve the signing proxy (by default with SigV4 only; --proxy adds Basic or API key credentials too).")
@service_options
def ui(api: Api, port: int, no_browser: bool, use_proxy: bool | None) -> int:
    """Open the job browser (/ui). Against an IAM-authorized deployment, through a loopback proxy
    that signs each request with your AWS credentials (SigV4), so the browser holds no keys; the
    proxy runs until Ctrl-C and answers only 127.0.0.1 and its own origin."""
    import webbrowser

    from .proxy import SigningProxy

    if use_proxy is None:
        use_proxy = api.auth.mode == "sigv4"
    if not use_proxy:
        url = f"{api.base}/ui"
        click.echo(url)
        if not no_browser:
            webbrowser.open(url)
        return OK
    if api.auth.mode == "sigv4":
        api.auth.sign("GET", api.base + "/", {}, b"")  # no credentials: say so now, not in the browser
    proxy = SigningProxy(api.base, api.auth, port=port)
    url = f"{proxy.url}/ui"
    click.echo(f"fastlane: signing proxy for {api.base} on {proxy.url} ({api.auth.mode} auth); Ctrl-C stops it", err=True)
    click.echo(url)
    if not no_browser:
        webbrowser.open(url)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.server.server_close()
    return OK


# the entry point ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """`fastlane`: every failure is one line on stderr and a documented exit code."""
    try:
        code = cli.main(args=argv, prog_name="fastlane", standalone_mode=False)
    except CliError as error:
        click.echo(f"fastlane: {error.message}", err=True)
        code = error.code
    except click.UsageError as error:
        where = error.ctx.command_path if error.ctx else "fastlane"
        message = error.format_message().replace("\n", " ")
        click.echo(f"{where}: {message} (see `{where} --help`)", err=True)
        code = USAGE
    except click.ClickException as error:
        click.echo(f"fastlane: {error.format_message()}", err=True)
        code = error.exit_code
    except (KeyboardInterrupt, click.Abort):
        click.echo("fastlane: interrupted", err=True)
        code = INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`fastlane logs ... | head`): nothing more to say to it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = OK
    sys.exit(code if isinstance(code, int) else OK)

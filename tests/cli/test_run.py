"""`fastlane run`, `logs`, `ls`, `status`, `stop`, `retry`, `pause`, `resume` and `executions` as a user runs them, against a local
runtime of this module's own: output on its own streams as it is written, the execution's exit code,
the reasons of endings the container did not choose, a dropped websocket resumed, --json."""
from __future__ import annotations

import json
import signal
import socket
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.polling import wait_until

from .conftest import Cli, one_line

# One worker runs this module, so that its tests share the one runtime.
pytestmark = [pytest.mark.system, pytest.mark.xdist_group("cli")]

OUT_ERR_EXIT_3 = ["ubuntu", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]
# A job that runs until stopped, and ends at once when it is (sh as PID 1 handles SIGTERM).
UNTIL_STOPPED = ["ubuntu", "--", "sh", "-c", 'trap "exit 0" TERM; echo started; while true; do sleep 0.05; done']


def test_run_streams_stdout_and_stderr_apart_and_exits_with_the_container_code(cli: Cli) -> None:
    done = cli("run", "-t", "cli-run", *OUT_ERR_EXIT_3)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "out\n"
    assert done.stderr == "err\n"  # the container's stderr, nothing else: its own code needs no reason


def test_detach_json_then_ls_logs_and_logs_follow(cli: Cli) -> None:
    ids = cli.json("run", "-t", "cli-detach", "--detach", "-e", "WHO=world", "--metadata", "team=jobs",
                   "ubuntu", "--", "sh", "-c", 'echo "hello $WHO"; echo oops >&2; exit 5')
    assert set(ids) >= {"taskId", "jobId", "executionId", "jobUrl"} and ids["taskId"] == "cli-detach"
    task, job, execution = ids["taskId"], ids["jobId"], ids["executionId"]

    followed = cli("logs", "-f", task, job)  # to the end, with the execution's code, like run
    assert (followed.returncode, followed.stdout, followed.stderr) == (5, "hello world\n", "oops\n")

    printed = cli("logs", task, job, execution)
    assert (printed.returncode, printed.stdout, printed.stderr) == (0, "hello world\n", "oops\n")

    details = cli.json("ls", task, job)
    assert details["job"]["metadata"]["envs"] == {"WHO": "world"}
    assert details["job"]["metadata"]["custom"] == {"team": "jobs"}
    assert details["job"]["executions"][0]["exitCode"] == 5

    table = cli("ls", task, job)
    assert table.returncode == 0 and execution in table.stdout and "failed" in table.stdout
    jobs = cli("ls", task)
    assert jobs.returncode == 0 and job in jobs.stdout and "failed" in jobs.stdout
    assert cli.json("ls", task)["jobs"][0]["jobId"] == job
    tasks = cli("ls")
    assert tasks.returncode == 0 and "cli-detach" in tasks.stdout
    assert "cli-detach" in {item["taskId"] for item in cli.json("ls")["items"]}


def test_status(cli: Cli) -> None:
    data = cli.json("status")
    assert data["backend"] == "local" and "done" in data["executions"]
    shown = cli("status")
    assert shown.returncode == 0 and "EXECUTIONS" in shown.stdout and "POOL" in shown.stdout


def test_a_retried_job_is_followed_into_its_retry(cli: Cli) -> None:
    done = cli("run", "-t", "cli-retries", "--retries", "1", "ubuntu", "--", "sh", "-c", "echo try; exit 4")
    assert done.returncode == 4, done.stderr
    assert done.stdout == "try\ntry\n"
    assert "following the job's retry" in done.stderr


def test_timeout_and_launch_failure_exit_non_zero_with_the_reason(cli: Cli) -> None:
    timed_out = cli("run", "-t", "cli-ends", "--timeout", "0.3", *UNTIL_STOPPED)
    assert timed_out.returncode == 124
    assert timed_out.stdout == "started\n"
    assert "timed out" in one_line(timed_out.stderr)

    not_run = cli("run", "-t", "cli-ends", "ubuntu", "--", "no-such-command-here")
    assert not_run.returncode == 125
    assert "could not run" in one_line(not_run.stderr) and "no-such-command-here" in not_run.stderr


def test_stop_ends_a_followed_job_and_retry_starts_it_again(cli: Cli) -> None:
    ids = cli.json("run", "-t", "cli-stop", "--detach", *UNTIL_STOPPED)
    follower = cli.popen("logs", "-f", "cli-stop", ids["jobId"])
    try:
        assert follower.stdout is not None and follower.stdout.readline() == "started\n"
        stopped = cli("stop", "cli-stop", ids["jobId"])
        assert stopped.returncode == 0 and "stopped job" in stopped.stdout
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill() if follower.poll() is None else None
    assert follower.returncode == 123
    assert "was stopped" in one_line(err)

    again = cli("retry", "cli-stop", ids["jobId"], "--json")
    assert again.returncode == 0, again.stderr
    execution = json.loads(again.stdout)["executionId"]
    assert execution and execution != ids["executionId"]
    wait_until(lambda: cli.json("ls", "cli-stop", ids["jobId"])["job"]["executions"][0]["status"] == "running",
               timeout=15, what="the retried execution to run")
    only = cli("stop", "cli-stop", ids["jobId"], execution)
    assert only.returncode == 0 and f"stopped execution {execution}" in only.stdout
    last = wait_until(lambda: (e := cli.json("ls", "cli-stop", ids["jobId"])["job"]["executions"][0])["status"] == "stopped"
                      and e, timeout=15, what="the execution to be stopped")
    assert last["executionId"] == execution


def test_pause_and_resume_a_cron_job(cli: Cli) -> None:
    ids = cli.json("run", "-t", "cli-cron", "--detach", "--cron", "0 3 * * *", "ubuntu", "--", "true")
    paused = cli("pause", "cli-cron", ids["jobId"])
    assert paused.returncode == 0 and f"paused job {ids['jobId']}" in paused.stdout
    assert cli.json("ls", "cli-cron", ids["jobId"])["job"]["schedule"]["paused"] is True
    resumed = cli("resume", "cli-cron", ids["jobId"], "--json")
    assert resumed.returncode == 0, resumed.stderr
    schedule = json.loads(resumed.stdout)["schedule"]
    assert schedule["paused"] is False and len(schedule["nextRuns"]) == 5
    plain = cli.json("run", "-t", "cli-cron", "--detach", "ubuntu", "--", "true")
    refused = cli("pause", "cli-cron", plain["jobId"])
    assert refused.returncode != 0 and "409" in one_line(refused.stderr)


def test_executions_across_tasks_are_listed_and_retried(cli: Cli) -> None:
    failed = [cli.json("run", "-t", task, "--detach", "ubuntu", "--", "bash", "-c", "exit 4")
              for task in ("cli-across-a", "cli-across-b")]
    for ids in failed:
        cli("logs", "-f", ids["taskId"], ids["jobId"])  # until it ends
    listed = cli.json("executions", "--status", "failed", "--since", "1h", "--task", "cli-across-")
    assert sorted(item["taskId"] for item in listed["items"]) == ["cli-across-a", "cli-across-b"]
    table = cli("executions", "--status", "failed,timedout", "--since", "1h", "--task", "cli-across-")
    assert table.returncode == 0 and all(ids["executionId"] in table.stdout for ids in failed)

    retried = cli("executions", "--status", "failed", "--since", "1h", "--task", "cli-across-", "--retry")
    assert retried.returncode == 0, retried.stderr
    assert "2 of 2 retried" in retried.stdout
    for ids in failed:
        assert cli.json("ls", ids["taskId"], ids["jobId"])["job"]["executionCount"] == 2

    refused = cli("executions", "--since", "yesterday-ish")
    assert refused.returncode == 2 and "--since 'yesterday-ish'" in one_line(refused.stderr)
    bad = cli("executions", "--status", "bogus")
    assert bad.returncode == 2 and "status must be one or more of" in one_line(bad.stderr)


def test_retry_follow_exits_with_the_new_execution_code(cli: Cli) -> None:
    ids = cli.json("run", "-t", "cli-retry", "--detach", *OUT_ERR_EXIT_3)
    cli("logs", "-f", "cli-retry", ids["jobId"])
    again = cli("retry", "-f", "cli-retry", ids["jobId"])
    assert (again.returncode, again.stdout, again.stderr) == (3, "out\n", "err\n")
    assert len(cli.json("ls", "cli-retry", ids["jobId"])["job"]["executions"]) == 2


def test_ctrl_c_stops_following_and_with_stop_on_interrupt_the_job(cli: Cli) -> None:
    for stop_too in (False, True):
        extra = ["--stop-on-interrupt"] if stop_too else []
        running = cli.popen("run", "-t", "cli-interrupt", *extra, *UNTIL_STOPPED)
        try:
            assert running.stdout is not None and running.stdout.readline() == "started\n"
            running.send_signal(signal.SIGINT)
            _, err = running.communicate(timeout=30)
        finally:
            running.kill() if running.poll() is None else None
        assert running.returncode == 130
        job = cli.json("ls", "cli-interrupt")["jobs"][-1]
        status = job["executions"][0]["status"]
        if stop_too:
            assert "stopped job" in one_line(err)
            wait_until(lambda job=job: cli.json("ls", "cli-interrupt", job["jobId"])["job"]["executions"][0]["status"] == "stopped",
                       timeout=15, what="the job to be stopped")
        else:
            assert "the job goes on" in one_line(err) and status == "running"
            assert cli("stop", "cli-interrupt", job["jobId"]).returncode == 0


def test_failure_lines_for_unknown_task_and_job_and_refused_options(cli: Cli) -> None:
    unknown = cli("ls", "no-such-task")
    assert unknown.returncode == 119 and "no-such-task" in one_line(unknown.stderr)
    job = cli("logs", "no-such-task", "00000000-0000-7000-8000-000000000000")
    assert job.returncode == 119 and one_line(job.stderr).startswith("fastlane: ")

    refused = cli("run", "--start-in", "soon", "ubuntu", "--", "true")
    assert refused.returncode == 2 and "startIn" in one_line(refused.stderr)
    bad_option = cli("run", "--no-such-option", "ubuntu", "--", "true")
    assert bad_option.returncode == 2 and "--no-such-option" in one_line(bad_option.stderr)
    no_command = cli("run", "ubuntu")
    assert no_command.returncode == 2 and "COMMAND" in one_line(no_command.stderr)
    bad_env = cli("run", "-e", "=x", "ubuntu", "--", "true")
    assert bad_env.returncode == 2 and "KEY=VALUE" in one_line(bad_env.stderr)

    conflict = [cli("run", "-t", "cli-idem", "--detach", "--idempotency-key", "k-1", "ubuntu", "--", "echo", body)
                for body in ("one", "one", "two")]
    assert [c.returncode for c in conflict] == [0, 0, 118]
    assert conflict[0].stdout == conflict[1].stdout  # the same key and body: the first answer again
    assert "409" in one_line(conflict[2].stderr)


# a dropped websocket ----------------------------------------------------------------------------


class Relay:
    """A TCP relay in front of the runtime's websocket that cuts the first connection to carry an
    output frame right after passing it on (`cut`), or from then on passes nothing more to the
    client while keeping the connection open (`swallow`: a lost end frame). The connections before
    it (a subscription made before the container started is told to come back) and after it pass
    through; `dropped` is the index of the request whose connection was cut."""

    def __init__(self, target: str, mode: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.mode = mode
        self.requests: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.dropped: int | None = None
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            self.requests.append("")
            index = len(self.requests) - 1
            threading.Thread(target=self._pipe, args=(client, upstream, index, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, index, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, index: int, watched: bool) -> None:
        seen = b""
        try:
            while data := source.recv(65536):
                if not watched and not self.requests[index]:
                    self.requests[index] = data.split(b"\r\n", 1)[0].decode("latin-1")
                if watched and self.dropped is None:
                    seen += data
                    if b'"output"' in seen:
                        self.dropped = index
                        if self.mode == "cut":
                            sink.sendall(data)
                            for end in (source, sink):
                                end.shutdown(socket.SHUT_RDWR)
                            return
                        if self.mode == "swallow":
                            sink.sendall(data)
                            while source.recv(65536):
                                pass  # the rest, the end frame included, never reaches the client
                            return
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)  # the end of one side's stream passed on as such
        except OSError:
            return

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the relay's threads blocked reading it
            except OSError:
                pass
            sock.close()


@pytest.fixture
def relay(websocket_url: str) -> Iterator[type[Relay]]:
    made: list[Relay] = []

    def make(mode: str) -> Relay:
        made.append(Relay(websocket_url, mode))
        return made[-1]

    yield make  # type: ignore[misc]
    for one in made:
        one.close()


@pytest.mark.parametrize("mode", ["cut", "swallow"])
def test_a_dropped_websocket_resumes_where_it_left_off(cli: Cli, relay, mode: str) -> None:
    cut = relay(mode)
    script = "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three; exit 7"
    done = cli("run", "-t", "cli-drop", "--ws-url", cut.url, "ubuntu", "--", "sh", "-c", script)
    assert done.returncode == 7, done.stderr
    assert done.stdout == "one\nthree\n"  # every line once, whatever the cut
    assert done.stderr == "two\n"
    assert cut.dropped is not None and len(cut.requests) >= cut.dropped + 2, cut.requests
    resumed = parse_qs(urlsplit(cut.requests[cut.dropped + 1].split(" ")[1]).query)
    assert resumed.get("after") and resumed.get("executionId"), cut.requests  # from the last position it had

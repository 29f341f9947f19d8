"""What an execution freezes travels with its launch message and its ECS task: the message
carries the launch snapshot (so the dispatcher reads nothing first) and the task's `startedBy`
names the execution by its key (so the monitor reads it with one GetItem)."""
from __future__ import annotations

from chalicelib.domain.ecs import parse_started_by, parse_task_event, started_by
from chalicelib.domain.messages import Launch, decode_job_message, encode
from chalicelib.domain.model import ExecutionStatus, Hook, Job, JobSpec, Placement, new_execution, new_id
from chalicelib.domain.pools import Pool

PLACEMENT = Placement(cluster="fastlane", cpu="256", memory="512")


def a_job(**spec: object) -> Job:
    fields: dict = {"image": "ubuntu", "command": "echo hi", "envs": {"A": "1"}, **spec}
    return Job(task_id="t", job_id=new_id(), spec=JobSpec(**fields), created_at=10.0, last_modified_at=10.0)


def test_an_execution_freezes_its_jobs_policy() -> None:
    plain = new_execution(a_job(), 11.0, placement=PLACEMENT)
    noisy = new_execution(a_job(retries=2, webhooks={"fails": [Hook(url="http://127.0.0.1/x")]}), 11.0,
                          placement=PLACEMENT)

    assert (plain.notifies, plain.job_retries, plain.envs) == (False, 0, {"A": "1"})
    assert (noisy.notifies, noisy.job_retries) == (True, 2)


def test_the_launch_message_carries_the_snapshot_the_dispatcher_acts_on() -> None:
    execution = new_execution(a_job(timeout=30, expiration=99.0), 11.0, request_ip="127.0.0.1", due_at=12.5,
                              placement=Placement(cluster="gpu", cpu="4096", memory="8192")).with_changes(launches=3)

    decoded = decode_job_message(encode(Launch.of(execution, attempt=2)))

    assert isinstance(decoded, Launch) and (decoded.generation, decoded.attempt) == (3, 2)
    snapshot = decoded.snapshot()
    assert snapshot is not None
    assert snapshot == execution.with_changes(metadata={}, seq=0)
    assert snapshot.status is ExecutionStatus.ENQUEUED and snapshot.spec == execution.spec
    assert snapshot.placement == Placement(cluster="gpu", cpu="4096", memory="8192")


def test_an_execution_launches_with_the_cluster_and_size_it_was_made_with() -> None:
    now = Pool(name="p", match=".*", cluster="moved", cpu="1024", memory="2048")
    assert now.placed(PLACEMENT).cluster == "fastlane" and now.placed(PLACEMENT).cpu == "256"
    assert now.placed(PLACEMENT).memory == "512" and now.placed(PLACEMENT).name == "p"
    assert now.placed(None) is now  # none frozen: the pool as it is


def test_a_launch_message_whose_snapshot_cannot_be_read_makes_the_dispatcher_read() -> None:
    bad = decode_job_message('{"taskId": "t", "jobId": "j", "executionId": "e", "execution": {"image": 3}}')
    assert isinstance(bad, Launch) and bad.snapshot() is None


def test_started_by_names_the_execution_by_its_key() -> None:
    job_id, execution_id = new_id(), new_id()
    name = started_by(job_id, execution_id)

    assert len(name) <= 128 and parse_started_by(name) == (job_id, execution_id)
    assert parse_started_by(execution_id) is None  # not the execution's key
    assert parse_started_by("ecs-svc/1234") is None  # another service's task
    event = {"detail": {"startedBy": name, "taskArn": "arn:aws:ecs:r:1:task/c/abc", "lastStatus": "RUNNING"}}
    change = parse_task_event(event)
    assert change is not None and (change.job_id, change.execution_id) == (job_id, execution_id)

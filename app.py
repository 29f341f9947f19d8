"""The fastlane service: route and handler declarations only; chalicelib does the work."""
import functools
import os

from chalice import Chalice, IAMAuthorizer, Rate

from chalicelib import handlers, live_handlers
from chalicelib.api import across_tasks, routes, stream_page, ui

app = Chalice(app_name="fastlane")
app.experimental_feature_flags.update(["WEBSOCKETS"])

# How API Gateway authorizes every route, chosen when the app is packaged (docs/deploy.md#access):
# FASTLANE_API_AUTH=iam (SigV4-signed requests) or api_key (x-api-key and a usage plan); unset,
# nothing, as in the local runtime and chalice.test.Client, which enforce neither.
ROUTE_AUTH = {"iam": {"authorizer": IAMAuthorizer()}, "api_key": {"api_key_required": True}}.get(
    os.environ.get("FASTLANE_API_AUTH", ""), {})
if ROUTE_AUTH:
    app.route = functools.partial(app.route, **ROUTE_AUTH)  # type: ignore[method-assign]

# Clients post JSON with whatever Content-Type their tool sends (curl -d says form-urlencoded);
# the body is parsed as JSON whatever it says, and rejected with a clear 400 if it is not.
BODY_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded", "application/octet-stream"]


@app.middleware("http")
def around_every_route(event, get_response):
    return routes.middleware(event, get_response)


@app.route("/", methods=["GET"])
def index():
    return routes.healthcheck(app.current_request)


@app.route("/healthcheck", methods=["GET"])
def healthcheck():
    return routes.healthcheck(app.current_request)


@app.route("/tasks", methods=["GET"])
def get_tasks():
    return routes.get_tasks(app.current_request)


@app.route("/executions", methods=["GET"])
def list_executions():
    return across_tasks.list_executions(app.current_request)


@app.route("/executions/retry", methods=["POST"], content_types=BODY_TYPES)
def retry_executions():
    return across_tasks.retry_executions(app.current_request)


@app.route("/tasks/{task_id}", methods=["GET"])
def get_task(task_id):
    return routes.get_task(app.current_request, task_id)


@app.route("/tasks/{task_id}", methods=["POST"], content_types=BODY_TYPES)
def enqueue_job(task_id):
    return routes.enqueue_job(app.current_request, task_id)


@app.route("/tasks/{task_id}/jobs/{job_id}", methods=["GET"])
def get_job(task_id, job_id):
    return routes.get_job(app.current_request, task_id, job_id)


@app.route("/tasks/{task_id}/jobs/{job_id}", methods=["PUT"], content_types=BODY_TYPES)
def update_job(task_id, job_id):
    return routes.update_job(app.current_request, task_id, job_id)


@app.route("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}", methods=["GET"])
def get_execution(task_id, job_id, execution_id):
    return routes.get_execution(app.current_request, task_id, job_id, execution_id)


@app.route("/tasks/{task_id}/jobs/{job_id}/stop", methods=["POST"], content_types=BODY_TYPES)
def stop_job(task_id, job_id):
    return routes.stop_job(app.current_request, task_id, job_id)


@app.route("/tasks/{task_id}/jobs/{job_id}/pause", methods=["POST"], content_types=BODY_TYPES)
def pause_job(task_id, job_id):
    return routes.pause_job(app.current_request, task_id, job_id)


@app.route("/tasks/{task_id}/jobs/{job_id}/resume", methods=["POST"], content_types=BODY_TYPES)
def resume_job(task_id, job_id):
    return routes.resume_job(app.current_request, task_id, job_id)


@app.route("/tasks/{task_id}/jobs/{job_id}/retry", methods=["POST"], content_types=BODY_TYPES)
def retry_job(task_id, job_id):
    return routes.retry_job(app.current_request, task_id, job_id)


@app.route("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/stop", methods=["POST"],
           content_types=BODY_TYPES)
def stop_execution(task_id, job_id, execution_id):
    return routes.stop_execution(app.current_request, task_id, job_id, execution_id)


_job_stdout, _job_stderr, _job_logs = (routes.job_output(w) for w in ("stdout", "stderr", "logs"))
_exec_stdout, _exec_stderr, _exec_logs = (routes.execution_output(w) for w in ("stdout", "stderr", "logs"))


@app.route("/tasks/{task_id}/jobs/{job_id}/stdout", methods=["GET"])
def job_stdout(task_id, job_id):
    return _job_stdout(app.current_request, task_id, job_id)


@app.route("/tasks/{task_id}/jobs/{job_id}/stderr", methods=["GET"])
def job_stderr(task_id, job_id):
    return _job_stderr(app.current_request, task_id, job_id)


@app.route("/tasks/{task_id}/jobs/{job_id}/logs", methods=["GET"])
def job_logs(task_id, job_id):
    return _job_logs(app.current_request, task_id, job_id)


@app.route("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/stdout", methods=["GET"])
def execution_stdout(task_id, job_id, execution_id):
    return _exec_stdout(app.current_request, task_id, job_id, execution_id)


@app.route("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/stderr", methods=["GET"])
def execution_stderr(task_id, job_id, execution_id):
    return _exec_stderr(app.current_request, task_id, job_id, execution_id)


@app.route("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/logs", methods=["GET"])
def execution_logs(task_id, job_id, execution_id):
    return _exec_logs(app.current_request, task_id, job_id, execution_id)


@app.route("/tasks/{task_id}/jobs/{job_id}/stream", methods=["GET"])
def job_stream(task_id, job_id):
    return stream_page.job_stream(app.current_request, task_id, job_id)


@app.route("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/stream", methods=["GET"])
def execution_stream(task_id, job_id, execution_id):
    return stream_page.execution_stream(app.current_request, task_id, job_id, execution_id)


# The job browser (docs/ui.md): a page and its two files. With API keys they are served without
# one, since a browser cannot send it when it opens a page: the page asks for the key and sends it
# with each call of the API, and shows nothing without it.
API_AUTH = os.environ.get("FASTLANE_API_AUTH", "")
UI_AUTH = {"api_key_required": False} if API_AUTH == "api_key" else {}
_ui_script, _ui_style = ui.asset("app.js"), ui.asset("app.css")


@app.route("/ui", methods=["GET"], **UI_AUTH)
def ui_page():
    return ui.page(app.current_request, API_AUTH)


@app.route("/ui/app.js", methods=["GET"], **UI_AUTH)
def ui_script():
    return _ui_script(app.current_request)


@app.route("/ui/app.css", methods=["GET"], **UI_AUTH)
def ui_style():
    return _ui_style(app.current_request)


@app.route("/tasks/{task_id}/jobs/{job_id}/stream/token", methods=["POST"], content_types=BODY_TYPES)
def renew_job_stream_token(task_id, job_id):
    return routes.renew_stream_token(app.current_request, task_id, job_id)


@app.route("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/stream/token", methods=["POST"],
           content_types=BODY_TYPES)
def renew_execution_stream_token(task_id, job_id, execution_id):
    return routes.renew_stream_token(app.current_request, task_id, job_id, execution_id)


@app.route("/openapi.json", methods=["GET"])
def openapi():
    return routes.openapi(app.current_request)


@app.route("/status", methods=["GET"])
def status():
    return routes.status(app.current_request)


# Event handlers. Queue names come from the environment when the app is packaged.
JOBS_QUEUE = os.environ.get("JOBS_QUEUE_NAME", "fastlane-jobs")
EVENTS_QUEUE = os.environ.get("EVENTS_QUEUE_NAME", "fastlane-events")


@app.on_sqs_message(queue=JOBS_QUEUE, batch_size=10, name="dispatch")
def dispatch_jobs(event):
    return handlers.dispatch_jobs(event.to_dict())


@app.on_sqs_message(queue=EVENTS_QUEUE, batch_size=10, name="monitor")
def monitor_tasks(event):
    return handlers.monitor_tasks(event.to_dict())


@app.schedule(Rate(1, unit=Rate.MINUTES), name="reconciler")
def reconcile(event):
    return handlers.reconcile()


# Live logs (docs/live-logs.md): the websocket API, and the function that the job log group's
# subscription filter feeds.
@app.on_ws_connect()
def ws_connect(event):
    return live_handlers.ws_connect(event.to_dict())


@app.on_ws_message()
def ws_message(event):
    return live_handlers.ws_message(event.to_dict())


@app.on_ws_disconnect()
def ws_disconnect(event):
    return live_handlers.ws_disconnect(event.to_dict())


@app.lambda_function(name="logs")
def logs(event, context):
    return live_handlers.logs(event)


@app.on_sqs_message(queue=os.environ.get("NOTIFY_QUEUE_NAME", "fastlane-notify"), batch_size=10, name="notify")
def send_notifications(event):
    return handlers.send_notifications(event.to_dict(), event.context)

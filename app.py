"""The fastlane service: route and handler declarations only; chalicelib does the work."""
from chalice import Chalice

from chalicelib.api import routes

app = Chalice(app_name="fastlane")

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

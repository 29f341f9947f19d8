"""The live log pages (GET .../jobs/{j}/stream, .../executions/{e}/stream): one small HTML page,
no external assets, that follows the websocket API (docs/live-logs.md). Nothing from the request
or the output is ever inserted as markup: ids travel as escaped JSON and lines as text nodes."""
from __future__ import annotations

import html
import secrets

from chalice.app import Request, Response

from .. import wiring
from ..config import get_settings
from . import auth
from .http import execution_id_of, job_id_of, operation, script_json, task_id_of, websocket_origin

# The page asks for a new token this long before its own expires.
RENEW_BEFORE_SECONDS = 120


STYLE = """
*{box-sizing:border-box}
body{margin:0;background:#101214;color:#d8dee4;font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
header{position:sticky;top:0;display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:baseline;padding:.6em 1em;
background:#1b1f24;border-bottom:1px solid #30363d}
header h1{font-size:1em;margin:0;color:#fff;overflow-wrap:anywhere}
#state{color:#9aa4ad}
#out{padding:.6em 1em 2em}
.line{white-space:pre-wrap;overflow-wrap:anywhere;min-height:1.45em}
.stderr{color:#ff8a80;border-left:3px solid #b71c1c;padding-left:.5em;margin-left:-.8em}
.note{color:#9aa4ad;font-style:italic}
#exit{font-weight:bold}
#exit.ok{color:#7ee787}
#exit.bad{color:#ff7b72}
.legend span{margin-left:.8em}
"""

SCRIPT = r"""
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("config").textContent);
  var out = document.getElementById("out"), state = document.getElementById("state");
  var exitBox = document.getElementById("exit"), execBox = document.getElementById("execution");
  var current = config.executionId, after = "", partial = {}, gotEnd = false, backoff = 1000, socket = null;
  var token = config.token, expiresAt = config.expiresAt || 0, renewable = true;

  function show(text) { state.textContent = text; }
  function atBottom() { return window.innerHeight + window.scrollY >= document.body.scrollHeight - 48; }
  function scroll(follow) { if (follow) { window.scrollTo(0, document.body.scrollHeight); } }
  function note(text) {
    var div = document.createElement("div");
    div.className = "line note";
    div.textContent = text;
    out.appendChild(div);
  }
  function lines(stream, items, cut) {
    var follow = atBottom();
    for (var i = 0; i < items.length; i++) {
      var div = partial[stream];
      if (div) { partial[stream] = null; } else {
        div = document.createElement("div");
        div.className = "line " + (stream === "stderr" ? "stderr" : "stdout");
        div.setAttribute("data-stream", stream);
        out.appendChild(div);
      }
      div.textContent += items[i];
      if (cut && i === items.length - 1) { partial[stream] = div; }
    }
    scroll(follow);
  }
  function dropPartial() {
    for (var stream in partial) {
      if (partial[stream] && partial[stream].parentNode) { partial[stream].parentNode.removeChild(partial[stream]); }
    }
    partial = {};
  }
  function address() {
    var query = ["taskId=" + encodeURIComponent(config.taskId), "jobId=" + encodeURIComponent(config.jobId)];
    if (current) { query.push("executionId=" + encodeURIComponent(current)); }
    if (after) { query.push("after=" + encodeURIComponent(after)); }
    if (token) { query.push("token=" + encodeURIComponent(token)); }
    return config.websocketUrl + (config.websocketUrl.indexOf("?") < 0 ? "?" : "&") + query.join("&");
  }
  function expired() { return token && Date.now() / 1000 >= expiresAt; }
  function renew() {
    // The token opens the websocket for minutes; the page asks for a new one over it in time.
    if (renewable && token && socket && socket.readyState === 1 && Date.now() / 1000 >= expiresAt - config.renewBefore) {
      socket.send(JSON.stringify({action: "renew", token: token}));
    }
  }
  function again(seconds) {
    if (expired()) { show("the live-log token expired while disconnected: reload the page"); return; }
    show("reconnecting in " + Math.round(seconds) + " s");
    window.setTimeout(connect, seconds * 1000);
  }
  function connect() {
    var closing = null, retryAfter = null;
    show("connecting");
    socket = new WebSocket(address());
    socket.onopen = function () { backoff = 1000; show("connected"); renew(); };
    socket.onmessage = function (message) {
      var frame;
      try { frame = JSON.parse(message.data); } catch (e) { return; }
      if (frame.type === "subscribed") {
        if (frame.executionId) { current = frame.executionId; execBox.textContent = "execution " + frame.executionId; }
        show(frame.status ? "execution " + frame.status : "waiting for the job to run");
      } else if (frame.type === "output") {
        lines(frame.stream, frame.lines || [], frame.partial === true);
        after = frame.position || after;
        show("streaming");
      } else if (frame.type === "end") {
        gotEnd = true;
        var code = frame.exitCode === null || frame.exitCode === undefined ? "none" : String(frame.exitCode);
        exitBox.textContent = "exit code " + code + " (" + frame.status + ")" + (frame.error ? ": " + frame.error : "");
        exitBox.className = frame.exitCode === 0 ? "ok" : "bad";
        exitBox.setAttribute("data-exit-code", code);
        scroll(atBottom());
      } else if (frame.type === "token") {
        token = frame.token; expiresAt = frame.expiresAt;
      } else if (frame.type === "error") {
        if (frame.field === "token") { renewable = false; }  // refused: asking again each minute would not help
        note("error: " + frame.error);
      } else if (frame.type === "close") {
        closing = frame.reason;
        retryAfter = frame.retryAfter;
      }
    };
    socket.onclose = function (event) {
      var reason = closing || event.reason;
      socket = null;
      if (reason === "done") { show("done"); return; }
      if (reason === "error") { show("stopped: see the error above"); return; }
      dropPartial();
      if (reason === "retry") {
        if (gotEnd && !config.executionId) {
          note("--- the job runs again: next execution ---");
          current = null; after = ""; gotEnd = false;
        }
        again(retryAfter || 2);
        return;
      }
      backoff = Math.min(backoff * 2, 30000);
      again(backoff / 1000);
    };
  }
  window.setInterval(function () {
    if (socket && socket.readyState === 1) { socket.send('{"action":"ping"}'); }
    renew();
  }, 60000);
  if (!config.websocketUrl) { show("live logs are not configured on this server (WEBSOCKET_URL is not set)"); return; }
  connect();
})();
"""


def render(task_id: str, job_id: str, execution_id: str | None, websocket_url: str, token: str | None,
           nonce: str, expires_at: int | None = None) -> str:
    title = f"{task_id} / {job_id}" + (f" / {execution_id}" if execution_id else "")
    config: dict[str, object] = {"taskId": task_id, "jobId": job_id, "executionId": execution_id,
                                 "websocketUrl": websocket_url, "token": token}
    if token:
        config.update(expiresAt=expires_at, renewBefore=RENEW_BEFORE_SECONDS)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · live logs</title>"
        f'<style nonce="{nonce}">{STYLE}</style></head>\n<body>'
        f"<header><h1>{html.escape(title)}</h1>"
        '<span id="execution"></span><span id="state" role="status">loading</span>'
        '<span id="exit" aria-live="polite"></span>'
        '<span class="legend"><span>stdout</span><span class="stderr">stderr</span></span></header>\n'
        '<main id="out" aria-live="polite"></main>\n'
        f'<script type="application/json" id="config">{script_json(config)}</script>\n'
        f'<script nonce="{nonce}">{SCRIPT}</script>\n</body></html>\n'
    )


def _page(task_id: str, job_id: str, execution_id: str | None) -> Response:
    settings = get_settings()
    basic = wiring.get_basic_auth()
    token, expires = auth.issue_token(basic.signing_key(), task_id, job_id, execution_id) \
        if basic.tokens_required else (None, None)
    nonce = secrets.token_urlsafe(16)
    websocket_url = settings.websocket_url
    connect = websocket_origin(websocket_url) or "'none'"
    policy = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src {connect}; "
              "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    body = render(task_id, job_id, execution_id, websocket_url, token, nonce, expires)
    return Response(body=body, status_code=200, headers={
        "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": policy,
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


@operation("get_job_stream")
def job_stream(request: Request, task_id: str, job_id: str) -> Response:
    job = wiring.get_job_service().job(task_id_of(task_id), job_id_of(job_id))  # 404 for an unknown job
    return _page(job.task_id, job.job_id, None)


@operation("get_execution_stream")
def execution_stream(request: Request, task_id: str, job_id: str, execution_id: str) -> Response:
    job, execution = wiring.get_job_service().execution(task_id_of(task_id), job_id_of(job_id),
                                                        execution_id_of(execution_id))
    return _page(job.task_id, job.job_id, execution.execution_id)

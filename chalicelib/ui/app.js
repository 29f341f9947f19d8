// The job browser (docs/ui.md): hash routes (#/tasks, #/job/<task>/<job>, ...) drawn from the
// service's HTTP API, called with paths relative to the page's own origin. Nothing from the
// service is inserted as markup: every value becomes a text node or an attribute, and every link
// is built here from ids, never taken from an answer.

const config = JSON.parse(document.getElementById("config").textContent);
// Where the API is, as the browser sees it: the page's path less "/ui" (an API Gateway stage, a
// custom domain's base path, or nothing behind the signing proxy and locally).
const ROOT = location.pathname.replace(/\/ui\/?$/, "");
const KEY_STORE = "fastlane-api-key";
const CLIENT_HEADER = "X-Fastlane-Client";
const STATUSES = ["enqueued", "pulling", "running", "done", "failed", "timedout", "expired", "stopped"];
const FINAL = new Set(["done", "failed", "timedout", "expired", "stopped"]);
const FAILED = ["failed", "timedout"];
const SINCE = [["1h", "the last hour", 3600], ["6h", "the last 6 hours", 21600], ["1d", "the last day", 86400],
  ["7d", "the last 7 days", 604800], ["30d", "the last 30 days", 2592000], ["", "any time", 0]];
const LAST_LINES = 20;
const enc = encodeURIComponent;

// --- building the page ----------------------------------------------------------------------

function h(tag, props, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) { continue; }
    if (name === "class") { element.className = value; }
    else if (name.startsWith("on")) { element.addEventListener(name.slice(2), value); }
    else { element.setAttribute(name, value === true ? "" : String(value)); }
  }
  add(element, children);
  return element;
}

function add(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) { continue; }
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

// Replaces an element's content only when what it shows changed, so a refresh every few seconds
// keeps the reader's focus, selection and scroll where they were.
function fill(element, data, build) {
  const key = JSON.stringify(data);
  if (element.dataset.key === key) { return; }
  element.dataset.key = key;
  element.replaceChildren(...[build(data)].flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
}

function section(title, note) {
  const body = h("div", {class: "body"});
  const heading = h("h2", {}, title);
  const box = h("section", {"aria-label": title}, heading, note ? h("p", {class: "muted"}, note) : null, body);
  box.body = body;
  return box;
}

function table(columns, rows, empty) {
  if (!rows.length) { return h("p", {class: "empty"}, empty || "Nothing to show."); }
  return h("div", {class: "scroll"}, h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {scope: "col"}, c)))),
    h("tbody", {}, rows.map((cells) => (cells instanceof Node ? cells : h("tr", {}, cells.map((c) => h("td", {}, c))))))));
}

function pairs(entries) {
  return h("dl", {class: "pairs"}, entries.filter((e) => e && e[1] !== undefined).map(([name, value]) => [
    h("dt", {}, name), h("dd", {}, value === null || value === "" ? h("span", {class: "muted"}, "—") : value)]));
}

function badge(status) {
  return h("span", {class: `status s-${status || "none"}`}, status || "not run");
}

function code(text) { return h("code", {}, text); }

function json(value) { return h("pre", {class: "json"}, JSON.stringify(value, null, 2)); }

function pager(data, hrefFor) {
  if (!data || (!data.hasPrev && !data.hasNext)) {
    return data && data.total !== undefined ? h("p", {class: "muted"}, `${data.total} in all`) : null;
  }
  return h("nav", {class: "pager", "aria-label": "Pages"},
    data.hasPrev ? h("a", {href: hrefFor(data.page - 1), rel: "prev"}, "← previous") : h("span", {class: "muted"}, "← previous"),
    h("span", {}, `page ${data.page} of ${data.pages} (${data.total} in all)`),
    data.hasNext ? h("a", {href: hrefFor(data.page + 1), rel: "next"}, "next →") : h("span", {class: "muted"}, "next →"));
}

// --- words and numbers ----------------------------------------------------------------------

function pad(n) { return String(n).padStart(2, "0"); }

function when(epoch) {
  if (epoch === null || epoch === undefined) { return h("span", {class: "muted"}, "—"); }
  const d = new Date(epoch * 1000);
  const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return h("time", {datetime: d.toISOString(), title: `${d.toISOString()} (${relative(epoch)})`}, text);
}

function span(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 60) { return `${seconds}s`; }
  if (seconds < 3600) { return `${Math.floor(seconds / 60)}m ${pad(seconds % 60)}s`; }
  if (seconds < 86400) { return `${Math.floor(seconds / 3600)}h ${pad(Math.floor(seconds / 60) % 60)}m`; }
  return `${Math.floor(seconds / 86400)}d ${Math.floor(seconds / 3600) % 24}h`;
}

function relative(epoch) {
  const delta = epoch - Date.now() / 1000;
  return delta >= 0 ? `in ${span(delta)}` : `${span(-delta)} ago`;
}

function duration(execution) {
  if (!execution.startedAt) { return h("span", {class: "muted"}, "—"); }
  if (execution.finishedAt) { return span(execution.finishedAt - execution.startedAt); }
  if (FINAL.has(execution.status)) { return h("span", {class: "muted"}, "—"); }
  return h("span", {class: "elapsed", "data-since": execution.startedAt}, `${span(Date.now() / 1000 - execution.startedAt)} so far`);
}

// The durations of running executions count on between two reads of the API.
setInterval(() => {
  for (const element of document.querySelectorAll(".elapsed[data-since]")) {
    element.textContent = `${span(Date.now() / 1000 - Number(element.dataset.since))} so far`;
  }
}, 1000);

function exitCode(execution) {
  const value = execution.exitCode;
  return value === null || value === undefined ? h("span", {class: "muted"}, "—")
    : h("span", {class: value === 0 ? "exit ok" : "exit bad"}, String(value));
}

function sinceSeconds(name) {
  const found = SINCE.find(([key]) => key === name);
  return found ? found[2] : 0;
}

function lastLines(text, count) {
  const lines = (text || "").replace(/\n$/, "").split("\n");
  return lines.slice(-count).join("\n");
}

// --- links (built from ids, never taken from answers) --------------------------------------

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "" && !(name === "page" && Number(value) === 1)) {
      search.set(name, value);
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

const link = {
  tasks: (params) => `#/tasks${query(params)}`,
  task: (task, params) => `#/task/${enc(task)}${query(params)}`,
  job: (task, job, params) => `#/job/${enc(task)}/${enc(job)}${query(params)}`,
  execution: (task, job, execution) => `#/execution/${enc(task)}/${enc(job)}/${enc(execution)}`,
  executions: (params) => `#/executions${query(params)}`,
};

const path = {
  task: (task) => `/tasks/${enc(task)}`,
  job: (task, job) => `/tasks/${enc(task)}/jobs/${enc(job)}`,
  execution: (task, job, execution) => `/tasks/${enc(task)}/jobs/${enc(job)}/executions/${enc(execution)}`,
};

// The ids in one of the service's execution URLs (a bulk retry's answer names new executions so).
function idsOf(url) {
  const found = /\/tasks\/([^/]+)\/jobs\/([^/]+)\/executions\/([^/?#]+)/.exec(url || "");
  return found ? found.slice(1).map(decodeURIComponent) : null;
}

function taskLink(task) { return h("a", {href: link.task(task)}, task); }
function jobLink(task, job) { return h("a", {href: link.job(task, job), class: "id"}, job); }
function executionLink(task, job, execution) {
  return h("a", {href: link.execution(task, job, execution), class: "id"}, execution);
}

// --- the API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function apiKey() { return config.apiKey ? sessionStorage.getItem(KEY_STORE) : null; }

// One call of the API. Actions go as JSON with the client header, which no page of another site
// can send; with API keys the tab's key goes along. Basic credentials are the browser's own.
async function api(method, target, body) {
  const headers = {Accept: "application/json"};
  const key = apiKey();
  if (key) { headers["x-api-key"] = key; }
  const init = {method, headers, cache: "no-store", credentials: "same-origin"};
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers[CLIENT_HEADER] = "ui";
    init.body = JSON.stringify(body || {});
  }
  let response;
  try {
    response = await fetch(ROOT + target, init);
  } catch (error) {
    throw new ApiError(0, "The service could not be reached; is it running?");
  }
  const text = await response.text();
  let data = null;
  if ((response.headers.get("Content-Type") || "").includes("json")) {
    try { data = JSON.parse(text); } catch (error) { data = null; }
  }
  if (!response.ok) {
    const message = (data && (data.error || data.message)) || `${response.status} ${response.statusText}`;
    if (config.apiKey && response.status === 403 && data && ["gateway", "route"].includes(data.operation)) {
      sessionStorage.removeItem(KEY_STORE);
      askForKey(`The service refused the key: ${message}`);
    }
    throw new ApiError(response.status, message, data);
  }
  return {data, text, headers: response.headers, status: response.status};
}

async function read(target) { return (await api("GET", target)).data; }

// Up to `limit` calls at once, in order.
async function each(items, limit, call) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const index = next++;
      try { results[index] = {value: await call(items[index])}; } catch (error) { results[index] = {error}; }
    }
  }
  await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker));
  return results;
}

// --- views and routing ---------------------------------------------------------------------

const main = document.getElementById("view");
let current = null;

class View {
  constructor(params) {
    this.params = params;
    this.timers = new Set();
    this.cleanups = [];
    this.left = false;
    this.problems = h("div", {class: "problems", role: "alert"});
  }

  // Calls `refresh` every `ms` after the previous call ended, while this view is shown and the
  // tab is visible.
  every(ms, refresh) {
    const tick = async () => {
      this.timers.delete(handle);
      if (this.left) { return; }
      if (!document.hidden) { await this.guard(refresh); }
      if (!this.left) { handle = setTimeout(tick, ms); this.timers.add(handle); }
    };
    let handle = setTimeout(tick, ms);
    this.timers.add(handle);
  }

  async guard(call) {
    try {
      await call();
      this.problems.replaceChildren();
    } catch (error) {
      this.problem(error);
    }
  }

  problem(error) {
    if (this.left) { return; }
    const text = error instanceof ApiError ? error.message : `Unexpected error: ${error.message || error}`;
    this.problems.replaceChildren(h("p", {}, text));
  }

  onLeave(cleanup) { this.cleanups.push(cleanup); }

  leave() {
    this.left = true;
    for (const handle of this.timers) { clearTimeout(handle); }
    for (const cleanup of this.cleanups) { cleanup(); }
  }
}

function title(text, ...crumbs) {
  document.title = `${text} · fastlane`;
  return h("header", {class: "title"},
    crumbs.length ? h("nav", {class: "crumbs", "aria-label": "Breadcrumbs"}, crumbs.map((c) => [c, " / "])) : null,
    h("h1", {}, text));
}

const ROUTES = [
  [/^\/?$/, "overview", () => overview],
  [/^\/tasks$/, "tasks", () => tasksPage],
  [/^\/task\/([^/]+)$/, "tasks", () => taskPage],
  [/^\/job\/([^/]+)\/([^/]+)$/, "tasks", () => jobPage],
  [/^\/execution\/([^/]+)\/([^/]+)\/([^/]+)$/, "tasks", () => executionPage],
  [/^\/executions$/, "executions", () => executionsPage],
];

function route() {
  if (current) { current.leave(); current = null; }
  const hash = location.hash.replace(/^#/, "") || "/";
  const [where, search] = hash.split("?", 2);
  const params = new URLSearchParams(search || "");
  for (const link of document.querySelectorAll("[data-nav]")) { link.removeAttribute("aria-current"); }
  if (config.apiKey && !apiKey()) { askForKey(); return; }
  for (const [pattern, nav, page] of ROUTES) {
    const found = pattern.exec(where);
    if (!found) { continue; }
    const navLink = document.querySelector(`[data-nav="${nav}"]`);
    if (navLink) { navLink.setAttribute("aria-current", "page"); }
    const view = current = new View(params);
    main.replaceChildren();
    page()(view, ...found.slice(1).map(decodeURIComponent)).catch((error) => view.problem(error));
    return;
  }
  main.replaceChildren(title("Not found"), h("p", {}, "There is no such page here. ", h("a", {href: "#/"}, "Overview")));
}

function show(view, ...children) {
  if (view.left) { return; }
  main.replaceChildren(view.problems, ...children.filter(Boolean));
}

// --- the API key (API Gateway's keys: the page asks once per tab) ---------------------------

function askForKey(why) {
  if (current) { current.leave(); current = null; }
  const input = h("input", {type: "password", id: "api-key", name: "key", autocomplete: "off", required: true});
  const form = h("form", {class: "key", onsubmit: (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORE, input.value.trim());
    showSession();
    route();
  }}, h("label", {for: "api-key"}, "API key"), input, h("button", {type: "submit"}, "Use this key"));
  document.title = "API key · fastlane";
  main.replaceChildren(...[h("h1", {}, "API key"),
    why ? h("p", {class: "problems", role: "alert"}, why) : null,
    h("p", {}, "This service needs an API key (the x-api-key header). It is kept in this tab only, until the tab closes."),
    form].filter(Boolean));
  showSession();
  input.focus();
}

function showSession() {
  const box = document.getElementById("session");
  if (!config.apiKey) { box.replaceChildren(); return; }
  box.replaceChildren(apiKey() ? h("button", {type: "button", class: "link", onclick: () => {
    sessionStorage.removeItem(KEY_STORE);
    askForKey();
  }}, "Forget the API key") : "");
}

// --- actions -------------------------------------------------------------------------------

// A button that calls the API; what `call` answers is said in the view's notice.
function action(label, notice, call, options = {}) {
  const button = h("button", {type: "button", class: options.danger ? "danger" : null, disabled: options.disabled,
    "data-action": options.name || label, onclick: async () => {
      if (options.confirm && !window.confirm(options.confirm)) { return; }
      button.disabled = true;
      notice.replaceChildren(h("span", {class: "muted"}, `${label}…`));
      try {
        const said = await call();
        notice.replaceChildren(...[said].flat());
      } catch (error) {
        notice.replaceChildren(h("span", {class: "bad"}, `${label} failed: ${error.message}`));
      } finally {
        button.disabled = false;
      }
    }}, label);
  return button;
}

function notice() { return h("p", {class: "notice", role: "status", "aria-live": "polite"}); }

// --- overview: the farm, and the recent failures -------------------------------------------

async function overview(view) {
  const failures = section("Recent failures", "Failed or timed out in the last day, newest first: the exit code, the reason, and a link to the output.");
  const counts = section("Executions by status");
  const pools = section("Pools");
  const keys = section("Concurrency keys");
  const queues = section("Queues");
  const scheduled = section("Scheduled jobs");
  const about = h("p", {class: "muted about"});
  const updated = h("span", {class: "muted updated", "aria-live": "off"});
  show(view, title("Overview"), updated, failures, h("div", {class: "grid"}, counts, pools, keys, queues), scheduled, about);

  async function refresh() {
    const since = Math.floor(Date.now() / 1000) - 86400;
    const [status, failed] = await Promise.allSettled([
      read("/status"), read(`/executions${query({status: FAILED.join(","), since})}`)]);
    if (view.left) { return; }
    if (failed.status === "fulfilled") {
      fill(failures.body, failed.value, (data) => [table(["When", "Task", "Execution", "Status", "Exit code", "Reason"],
        (data.items || []).slice(0, 10).map((e) => [when(e.statusAt || e.finishedAt || e.createdAt), taskLink(e.taskId),
          executionLink(e.taskId, e.jobId, e.executionId), badge(e.status), exitCode(e), e.reason || ""]),
        "No failures in the last day."),
      h("p", {}, h("a", {href: link.executions({status: FAILED.join(","), since: "1d"})}, `All failures of the last day (${data.total ?? (data.items || []).length}${data.totalCapped ? "+" : ""}) →`))]);
    } else {
      fill(failures.body, {error: failed.reason.message}, (d) => h("p", {class: "bad"}, `Could not list the executions: ${d.error}`));
    }
    if (status.status === "rejected") { throw status.reason; }
    const farm = status.value;
    fill(counts.body, farm.executions, (byStatus) => h("ul", {class: "counts"}, STATUSES.map((name) => h("li", {},
      h("a", {href: link.executions({status: name}), class: `count s-${name}`},
        h("span", {class: "n"}, String(byStatus[name] ?? 0)), h("span", {}, name))))));
    fill(pools.body, farm.pools, (list) => table(["Pool", "Matches", "Running / limit", ""], list.map((p) => [
      p.name, code(p.match || ""), `${p.running} / ${p.maxRunning ?? "∞"}`,
      p.maxRunning ? h("meter", {min: 0, max: p.maxRunning, value: p.running, "aria-label": `${p.name} in use`}) : ""]),
    "No pools."));
    fill(keys.body, farm.concurrency, (list) => table(["Key", "Running / limit", ""], list.map((k) => [
      code(k.key), `${k.running} / ${k.limit}`, h("meter", {min: 0, max: k.limit, value: k.running, "aria-label": `${k.key} in use`})]),
    "No concurrency key is in use."));
    fill(queues.body, farm.queues, (all) => table(["Queue", "Visible", "In flight", "Delayed"],
      Object.entries(all).map(([name, depth]) => {
        const dead = /dead/i.test(name);
        const row = h("tr", {class: dead && depth.visible > 0 ? "warn" : null},
          h("td", {}, name, dead ? h("span", {class: "tag"}, "dead-letter") : null),
          h("td", {}, String(depth.visible ?? "—")), h("td", {}, String(depth.inFlight ?? "—")),
          h("td", {}, String(depth.delayed ?? "—")));
        return row;
      })));
    fill(scheduled.body, farm.scheduled, (s) => [h("p", {class: "muted"}, `${s.count} scheduled job(s).`),
      table(["Task", "Job", "Schedule", "Next run", "State"], (s.jobs || []).map((j) => [taskLink(j.taskId),
        jobLink(j.taskId, j.jobId), scheduleSummary(j), when(j.nextRunAt ?? (j.nextRuns || [])[0]),
        j.paused ? h("span", {class: "tag warn"}, "paused") : "active"]), "No job is scheduled.")]);
    const notes = farm.notifications || {};
    fill(about, [farm.version, farm.backend, farm.isolation, notes], () => [
      `fastlane ${farm.version} · backend ${farm.backend} · ${farm.isolation}`,
      notes.webhooks ? ` · webhooks ${notes.webhooks}, mail ${notes.mail}` : "",
      ...(notes.warnings || []).map((w) => h("span", {class: "bad"}, ` · ${w}`))]);
    updated.textContent = `updated ${new Date().toLocaleTimeString()} · refreshed every 3 s`;
  }
  await view.guard(refresh);
  view.every(3000, refresh);
}

function scheduleSummary(schedule) {
  if (!schedule || !schedule.type) { return h("span", {class: "muted"}, "runs once, now"); }
  if (schedule.type === "cron") {
    return [code(schedule.cron || "cron"), schedule.timezone ? ` (${schedule.timezone})` : ""];
  }
  return ["once", schedule.startAt ? [" at ", when(schedule.startAt)] : ""];
}

// --- tasks ---------------------------------------------------------------------------------

async function tasksPage(view) {
  const prefix = view.params.get("prefix") || "";
  const page = Number(view.params.get("page") || 1);
  const input = h("input", {type: "search", id: "prefix", name: "prefix", value: prefix, autocomplete: "off"});
  const form = h("form", {class: "filters", role: "search", onsubmit: (event) => {
    event.preventDefault();
    location.hash = link.tasks({prefix: input.value.trim()});
  }}, h("label", {for: "prefix"}, "Task id starts with"), input, h("button", {type: "submit"}, "Filter"),
  prefix ? h("a", {href: link.tasks({})}, "clear") : null);
  const list = h("div");
  show(view, title("Tasks"), form, list);

  async function refresh() {
    const data = await read(`/tasks${query({prefix, page})}`);
    fill(list, data, (d) => [table(["Task", "Jobs", "Created", "Last change"], d.items.map((t) => [
      taskLink(t.taskId), String(t.jobsCount), when(t.createdAt), when(t.lastModifiedAt)]),
    prefix ? `No task starts with “${prefix}”.` : "No tasks yet: post a job to create one."),
    pager(d, (n) => link.tasks({prefix, page: n}))]);
  }
  await view.guard(refresh);
  view.every(5000, refresh);
}

// --- a task's jobs -------------------------------------------------------------------------

async function taskPage(view, taskId) {
  const page = Number(view.params.get("page") || 1);
  const list = h("div");
  const overviewLink = h("a", {href: "#/"}, "Overview");
  show(view, title(`Task ${taskId}`, overviewLink, h("a", {href: link.tasks({})}, "Tasks")), list);

  async function refresh() {
    const task = await read(`${path.task(taskId)}${query({page})}`);
    const jobs = await each(task.jobs, 6, (j) => read(`${path.job(taskId, j.id)}`));
    const rows = task.jobs.map((j, i) => {
      const details = jobs[i].value;
      if (!details) { return {id: j.id, createdAt: j.createdAt, error: jobs[i].error.message}; }
      const job = details.job;
      const latest = (job.executions || [])[0];
      return {id: j.id, createdAt: j.createdAt, image: job.image, command: job.command, schedule: job.schedule,
        latest: latest ? {id: latest.executionId, status: latest.status, exitCode: latest.exitCode} : null,
        count: job.executionCount};
    });
    fill(list, {task: {...task, jobs: undefined}, rows}, () => [
      pairs([["Created", when(task.createdAt)], ["Last change", when(task.lastModifiedAt)]]),
      table(["Job", "Command", "Latest execution", "Exit code", "Executions", "Schedule", "Created"], rows.map((r) => r.error
        ? [jobLink(taskId, r.id), h("span", {class: "bad"}, r.error), "", "", "", "", when(r.createdAt)]
        : [jobLink(taskId, r.id), [code(r.command), h("div", {class: "muted"}, r.image)],
          r.latest ? [badge(r.latest.status), " ", executionLink(taskId, r.id, r.latest.id)] : badge(null),
          r.latest ? exitCode(r.latest) : "", String(r.count), scheduleState(r.schedule), when(r.createdAt)]),
      "This task has no jobs."),
      pager(task, (n) => link.task(taskId, {page: n}))]);
  }
  await view.guard(refresh);
  view.every(10000, refresh);
}

function scheduleState(schedule) {
  if (!schedule) { return h("span", {class: "muted"}, "—"); }
  const next = (schedule.nextRuns || [])[0] ?? schedule.nextRunAt;
  return [scheduleSummary(schedule), schedule.paused ? [" ", h("span", {class: "tag warn"}, "paused")] : "",
    next ? [h("div", {class: "muted"}, "next ", when(next))] : ""];
}

// --- a job ---------------------------------------------------------------------------------

async function jobPage(view, taskId, jobId) {
  const page = Number(view.params.get("page") || 1);
  const said = notice();
  const actions = h("div", {class: "actions"});
  const spec = section("Specification", "As the API shows it: values of secret-looking variables and webhook headers are ***.");
  const schedule = section("Schedule");
  const executions = section("Executions", "Newest first.");
  show(view, title(`Job ${jobId}`, h("a", {href: "#/"}, "Overview"), h("a", {href: link.tasks({})}, "Tasks"),
    taskLink(taskId)), actions, said, schedule, executions, spec);
  const jobPath = path.job(taskId, jobId);

  function enqueued(data, verb) {
    return data.executionId
      ? [`${verb}: execution `, executionLink(taskId, jobId, data.executionId), " enqueued."]
      : `${verb}: done.`;
  }

  async function refresh() {
    const details = await read(`${jobPath}${query({page})}`);
    const job = details.job;
    const s = job.schedule;
    fill(actions, {scheduled: job.scheduled, schedule: Boolean(s), paused: s && s.paused, pending: s && s.pending}, () => [
      action(job.scheduled ? "Run now" : "Retry", said, async () => {
        const answer = await api("POST", `${jobPath}/retry`);
        await view.guard(refresh);
        return enqueued(answer.data, job.scheduled ? "Run now" : "Retry");
      }, {name: job.scheduled ? "run-now" : "retry"}),
      s ? action("Pause", said, async () => {
        await api("POST", `${jobPath}/pause`);
        await view.guard(refresh);
        return "Paused: the schedule fires nothing until it is resumed.";
      }, {name: "pause", disabled: s.paused || !s.pending}) : null,
      s ? action("Resume", said, async () => {
        await api("POST", `${jobPath}/resume`);
        await view.guard(refresh);
        return "Resumed: the next run is computed from now.";
      }, {name: "resume", disabled: !s.paused}) : null,
      action("Stop", said, async () => {
        await api("POST", `${jobPath}/stop`);
        await view.guard(refresh);
        return "Stopped: its running execution, its schedule and its pending retries.";
      }, {name: "stop", danger: true, confirm: "Stop this job: its running execution, its schedule and its pending retries?"}),
      h("a", {href: `${ROOT}${jobPath}/stream`, target: "_blank", rel: "noopener", class: "button-like"}, "Live log page ↗")]);
    fill(schedule.body, s, () => s ? pairs([
      ["Kind", s.type === "cron" ? "cron" : "once"],
      s.cron ? ["Cron", [code(s.cron), s.timezone ? ` (${s.timezone})` : ""]] : null,
      s.startAt ? ["Starts at", when(s.startAt)] : null,
      ["State", s.paused ? [h("span", {class: "tag warn"}, "paused"), " since ", when(s.pausedAt)]
        : (s.pending ? "active" : (s.type === "cron" ? "stopped: no more runs" : "no run pending"))],
      ["Next runs", (s.nextRuns || []).length ? h("ol", {class: "runs"}, s.nextRuns.map((t) => h("li", {}, when(t), " ", h("span", {class: "muted"}, `(${relative(t)})`))))
        : h("span", {class: "muted"}, s.paused ? "none while paused" : "none")],
      ["Skipped ticks", String(s.skippedTicks ?? 0)],
      s.lastSkippedAt ? ["Last skipped", [when(s.lastSkippedAt), s.lastSkipReason ? `: ${s.lastSkipReason}` : ""]] : null,
      s.overlap ? ["Overlap", s.overlap] : null,
      s.jitter ? ["Jitter", `${s.jitter} s`] : null,
      s.catchupWindow !== undefined ? ["Catch-up window", `${s.catchupWindow} s`] : null,
      s.waitingTick ? ["Waiting tick", when(s.waitingTick)] : null,
    ].filter(Boolean)) : h("p", {class: "muted"}, "No schedule: the job runs when it is posted or retried."));
    fill(executions.body, {items: job.executions, page: details.page, pages: details.pages, total: details.total,
      hasNext: details.hasNext, hasPrev: details.hasPrev}, (d) => [
      table(["Execution", "Status", "Created", "Duration", "Exit code", "Reason"], d.items.map((e) => [
        executionLink(taskId, jobId, e.executionId), badge(e.status), when(e.createdAt), duration(e), exitCode(e),
        e.reason || e.waitingFor || ""]), "The job has not run yet."),
      pager(d, (n) => link.job(taskId, jobId, {page: n}))]);
    const m = job.metadata || {};
    const known = new Set(["envs", "retries", "retry_count", "retry", "timeout", "expiration", "notify", "webhooks", "custom", "cron"]);
    fill(spec.body, job, () => [pairs([
      ["Image", code(job.image)], ["Command", code(job.command)],
      ["Created", when(job.createdAt)], ["Last change", when(job.lastModifiedAt)],
      ["Requested from", job.requestIPAddress], ["Executions", String(job.executionCount)],
      ["Retries", m.retry ? json(m.retry) : `${m.retry_count ?? 0} of ${m.retries ?? 0} used`],
      ["Timeout", m.timeout ? `${m.timeout} s` : null], ["Expiration", m.expiration ? when(m.expiration) : null],
    ]), h("h3", {}, "Environment"),
    table(["Name", "Value"], Object.entries(m.envs || {}).map(([k, v]) => [code(k), code(v)]), "No variables."),
    h("h3", {}, "Notifications"),
    Object.keys(m.notify || {}).length || Object.keys(m.webhooks || {}).length
      ? pairs([["E-mail", Object.keys(m.notify || {}).length ? json(m.notify) : null],
        ["Webhooks", Object.keys(m.webhooks || {}).length ? json(m.webhooks) : null]])
      : h("p", {class: "muted"}, "None."),
    h("h3", {}, "Metadata"), Object.keys(m.custom || {}).length ? json(m.custom) : h("p", {class: "muted"}, "None."),
    Object.keys(m).some((k) => !known.has(k)) ? [h("h3", {}, "Other settings"),
      json(Object.fromEntries(Object.entries(m).filter(([k]) => !known.has(k))))] : null]);
  }
  await view.guard(refresh);
  view.every(3000, refresh);
}

// --- an execution --------------------------------------------------------------------------

async function executionPage(view, taskId, jobId, executionId) {
  const said = notice();
  const actions = h("div", {class: "actions"});
  const summary = h("div", {class: "summary"});
  const tail = section("Last lines", `The end of its output, as the execution's details hold it (the last ${LAST_LINES} lines of each stream).`);
  const live = section("Live output", "Followed over the live-log websocket while the execution runs.");
  const full = section("Full output", "Page by page, as the stdout and stderr routes serve it.");
  const timeline = section("Timeline", "Every change of state and every wait, oldest first.");
  const notifications = section("Notifications sent");
  show(view, title(`Execution ${executionId}`, h("a", {href: "#/"}, "Overview"), taskLink(taskId), jobLink(taskId, jobId)),
    summary, actions, said, tail, live, full, timeline, notifications);
  const executionPath = path.execution(taskId, jobId, executionId);
  let follower = null;
  let pages = null;
  view.onLeave(() => { if (follower) { follower.close(); } });

  async function refresh() {
    const details = await read(executionPath);
    const e = details.execution;
    const ended = FINAL.has(e.status);
    fill(summary, e, () => pairs([
      ["Status", badge(e.status)], ["Exit code", exitCode(e)],
      ["Reason", e.reason || (e.waitingFor ? `waiting: ${e.waitingFor}` : null)],
      ["Created", when(e.createdAt)], ["Started", when(e.startedAt)], ["Finished", when(e.finishedAt)],
      ["Duration", duration(e)], ["Image", code(e.image)], ["Command", code(e.command)],
      e.concurrency ? ["Concurrency", json(e.concurrency)] : null,
      Object.keys(e.metadata || {}).length ? ["Metadata", json(e.metadata)] : null,
      e.outputError ? ["Output", h("span", {class: "bad"}, e.outputError)] : null,
    ].filter(Boolean)));
    fill(actions, {ended}, () => [
      ended ? null : action("Stop", said, async () => {
        await api("POST", `${executionPath}/stop`);
        await view.guard(refresh);
        return "Stopped.";
      }, {name: "stop", danger: true, confirm: "Stop this execution? The job's schedule stays."}),
      action("Retry the job", said, async () => {
        const answer = await api("POST", `${path.job(taskId, jobId)}/retry`);
        return answer.data.executionId
          ? ["Retry: execution ", executionLink(taskId, jobId, answer.data.executionId), " enqueued."] : "Retry: done.";
      }, {name: "retry"}),
      h("a", {href: `${ROOT}${executionPath}/stream`, target: "_blank", rel: "noopener", class: "button-like"}, "Live log page ↗")]);
    fill(tail.body, {log: e.log, error: e.error, cut: [e.logTruncated, e.errorTruncated]}, () => [
      h("h3", {}, "stdout"), e.log ? h("pre", {class: "out", "data-stream": "stdout"}, lastLines(e.log, LAST_LINES)) : h("p", {class: "muted"}, "Nothing."),
      h("h3", {}, "stderr"), e.error ? h("pre", {class: "out err", "data-stream": "stderr"}, lastLines(e.error, LAST_LINES)) : h("p", {class: "muted"}, "Nothing.")]);
    fill(timeline.body, e.timeline === undefined ? null : e.timeline, (entries) => entries === null
      ? h("p", {class: "muted"}, "This service does not report timelines.")
      : timelineTable(entries));
    fill(notifications.body, e.notifications || [], (sent) => table(["When", "Kind", "Event", "To", "Attempt", "Result"],
      sent.map((n) => [when(n.at), n.kind, n.event, n.to ? n.to.join(", ") : (n.url || ""), String(n.attempt ?? ""),
        n.ok ? h("span", {class: "ok"}, n.statusCode ? `ok (${n.statusCode})` : "ok")
          : h("span", {class: "bad"}, [n.error || (n.statusCode ? `HTTP ${n.statusCode}` : "failed"),
            n.retryIn ? ` · again in ${span(n.retryIn)}` : ""].join(""))]),
      "None sent (the job asks for none, or its execution has not ended)."));
    if (!follower) {
      follower = new LiveLog(live.body, taskId, jobId, executionId, () => view.guard(refresh));
      if (ended) { follower.idle("The execution has ended: its whole output is below."); } else { follower.start(); }
    }
    if (!pages && ended) {
      pages = [new OutputPages(executionPath, "stdout"), new OutputPages(executionPath, "stderr")];
      full.body.replaceChildren(...pages.map((p) => p.element));
      for (const p of pages) { p.more(); }
    } else if (!pages) {
      full.body.replaceChildren(h("p", {class: "muted"}, "Shown here once the execution has ended; its live output is above."));
    }
    return ended;
  }
  let ended = await refresh().catch((error) => { view.problem(error); return false; });
  let last = Date.now();
  view.every(2000, async () => {
    // Every 2 s while it may change quickly; after its end every 10 s (notifications, retries of
    // webhooks and the timeline's last entries still come).
    if (ended && Date.now() - last < 10000) { return; }
    last = Date.now();
    ended = await refresh();
  });
}

function timelineTable(entries) {
  if (!entries.length) { return h("p", {class: "muted"}, "No entries yet."); }
  const first = entries[0].at;
  return table(["When", "", "Status", "Reason", "Details"], entries.map((entry) => {
    const rest = Object.entries(entry).filter(([k]) => !["at", "status", "reason"].includes(k));
    return [when(entry.at), h("span", {class: "muted"}, `+${span(entry.at - first)}`), badge(entry.status), entry.reason || "",
      rest.length ? h("dl", {class: "details"}, rest.map(([k, v]) => [h("dt", {}, k),
        h("dd", {}, /At$/.test(k) && typeof v === "number" ? when(v) : (typeof v === "object" ? JSON.stringify(v) : String(v)))]))
        : ""];
  }));
}

// One stream of an execution's output, page by page (the route's Fastlane-Next-Token).
class OutputPages {
  constructor(executionPath, which) {
    this.target = `${executionPath}/${which}`;
    this.which = which;
    this.token = null;
    this.count = 0;
    this.text = h("pre", {class: `out full ${which === "stderr" ? "err" : ""}`, "data-stream": which, hidden: true});
    this.state = h("span", {class: "muted"});
    this.button = h("button", {type: "button", "data-action": `more-${which}`, onclick: () => this.more()}, "Next page");
    this.button.hidden = true;
    this.element = h("div", {class: "pages"}, h("h3", {}, which), this.text, h("div", {class: "actions"}, this.button, this.state));
  }

  async more() {
    this.button.disabled = true;
    try {
      const answer = await api("GET", this.target + query({token: this.token}));
      this.count += 1;
      this.text.append(answer.text);
      this.text.hidden = !this.text.textContent;
      this.token = answer.headers.get("Fastlane-Next-Token");
      this.button.hidden = !this.token;
      const size = this.text.textContent.length;
      this.state.textContent = size ? `${this.count} page(s), ${size} characters${this.token ? "; more to read" : ""}` : "Nothing.";
    } catch (error) {
      this.state.textContent = `Could not read the ${this.which}: ${error.message}`;
    } finally {
      this.button.disabled = false;
    }
  }
}

// --- live output over the websocket (docs/live-logs.md), as the stream pages follow it ------

class LiveLog {
  constructor(box, taskId, jobId, executionId, ended) {
    this.ids = {taskId, jobId, executionId};
    this.ended = ended;
    this.state = h("p", {class: "muted live-state", role: "status"}, "not connected");
    this.exit = h("p", {class: "live-exit"});
    this.out = h("div", {class: "out live", "aria-live": "polite", tabindex: "0", "aria-label": "live output"});
    box.replaceChildren(this.state, this.out, this.exit);
    this.after = "";
    this.partial = {};
    this.backoff = 1000;
    this.socket = null;
    this.token = null;
    this.expiresAt = 0;
    this.renewable = true;
    this.closed = false;
    this.timer = null;
    this.pinger = null;
  }

  idle(text) { this.state.textContent = text; this.out.hidden = true; }

  say(text) { this.state.textContent = text; }

  async start() {
    if (!config.websocketUrl) { this.say("Live output is not configured on this service (WEBSOCKET_URL is not set)."); return; }
    this.pinger = setInterval(() => {
      if (this.socket && this.socket.readyState === 1) { this.socket.send('{"action":"ping"}'); }
      this.renew();
    }, 60000);
    await this.connect();
  }

  // The websocket's token (docs/live-logs.md#authorisation): asked for over the API, which this
  // page may call; renewed over the socket, as the stream pages do.
  async freshToken() {
    const {taskId, jobId, executionId} = this.ids;
    const answer = await api("POST", `${path.execution(taskId, jobId, executionId)}/stream/token`);
    this.token = answer.data.token;
    this.expiresAt = answer.data.expiresAt || 0;
    this.renewable = true;
  }

  address() {
    const {taskId, jobId, executionId} = this.ids;
    const params = {taskId, jobId, executionId, after: this.after, token: this.token};
    const search = Object.entries(params).filter(([, v]) => v).map(([k, v]) => `${k}=${enc(v)}`).join("&");
    return config.websocketUrl + (config.websocketUrl.includes("?") ? "&" : "?") + search;
  }

  renew() {
    if (this.renewable && this.token && this.socket && this.socket.readyState === 1 && Date.now() / 1000 >= this.expiresAt - 120) {
      this.socket.send(JSON.stringify({action: "renew", token: this.token}));
    }
  }

  atBottom() { return this.out.scrollTop + this.out.clientHeight >= this.out.scrollHeight - 24; }

  lines(stream, items, cut) {
    const follow = this.atBottom();
    items.forEach((line, i) => {
      let row = this.partial[stream];
      if (row) { this.partial[stream] = null; } else {
        row = h("div", {class: `line ${stream === "stderr" ? "err" : ""}`, "data-stream": stream});
        this.out.append(row);
      }
      row.textContent += line;
      if (cut && i === items.length - 1) { this.partial[stream] = row; }
    });
    if (follow) { this.out.scrollTop = this.out.scrollHeight; }
  }

  dropPartial() {
    for (const row of Object.values(this.partial)) { if (row) { row.remove(); } }
    this.partial = {};
  }

  later(seconds) {
    if (this.closed) { return; }
    this.say(`reconnecting in ${Math.round(seconds)} s`);
    this.timer = setTimeout(() => this.connect(), seconds * 1000);
  }

  async connect() {
    if (this.closed) { return; }
    if (!this.token || Date.now() / 1000 >= this.expiresAt - 5) {
      try { await this.freshToken(); } catch (error) {
        this.say(`Live output unavailable: ${error.message}`);
        this.backoff = Math.min(this.backoff * 2, 30000);
        this.later(this.backoff / 1000);
        return;
      }
    }
    if (this.closed) { return; }
    let closing = null;
    let retryAfter = null;
    this.say("connecting");
    const socket = this.socket = new WebSocket(this.address());
    socket.onopen = () => { this.backoff = 1000; this.say("connected"); this.renew(); };
    socket.onmessage = (message) => {
      let frame;
      try { frame = JSON.parse(message.data); } catch (error) { return; }
      if (frame.type === "subscribed") {
        this.say(`following: execution ${frame.status || "waiting"}`);
      } else if (frame.type === "output") {
        this.lines(frame.stream, frame.lines || [], frame.partial === true);
        this.after = frame.position || this.after;
        this.say("streaming");
      } else if (frame.type === "end") {
        const shown = frame.exitCode === null || frame.exitCode === undefined ? "none" : String(frame.exitCode);
        this.exit.replaceChildren(`Ended ${frame.status}, exit code `,
          h("span", {class: frame.exitCode === 0 ? "exit ok" : "exit bad", "data-exit-code": shown}, shown),
          frame.error ? `: ${frame.error}` : "");
        this.ended();
      } else if (frame.type === "token") {
        this.token = frame.token;
        this.expiresAt = frame.expiresAt;
      } else if (frame.type === "error") {
        if (frame.field === "token") { this.renewable = false; }
        this.out.append(h("div", {class: "line note"}, `error: ${frame.error}`));
      } else if (frame.type === "close") {
        closing = frame.reason;
        retryAfter = frame.retryAfter;
      }
    };
    socket.onclose = (event) => {
      const reason = closing || event.reason;
      if (this.socket === socket) { this.socket = null; }
      if (this.closed) { return; }
      if (reason === "done") { this.say("done: the whole output was received"); return; }
      if (reason === "error") { this.say("stopped: see the error above"); return; }
      this.dropPartial();
      if (reason === "retry") { this.later(retryAfter || 2); return; }
      this.backoff = Math.min(this.backoff * 2, 30000);
      this.later(this.backoff / 1000);
    };
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    if (this.socket) { this.socket.close(); this.socket = null; }
  }
}

// --- executions across tasks ---------------------------------------------------------------

async function executionsPage(view) {
  const params = view.params;
  const chosen = (params.get("status") || FAILED.join(",")).split(",").filter((s) => STATUSES.includes(s));
  const since = params.has("since") ? params.get("since") : "";
  const prefix = params.get("task") || "";
  const page = Number(params.get("page") || 1);
  const boxes = STATUSES.map((name) => h("label", {class: "check"},
    h("input", {type: "checkbox", name: "status", value: name, checked: chosen.includes(name)}), ` ${name}`));
  const sinceSelect = h("select", {id: "since", name: "since"}, SINCE.map(([key, label]) =>
    h("option", {value: key, selected: key === since}, label)));
  const taskInput = h("input", {type: "search", id: "task-prefix", name: "task", value: prefix, autocomplete: "off"});
  const form = h("form", {class: "filters", role: "search", onsubmit: (event) => {
    event.preventDefault();
    const statuses = boxes.map((b) => b.firstChild).filter((b) => b.checked).map((b) => b.value);
    location.hash = link.executions({status: statuses.join(","), since: sinceSelect.value, task: taskInput.value.trim()});
  }}, h("fieldset", {}, h("legend", {}, "Status"), boxes),
  h("span", {class: "field"}, h("label", {for: "since"}, "Since"), sinceSelect),
  h("span", {class: "field"}, h("label", {for: "task-prefix"}, "Task id starts with"), taskInput),
  h("button", {type: "submit"}, "Show"));
  const said = notice();
  const selected = new Set();
  const retry = h("button", {type: "button", "data-action": "bulk-retry", disabled: true, onclick: () => bulkRetry()}, "Retry selected");
  const list = h("div");
  const results = h("div", {class: "retried"});
  show(view, title("Executions"), form, h("div", {class: "actions"}, retry), said, results,
    h("h2", {}, "Matching executions"), list);
  let items = [];

  function count() {
    retry.disabled = selected.size === 0;
    retry.textContent = selected.size ? `Retry selected (${selected.size})` : "Retry selected";
  }

  async function bulkRetry() {
    const ids = [...selected];
    if (!ids.length || !window.confirm(`Retry the jobs of ${ids.length} execution(s), once each?`)) { return; }
    retry.disabled = true;
    said.replaceChildren(h("span", {class: "muted"}, "Retrying…"));
    try {
      const answer = await api("POST", "/executions/retry", prefix ? {executions: ids, task: prefix} : {executions: ids});
      const outcomes = answer.data.results || [];
      const good = outcomes.filter((r) => r.status >= 200 && r.status < 300).length;
      said.replaceChildren(`${good} of ${outcomes.length} retried.`);
      results.replaceChildren(h("h2", {}, "Retried"), table(["Execution", "Outcome", "New execution"], outcomes.map((r) => {
        const made = r.retry ? [r.retry.taskId, r.retry.jobId, r.retry.executionId] : idsOf(r.executionUrl);
        const before = items.find((e) => e.executionId === r.executionId);
        return [before ? executionLink(before.taskId, before.jobId, before.executionId) : code(r.executionId || ""),
          r.error ? h("span", {class: "bad"}, `${r.status}: ${r.error}`) : h("span", {class: "ok"}, String(r.status)),
          made ? executionLink(...made) : ""];
      })));
      selected.clear();
      count();
      list.dataset.key = "";
      await view.guard(refresh);
    } catch (error) {
      said.replaceChildren(h("span", {class: "bad"}, `Retry failed: ${error.message}`));
      count();
    }
  }

  async function refresh() {
    const sinceEpoch = sinceSeconds(since) ? Math.floor(Date.now() / 1000) - sinceSeconds(since) : null;
    // A reader choosing rows is not disturbed: no refresh while rows are selected or focused.
    if (selected.size || list.contains(document.activeElement)) { return; }
    const data = await read(`/executions${query({status: chosen.join(","), since: sinceEpoch, task: prefix, page})}`);
    items = data.items || [];
    fill(list, data, (d) => {
      const all = h("input", {type: "checkbox", "aria-label": "select every execution on this page", onchange: () => {
        for (const box of list.querySelectorAll("tbody input[type=checkbox]")) {
          box.checked = all.checked;
          if (all.checked) { selected.add(box.value); } else { selected.delete(box.value); }
        }
        count();
      }});
      return [table([all, "When", "Task", "Job", "Execution", "Status", "Exit code", "Reason"], d.items.map((e) => [
        h("input", {type: "checkbox", value: e.executionId, "aria-label": `select ${e.executionId}`, onchange: (event) => {
          if (event.target.checked) { selected.add(e.executionId); } else { selected.delete(e.executionId); }
          count();
        }}),
        when(e.statusAt || e.finishedAt || e.createdAt), taskLink(e.taskId), jobLink(e.taskId, e.jobId),
        executionLink(e.taskId, e.jobId, e.executionId), badge(e.status), exitCode(e), e.reason || e.waitingFor || ""]),
      "No execution matches."),
      pager(d, (n) => link.executions({status: chosen.join(","), since, task: prefix, page: n}))];
    });
  }
  await view.guard(refresh);
  view.every(5000, refresh);
}

// --- start ---------------------------------------------------------------------------------

window.addEventListener("hashchange", () => { route(); main.focus({preventScroll: true}); });
showSession();
route();

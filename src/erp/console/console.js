// The operator console: every figure comes from the operator endpoints, asked with the token the
// operator typed (kept in this tab's sessionStorage). Everything shown is written as text nodes,
// never as HTML. No framework, no build step.
"use strict";

const TOKEN_KEY = "erp-operator-token";
const TICK_MS = 1500;          // projections' lag and the operations' progress
const SLOW_EVERY = 3;          // accounts and parked events every third tick
const HISTORY_MS = 5 * 60 * 1000;
const history = new Map();     // "name@database" -> [[time, events behind], ...]
let tick = 0;
let timer = null;
let accountsSeen = "";

const $ = (id) => document.getElementById(id);

class Refused extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(method, path, body) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new Refused(401, "no operator token");
  const init = { method, headers: { Authorization: `Bearer ${token}` }, cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const detail = data && (data.detail || data.title) || response.statusText;
    throw new Refused(response.status, `${method} ${path}: ${response.status} ${detail}`);
  }
  return data;
}

function el(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    if (cell instanceof Node) { const td = el("td"); td.append(cell); tr.append(td); }
    else if (typeof cell === "number") tr.append(el("td", cell.toLocaleString("en"), { class: "num" }));
    else tr.append(el("td", cell ?? ""));
  }
  return tr;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function short(id) {
  return id ? String(id).slice(0, 8) : "";
}

// A progress bar: done of total; a finished workflow is full (or red if it failed).
function bar(status, done, total) {
  const finished = status !== "Running";
  let share = total ? Math.min(1, done / total) : 0;
  if (status === "Completed") share = 1;
  const percent = Math.round(share * 100);
  const outer = el("div", null, {
    class: "bar" + (status === "Completed" ? " done" : finished ? " failed" : ""),
    role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(percent),
  });
  const inner = el("div");
  inner.style.width = `${percent}%`;
  outer.append(inner);
  const wrapper = el("span");
  const figures = total ? ` ${Number(done || 0).toLocaleString("en")} / ${Number(total).toLocaleString("en")}` : "";
  wrapper.append(outer, el("span", ` ${percent}%${figures}`, { class: "quiet" }));
  return wrapper;
}

// An inline SVG sparkline of one projection's lag (events behind) over the last minutes: the
// time it covers grows from half a minute to five as the page keeps looking.
function sparkline(points) {
  const width = 140, height = 24, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const max = Math.max(1, ...points.map((p) => p[1]));
  const now = Date.now();
  const span = Math.min(HISTORY_MS, Math.max(30 * 1000, now - points[0][0]));
  const coordinates = points.map(([time, behind]) => {
    const x = width - 1 - ((now - time) / span) * (width - 2);
    const y = height - 2 - (behind / max) * (height - 4);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  const axis = document.createElementNS(ns, "line");
  axis.setAttribute("class", "axis");
  axis.setAttribute("x1", "0");
  axis.setAttribute("x2", String(width));
  axis.setAttribute("y1", String(height - 1));
  axis.setAttribute("y2", String(height - 1));
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", coordinates.join(" "));
  const title = document.createElementNS(ns, "title");
  const seconds = Math.round(span / 1000);
  title.textContent = `at most ${Math.max(...points.map((p) => p[1])).toLocaleString("en")} events behind in the last ${seconds} s (${points.length} looks)`;
  svg.append(title, axis, line);
  svg.dataset.points = String(points.length);
  const wrapper = el("span");
  const peak = Math.max(...points.map((p) => p[1]));
  wrapper.append(svg, el("span", ` peak ${peak.toLocaleString("en")}`, { class: "quiet" }));
  return wrapper;
}

function remember(key, behind) {
  const now = Date.now();
  const points = (history.get(key) || []).filter((p) => now - p[0] <= HISTORY_MS);
  points.push([now, behind]);
  history.set(key, points);
  return points;
}

async function showProjections() {
  const projections = await api("GET", "/projections");
  const names = [...new Set(projections.map((p) => p.Name))];
  const select = $("rebuild-projection");
  if (select.options.length !== names.length) {
    select.replaceChildren(...names.map((name) => el("option", name, { value: name })));
  }
  fill($("projections").tBodies[0], projections.map((p) => {
    const points = remember(`${p.Name}@${p.Database}`, p.EventsBehind);
    const behind = el("span", p.EventsBehind.toLocaleString("en"), { class: p.EventsBehind ? "behind" : "" });
    const build = p.Build ? `${p.Build.Status}, ${p.Build.Phase}` : "";
    const rebuild = el("button", "Rebuild", {
      type: "button", class: "rebuild", "data-projection": p.Name,
      title: `Build a new version of ${p.Name} beside the live one, then switch to it`,
    });
    rebuild.addEventListener("click", () => startRebuild(p.Name, ""));
    const tr = row([p.Name, p.Database, p.Version, p.Pipeline, p.Head, p.Position, behind,
      sparkline(points), p.Parked, p.Held, build, rebuild]);
    tr.dataset.projection = p.Name;
    tr.dataset.database = p.Database;
    return tr;
  }));
}

async function showOperations() {
  const operations = await api("GET", "/operations");
  fill($("operations").tBodies[0], operations.map((o) => {
    let of = o.Projection || "";
    if (o.Kind === "Move") of = `${short(o.AccountId)}: ${o.From || "?"} → ${o.To || "?"}`;
    else if (o.AccountId) of += ` (account ${short(o.AccountId)})`;
    else if (o.Kind === "Rebuild") of += " (every account)";
    const tr = row([o.Kind, of, o.Error ? `${o.Status}: ${o.Error}` : o.Status, o.Phase || "",
      bar(o.Status, o.EventsDone, o.EventsTotal), o.StartedAt ? new Date(o.StartedAt).toLocaleTimeString() : ""]);
    tr.dataset.kind = o.Kind;
    tr.dataset.workflowId = o.WorkflowId;
    tr.dataset.status = o.Status;
    if (o.Projection) tr.dataset.projection = o.Projection;
    return tr;
  }));
  $("operations-empty").hidden = operations.length > 0;
}

async function showParked() {
  const parked = await api("GET", "/projections/parked");
  fill($("parked").tBodies[0], parked.map((p) => {
    const actions = el("span");
    if (p.HeldBehind === undefined) {
      for (const [label, path] of [["Retry", "retry"], ["Skip", "skip"]]) {
        const button = el("button", label, { type: "button", class: path });
        button.addEventListener("click", () => release(p, path));
        actions.append(button, " ");
      }
    }
    const why = p.HeldBehind !== undefined ? `held behind #${p.HeldBehind}` : p.Reason;
    return row([p.Projection, short(p.AccountId), p.StreamId, p.SequenceNumber, p.Event,
      el("span", why, { title: why }), new Date(p.ParkedAt).toLocaleString(), actions]);
  }));
  $("parked-empty").hidden = parked.length > 0;
}

async function showAccounts() {
  const accounts = await api("GET", "/accounts");
  fill($("accounts").tBodies[0], accounts.map((a) => {
    const rebuild = el("button", "Rebuild…", { type: "button", title: "Rebuild one of this account's read models in place" });
    rebuild.addEventListener("click", () => {
      $("rebuild-account").value = a.AccountId;
      $("rebuild-projection").focus();
    });
    const tr = row([a.Name, a.AccountId, a.Status, a.Database, rebuild]);
    tr.dataset.accountId = a.AccountId;
    return tr;
  }));
  const seen = accounts.map((a) => a.AccountId).join();
  if (seen !== accountsSeen) {   // keep the operator's choice while the list is unchanged
    accountsSeen = seen;
    const select = $("rebuild-account");
    const chosen = select.value;
    select.replaceChildren(select.options[0], ...accounts.map((a) =>
      el("option", `only ${a.Name} (${short(a.AccountId)}), in place`, { value: a.AccountId })));
    select.value = chosen;
  }
}

async function startRebuild(projection, accountId) {
  const body = accountId ? { AccountId: accountId } : undefined;
  try {
    const started = await api("POST", `/projections/${encodeURIComponent(projection)}/rebuild`, body);
    $("rebuild-result").textContent = `Started ${started.WorkflowId}`;
    await showOperations();
  } catch (error) {
    $("rebuild-result").textContent = error.message;
    if (error.status === 401) signOut("The token was refused.");
  }
}

async function release(parked, action) {
  try {
    const released = await api("POST", `/projections/${encodeURIComponent(parked.Projection)}/parked/${action}`,
      { AccountId: parked.AccountId, StreamId: parked.StreamId });
    const reason = released.Reason ? ` (${released.Reason})` : "";
    $("notice").textContent = `${parked.StreamId}: applied ${released.Applied}, skipped ${released.Skipped}, still parked ${released.StillParked}${reason}`;
    await showParked();
  } catch (error) {
    $("error").textContent = error.message;
  }
}

async function refresh() {
  timer = null;
  if (!sessionStorage.getItem(TOKEN_KEY)) return;
  const started = Date.now();
  try {
    const work = [showProjections(), showOperations()];
    if (tick % SLOW_EVERY === 0) work.push(showAccounts(), showParked());
    await Promise.all(work);
    tick += 1;
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    if ($("error").dataset.polling) { $("error").textContent = ""; delete $("error").dataset.polling; }
  } catch (error) {
    if (error.status === 401) { signOut("The token was refused."); return; }
    if (error.status === 429) { signOut(`${error.message}. Wait a minute before signing in again.`); return; }
    $("error").textContent = error.message;
    $("error").dataset.polling = "1";
  }
  // A slow answer (GET /projections reads every account's counters) spaces the looks out.
  const delay = Math.max(TICK_MS, 2 * (Date.now() - started));
  if (sessionStorage.getItem(TOKEN_KEY)) timer = setTimeout(refresh, delay);
}

function signedIn() {
  $("sign-in").hidden = true;
  $("console").hidden = false;
  $("sign-out").hidden = false;
  tick = 0;
  if (timer === null) refresh();
}

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (timer !== null) { clearTimeout(timer); timer = null; }
  history.clear();
  accountsSeen = "";
  $("console").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = why || "";
  $("updated").textContent = "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value);
    $("token").value = "";
    $("sign-in-error").textContent = "";
    // One request tries the token: a wrong one counts once among the address's failed
    // authentications (ERP_AUTH_FAILURES a minute), not once per endpoint the page polls.
    try {
      await api("GET", "/accounts?Limit=1");
    } catch (error) {
      if (error.status === 401) { signOut("The token was refused."); return; }
      if (error.status === 429) { signOut(`${error.message}. Wait a minute before signing in again.`); return; }
    }
    signedIn();
  });
  $("sign-out").addEventListener("click", () => signOut(""));
  $("rebuild-form").addEventListener("submit", (event) => {
    event.preventDefault();
    startRebuild($("rebuild-projection").value, $("rebuild-account").value);
  });
  if (sessionStorage.getItem(TOKEN_KEY)) signedIn();
});

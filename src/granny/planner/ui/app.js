// The dashboard: one Server-Sent Events stream (/ui/api/stream) feeds every view; nothing polls.
import { esc, paint, renderGrid } from "./grid.js";
import { markClass, renderTimelines } from "./charts.js";

const HOUR = 3600;
const MAX_ROWS = 500;
const MAX_EVENTS = 300;
const view = { samples: [], marks: [], apps: [], events: [], current: null };
// For tests and benchmarks (wall-clock ms): the first full render, each event shown, each state shown.
const probe = (window.__granny = { firstRender: null, renders: [], events: {}, lastEventId: 0 });
const wall = () => performance.timeOrigin + performance.now();

const $ = (id) => document.getElementById(id);

function age(s) {
  if (s === null || s === undefined) return "";
  const a = Math.abs(s);
  const t = a < 90 ? `${Math.round(a)} s` : a < 5400 ? `${Math.round(a / 60)} min` : `${(a / 3600).toFixed(1)} h`;
  return s < 0 ? `${t} ago` : t;
}

function clock(at) {
  return new Date(at * 1000).toLocaleTimeString();
}

function renderSummary(s) {
  $("summary").textContent = `${s.hosts} hosts · ${s.busy}/${s.slots} slots busy · ${s.apps_running} apps running · policy ${s.policy}`;
}

function renderApps() {
  const on = new Set([...document.querySelectorAll("#filters input[type=checkbox]:checked")].map((i) => i.value));
  const needle = $("app-search").value.trim().toLowerCase();
  const rows = view.apps.filter((a) => on.has(a.state) && (!needle || a.app_id.toLowerCase().includes(needle) || (a.name || "").toLowerCase().includes(needle)));
  const parts = [];
  for (const a of rows.slice(0, MAX_ROWS)) {
    const calls = Object.entries(a.calls).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(", ");
    const deadline = a.deadline_in === null ? "" : a.deadline_in >= 0 ? `in ${age(a.deadline_in)}` : `${age(-a.deadline_in)} late`;
    parts.push(`<tr data-app="${esc(a.app_id)}" data-state="${esc(a.state)}"><td><span class="swatch" data-app="${esc(a.app_id)}"></span>${esc(a.app_id)}${a.name ? ` <small>${esc(a.name)}</small>` : ""}</td>` +
      `<td><span class="state ${esc(a.state)}">${esc(a.state)}</span></td><td>${esc(a.kind)}</td><td>${a.size}</td><td>${esc(calls)}</td>` +
      `<td class="wrap">${esc(a.hosts.join(", "))}</td><td>${age(a.age)}</td><td>${deadline}</td></tr>`);
  }
  $("apps-body").innerHTML = parts.join("");
  paint($("apps-body"));
  $("apps-more").textContent = rows.length > MAX_ROWS ? `${rows.length - MAX_ROWS} more: narrow the filter to see them` : `${rows.length} apps`;
}

function renderQueue(queue) {
  $("queue-body").innerHTML = queue.length
    ? queue.map((q, i) => `<tr><td>${i + 1}</td><td>${esc(q.app_id)}</td><td>${esc(q.req_id)}</td><td>${q.granules}</td><td class="wrap">${esc(q.why)}</td></tr>`).join("")
    : '<tr><td colspan="5" class="hint">nothing waits</td></tr>';
}

function renderEvents() {
  $("event-list").innerHTML = view.events.slice(0, MAX_EVENTS).map((e) =>
    `<li data-kind="${esc(e.kind)}" class="${markClass(e.kind)}"><time>${clock(e.at)}</time><span class="kind">${esc(e.kind)}</span>${esc(e.text)}</li>`).join("");
}

function renderTime() {
  const now = Date.now() / 1000;
  view.samples = view.samples.filter((s) => s.t >= now - HOUR);
  view.marks = view.marks.filter((m) => m.at >= now - HOUR);
  const points = view.current && (!view.samples.length || view.current.t > view.samples[view.samples.length - 1].t)
    ? [...view.samples, view.current] : view.samples;
  renderTimelines(points, view.marks, now);
}

function applyState(st) {
  renderSummary(st.summary);
  renderGrid($("grid"), $("legend"), st.hosts);
  if (st.apps) {  // sent only when it changed
    view.apps = st.apps;
    renderApps();
  }
  renderQueue(st.queue);
  if (st.samples && st.samples.length) view.samples.push(...st.samples);
  view.current = st.current || null;
  renderTime();
  if (probe.renders.length < 10000) probe.renders.push(wall());
}

function addEvents(batch) {
  for (const e of batch) {
    probe.lastEventId = Math.max(probe.lastEventId, e.id);
    view.events.unshift(e);
    if (markClass(e.kind)) view.marks.push(e);
  }
  view.events.length = Math.min(view.events.length, MAX_EVENTS);
  renderEvents();
  const t = wall();
  if (Object.keys(probe.events).length < 10000) for (const e of batch) probe.events[e.id] = t;
}

async function showApp(appId) {
  const dialog = $("app-dialog");
  const box = $("app-detail");
  box.innerHTML = `<h2>${esc(appId)}</h2><p class="hint">loading…</p>`;
  if (!dialog.open) dialog.showModal();
  const resp = await fetch(`/ui/api/apps/${encodeURIComponent(appId)}`, { credentials: "same-origin" });
  const a = await resp.json();
  if (!resp.ok) {
    box.innerHTML = `<h2>${esc(appId)}</h2><p class="error">${esc(a.error)}</p>`;
    return;
  }
  const granules = (a.granules || []).map((g) => `<tr><td>${esc(g.req_id)}</td><td>${g.index}</td><td>${esc(g.state)}</td><td>${esc(g.host_id)}</td><td>${esc(g.granule_id)}</td></tr>`).join("");
  const migrations = (a.migrations || []).map((m) => `<li>${m.at ? clock(m.at) + " " : ""}${esc(m.text)}</li>`).join("") || "<li>none</li>";
  const errors = (a.errors || []).map((e) => `<li><b>${esc(e.req_id)}[${e.index}]</b> ${esc(e.kind)}: ${esc(e.message)}</li>`).join("") || "<li>none</li>";
  const events = (a.events || []).map((e) => `<li><time>${clock(e.at)}</time> <span class="kind">${esc(e.kind)}</span> ${esc(e.text)}</li>`).join("") || "<li>none</li>";
  const logs = (a.logs || []).map((l) => `[${l.index}${l.stream === "stderr" ? " err" : ""}] ${l.data}`).join("");
  box.innerHTML = `<h2><span class="swatch" data-app="${esc(a.app_id)}"></span>${esc(a.app_id)} <span class="state ${esc(a.state)}">${esc(a.state)}</span></h2>` +
    `<p class="hint">${esc(a.kind)} ${esc(a.name || "")} · ${esc(Object.entries(a.tasks || {}).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(", "))}</p>` +
    `<h3>Granules</h3><table class="list"><thead><tr><th>request</th><th>index</th><th>state</th><th>host</th><th>granule</th></tr></thead><tbody>${granules}</tbody></table>` +
    `<h3>Migrations</h3><ul>${migrations}</ul><h3>Errors</h3><ul>${errors}</ul><h3>Events</h3><ul class="events">${events}</ul>` +
    `<h3>Logs</h3><pre>${esc(logs) || "(no output)"}</pre>`;
  paint(box);
}

function connect() {
  const live = $("live");
  const source = new EventSource("/ui/api/stream");
  source.addEventListener("open", () => { live.textContent = "live"; live.className = "live on"; });
  source.addEventListener("snapshot", (m) => {
    const snap = JSON.parse(m.data);
    view.samples = [];  // applyState adds the snapshot's samples
    view.marks = snap.marks.slice();
    view.events = snap.marks.slice().reverse();
    applyState(snap);
    renderEvents();
    if (probe.firstRender === null) {
      probe.firstRender = wall();
      document.body.dataset.ready = "1";
    }
  });
  source.addEventListener("events", (m) => addEvents(JSON.parse(m.data)));
  source.addEventListener("state", (m) => applyState(JSON.parse(m.data)));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      // Refused (signed out, or the planner restarted and forgot the session): back to the login form.
      live.textContent = "signed out"; live.className = "live off";
      setTimeout(() => location.reload(), 1000);
    } else {
      live.textContent = "reconnecting…"; live.className = "live off";
    }
  });
}

$("filters").addEventListener("input", renderApps);
$("apps-body").addEventListener("click", (ev) => {
  const row = ev.target.closest("tr[data-app]");
  if (row) showApp(row.dataset.app);
});
connect();
setInterval(renderTime, 30000); // the time axis moves on even when nothing happens (no request is made)

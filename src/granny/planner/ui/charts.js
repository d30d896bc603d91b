// Timelines of the last hour as SVG: areas and lines of the samples, with the events marked on them.

const W = 600, H = 120, PAD = 14;
const NS = "http://www.w3.org/2000/svg";

export function markClass(kind) {
  if (kind === "migration.moved" || kind === "migration.decided") return "k-migration";
  if (kind.startsWith("host.evict")) return "k-evict";
  if (kind.includes("froze") || kind.includes("freez") || kind === "migration.thawed") return "k-freeze";
  if (kind.startsWith("migration.recover")) return "k-recover";
  if (kind === "host.died" || kind === "host.joined") return "k-host";
  return "";
}

function scale(samples, now) {
  const t0 = now - 3600;
  return (t) => ((t - t0) / 3600) * W;
}

function path(samples, x, y, key) {
  return samples.map((s, i) => `${i ? "L" : "M"}${x(s.t).toFixed(1)},${y(s[key]).toFixed(1)}`).join("");
}

function draw(svg, samples, marks, now, series) {
  const x = scale(samples, now);
  let top = 1;
  for (const s of samples) for (const [key] of series) top = Math.max(top, s[key]);
  const y = (v) => H - PAD - (v / top) * (H - 2 * PAD);
  const out = [];
  for (const [key, cls, area] of series) {
    if (!samples.length) continue;
    let d = path(samples, x, y, key);
    if (area) d += `L${x(samples[samples.length - 1].t).toFixed(1)},${H - PAD}L${x(samples[0].t).toFixed(1)},${H - PAD}Z`;
    out.push(`<path class="${cls}" d="${d}"/>`);
  }
  for (const m of marks) {
    const cls = markClass(m.kind);
    if (!cls || m.at < now - 3600) continue;
    const mx = x(m.at).toFixed(1);
    const title = String(m.text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
    out.push(`<line class="mark ${cls}" x1="${mx}" x2="${mx}" y1="${PAD / 2}" y2="${H - PAD}"><title>${title}</title></line>`);
  }
  out.push(`<text x="2" y="10">${top}</text><text x="2" y="${H - 2}">-60 min</text><text x="${W - 24}" y="${H - 2}">now</text>`);
  svg.innerHTML = out.join("");
  svg.setAttribute("data-points", String(samples.length));
}

export function renderTimelines(samples, marks, now) {
  draw(document.getElementById("tl-slots"), samples, marks, now, [["busy", "busy", true], ["idle", "idle", false]]);
  draw(document.getElementById("tl-links"), samples, marks, now, [["links", "line", false]]);
  draw(document.getElementById("tl-queue"), samples, marks, now, [["queue", "queue", false]]);
}

export { NS };

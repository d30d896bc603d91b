// The hosts × slots grid: one square per slot, coloured by the app that holds it.

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

const colours = new Map();

// A stable colour per app id (a hash onto the hue circle; lightness kept readable).
export function colour(appId) {
  let c = colours.get(appId);
  if (c === undefined) {
    let h = 2166136261;
    for (let i = 0; i < appId.length; i++) h = Math.imul(h ^ appId.charCodeAt(i), 16777619);
    const hue = (h >>> 0) % 360;
    c = `hsl(${hue} 65% ${45 + ((h >>> 9) % 3) * 7}%)`;
    colours.set(appId, c);
  }
  return c;
}

export function renderGrid(el, legendEl, hosts) {
  const parts = [];
  const held = new Map();
  for (const h of hosts) {
    const cls = !h.alive ? "host dead" : h.evicting_in !== null ? "host evicting" : "host";
    const title = !h.alive ? (h.evicted ? "evicted" : "dead") : h.evicting_in !== null ? `evicting in ${h.evicting_in} s` : `${h.slots.length} slots`;
    parts.push(`<div class="${cls}" data-host="${esc(h.host_id)}" title="${esc(h.host_id)}: ${title}"><span class="name">${esc(h.host_id)}</span><span class="slots">`);
    for (const a of h.slots) {
      if (a === null) {
        parts.push('<i class="slot"></i>');
      } else {
        held.set(a, (held.get(a) || 0) + 1);
        parts.push(`<i class="slot busy" data-app="${esc(a)}" title="${esc(a)}"></i>`);
      }
    }
    parts.push("</span></div>");
  }
  el.innerHTML = parts.join("");
  paint(el);
  const legend = [...held.entries()].sort((x, y) => y[1] - x[1]).slice(0, 40);
  legendEl.innerHTML = legend.map(([a, n]) => `<span data-app="${esc(a)}">${esc(a)} (${n})</span>`).join("");
  paint(legendEl);
}

// Colours are set through the CSSOM: the Content-Security-Policy refuses style attributes in markup.
export function paint(root) {
  for (const el of root.querySelectorAll("[data-app]")) {
    const c = colour(el.dataset.app);
    if (el.classList.contains("slot") || el.classList.contains("swatch")) el.style.background = c;
    else el.style.setProperty("--c", c);
  }
}

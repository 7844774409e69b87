// The result and training pages: the compare view, sortable metric columns, a full-size view. Fetches nothing.
"use strict";

// Compare: the slider, or a click or drag on the images, puts the split between fake_B (left) and real_B there.
function setSplit(box, pct) {
  pct = Math.max(0, Math.min(100, pct));
  box.style.setProperty("--pos", pct + "%");
  const slider = box.nextElementSibling;
  if (slider && slider.type === "range") slider.value = pct;
}

function splitAt(e) {
  const box = e.target instanceof Element && e.target.closest(".compare");
  if (!box || (e.type === "pointermove" && !(e.buttons & 1))) return;
  if (e.type === "pointerdown") box.setPointerCapture(e.pointerId); // a drag keeps going past the edge
  const r = box.getBoundingClientRect();
  setSplit(box, (100 * (e.clientX - r.left)) / r.width);
}

document.addEventListener("pointerdown", splitAt);
document.addEventListener("pointermove", splitAt);
document.addEventListener("input", (e) => {
  if (e.target.matches(".compare + input[type=range]")) setSplit(e.target.previousElementSibling, +e.target.value);
});

// Metric tables: a click on a header sorts by that column (again: the other way); the image rows follow.
function sortBy(th) {
  const body = th.closest("table").tBodies[0];
  const col = th.cellIndex;
  const num = th.classList.contains("num");
  const sign = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
  for (const h of th.parentNode.cells) h.removeAttribute("aria-sort");
  th.setAttribute("aria-sort", sign > 0 ? "ascending" : "descending");
  const value = (tr) => (num ? parseFloat(tr.cells[col].dataset.v) : tr.cells[col].dataset.v);
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = value(a);
    const y = value(b);
    if (num && (isNaN(x) || isNaN(y))) return isNaN(x) - isNaN(y); // missing scores last, either way
    return sign * (num ? x - y : x.localeCompare(y, undefined, { numeric: true }));
  });
  body.append(...rows);
  // Each table row names its image row (a section) in data-row; those move into the same order, in place.
  const items = rows.map((tr) => document.getElementById(tr.dataset.row)).filter(Boolean);
  if (!items.length) return;
  const all = document.querySelectorAll("section.item");
  const end = all[all.length - 1].nextSibling;
  for (const s of items) s.parentNode.insertBefore(s, end);
}

// Full-size view: a click on an image shows its file over the page (small ones enlarged by a whole factor,
// pixels kept square); a click or Escape closes it. Ctrl/Shift/middle click still open the file itself.
function openLightbox(link) {
  let lb = document.getElementById("lightbox");
  if (!lb) {
    lb = document.createElement("div");
    lb.id = "lightbox";
    lb.append(document.createElement("img"), document.createElement("p"));
    document.body.append(lb);
  }
  const [img, p] = lb.children;
  img.onload = () => {
    const w = img.naturalWidth;
    const h = img.naturalHeight;
    const fit = Math.min((innerWidth - 32) / w, (innerHeight - 64) / h);
    const s = fit >= 1 ? Math.floor(fit) : fit;
    img.width = Math.round(w * s);
    img.height = Math.round(h * s);
    img.style.imageRendering = s >= 1 ? "pixelated" : "auto";
    const file = document.createElement("a");
    file.href = link.href;
    file.textContent = decodeURIComponent(link.pathname.split("/").pop());
    p.replaceChildren(file, ` ${w} \u00d7 ${h} px, shown at ${+s.toFixed(2)}\u00d7 (click or Esc to close)`);
  };
  img.alt = link.querySelector("img")?.alt || "";
  img.src = link.href;
  lb.classList.add("open");
}

function closeLightbox() {
  document.getElementById("lightbox")?.classList.remove("open");
}

document.addEventListener("click", (e) => {
  if (!(e.target instanceof Element)) return;
  const th = e.target.closest("table.metrics th");
  const link = e.target.closest("a.full");
  if (th) sortBy(th);
  else if (e.target.closest("#lightbox")) {
    if (!e.target.closest("a")) closeLightbox();
  } else if (link && !(e.ctrlKey || e.metaKey || e.shiftKey || e.altKey)) {
    e.preventDefault();
    openLightbox(link);
  }
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") closeLightbox();
});

// The web page's logic: queue the chosen images, send each to the API once (format=geojson,labels,
// measurements,preview: outlines, tables, the label image and the plane segmented as 8-bit, in one zip) with at most
// min(queue depth, 4) requests in flight, retry 503 after Retry-After, show one image at a
// time, and pack every result into one zip (makeZip: zip.js). The model picker lists GET /models;
// "automatic" sends no model=, and the server routes each image. Plain browser JavaScript.
"use strict";

const $ = (id) => document.getElementById(id);
const COLUMNS = ["id", "area", "perimeter", "centroid_x", "centroid_y", "bbox_x", "bbox_y",
  "bbox_width", "bbox_height", "equivalent_diameter", "eccentricity", "solidity",
  "mean_intensity", "integrated_intensity", "touches_border"];
// which model answered and why: headers X-Model-<field>, summary columns model_<field> (nuclei/naming.py MODEL_FIELDS)
const MODEL_FIELDS = ["Name", "Version", "Sha256", "Route"];
const IMAGE_FILE = /\.(png|jpe?g|tiff?|bmp)$/i;
const MAX_WORKERS = 4;
const MAX_RETRIES = 30;
const WHY = {
  400: "Could not read this image",
  401: "This server needs an API key: enter it above, then choose “Retry failed images”",
  413: "Too large for this server",
  415: "Not an image type the service reads",
  422: "The server refused the request",
  503: "The server stayed busy; try again later",
  504: "It took too long on the server",
};

const state = {
  items: [],
  limits: { queue_depth: 1, max_upload_bytes: Infinity, max_pixels: Infinity, api_key_required: false },
  running: 0,
  run: null, // {start, end, base}: timing of the current run, for the rate
  shown: null, // the item on display
  view: null, // {bitmap, width, height} of the item on display
  zoom: 0, // log2 of the scale
  sort: { key: "id", dir: 1 },
  selected: null, // nucleus id highlighted from the table
  limitsLoaded: null, // a promise: no request before the queue depth is known
};

class Failure extends Error {
  constructor(status, detail) {
    super(status in WHY ? `${WHY[status]}: ${detail}` : detail);
    this.status = status;
    // the error column of summary.csv, worded as nuclei-client and nuclei-batch word it
    this.summary = status ? `${status} ${detail}` : detail;
  }
}

// ---- helpers ----------------------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function formatBytes(n) {
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MB`;
  return n >= 1024 ? `${(n / 1024).toFixed(0)} kB` : `${n} bytes`;
}

function formatValue(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "number" && !Number.isInteger(v)) return v.toFixed(2);
  return String(v);
}

/** One CSV field; text that a spreadsheet would run as a formula (=, +, -, @) gets a quote. */
function csvField(v) {
  let s = v === null || v === undefined ? "" : String(v);
  if (typeof v === "string" && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const csvLine = (values) => values.map(csvField).join(",") + "\n";

/** The image's path without its extension: folder/name for folder/name.tif. */
const stemOf = (path) => path.replace(/\.[^./]*$/, "");

/** Output stems of the images' paths (duplicates allowed), in their order, by the one naming
 * rule (nuclei/naming.py, docs/for-pipelines.md): the path without its extension; paths whose
 * stems match, letter case aside, keep their extension (a.png, a.tif); names still equal take
 * ~2, ~3 … in sorted order. */
function outputStems(paths) {
  const sorted = paths.map((path, i) => [path, i]).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const key = (path) => stemOf(path).toLowerCase();
  const clashes = new Map();
  for (const [path] of sorted) clashes.set(key(path), (clashes.get(key(path)) || 0) + 1);
  const wanted = sorted.map(([path]) => (clashes.get(key(path)) > 1 ? path : stemOf(path)));
  const taken = new Set(wanted.map((stem) => stem.toLowerCase()));
  const used = new Set();
  const out = new Array(paths.length);
  sorted.forEach(([, i], k) => {
    let [name, n] = [wanted[k], 1];
    while (used.has(name.toLowerCase()) || (n > 1 && taken.has(name.toLowerCase()))) name = `${wanted[k]}~${++n}`;
    used.add(name.toLowerCase());
    out[i] = name;
  });
  return out;
}

/** Hidden and system files and folders (.DS_Store, macOS ._x.png, __MACOSX/): never images. */
const SYSTEM = new Set(["__macosx", "thumbs.db", "desktop.ini", "$recycle.bin", "system volume information"]);
const skipped = (path) => path.split("/").some((p) => (p.startsWith(".") && p !== "." && p !== "..") ||
  SYSTEM.has(p.toLowerCase()));

/** Width and height from a PNG's IHDR chunk (the label image). */
async function pngSize(blob) {
  const head = new DataView(await blob.slice(0, 24).arrayBuffer());
  return [head.getUint32(16), head.getUint32(20)];
}

/** Seconds to wait from a Retry-After header: a number of seconds or an HTTP date. */
function retryAfter(header) {
  const seconds = Number(header);
  if (header && Number.isFinite(seconds)) return Math.min(Math.max(seconds, 0.5), 60);
  const date = Date.parse(header || "");
  return Number.isNaN(date) ? 1 : Math.min(Math.max((date - Date.now()) / 1000, 0.5), 60);
}

/** Nucleus measurements of a GeoJSON feature: QuPath writes them as an object or as a list. */
function measurementsOf(feature) {
  const m = (feature.properties || {}).measurements || {};
  return Array.isArray(m) ? Object.fromEntries(m.map((e) => [e.name, e.value])) : m;
}

function columnsOf(rows) {
  const seen = new Set(rows.flatMap((r) => Object.keys(r)));
  return [...COLUMNS.filter((c) => seen.has(c)), ...[...seen].filter((c) => !COLUMNS.includes(c))];
}

function saveBlob(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}

// ---- talking to the server --------------------------------------------------------------

async function loadLimits() {
  try {
    const response = await fetch("limits");
    if (response.ok) Object.assign(state.limits, await response.json());
  } catch {
    // an older server without /limits: one request at a time, limits found by trying
  }
  const { max_upload_bytes: bytes, max_pixels: pixels } = state.limits;
  if (Number.isFinite(bytes) && Number.isFinite(pixels)) {
    const side = Math.floor(Math.sqrt(pixels));
    $("limits").textContent = `Up to ${formatBytes(bytes)} and ${pixels.toLocaleString("en")} pixels ` +
      `(${side} × ${side}) per image.`;
  }
  if (state.limits.api_key_required) $("key-row").hidden = false;
}

/** The picker: "automatic" first, then each model the server serves (GET /models), the choice kept.
 * Loaded with the page and again when an API key is entered (a keyed server answers 401 before). */
async function loadModels() {
  let models;
  try {
    const response = await fetch("models", { headers: authHeaders() });
    if (!response.ok) return;
    models = (await response.json()).models.filter((m) => m.serving);
  } catch {
    return; // an older server without /models: automatic only
  }
  const select = $("model-choice");
  const chosen = select.value;
  const option = (value, text) => Object.assign(document.createElement("option"), { value, textContent: text });
  select.replaceChildren(option("", "automatic"), ...models.map((m) => option(m.name, m.name +
    (m.default ? " (default)" : "") + (m.modalities.length ? ` (for ${m.modalities.join(", ")})` : ""))));
  select.value = models.some((m) => m.name === chosen) ? chosen : "";
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function errorDetail(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    return `HTTP ${response.status} ${response.statusText}`.trim();
  }
}

/** POST the item's file for one format; 503 is retried after Retry-After. */
async function segment(item, format) {
  const params = new URLSearchParams({ format });
  const threshold = $("threshold").value.trim();
  if (threshold) params.set("threshold", threshold);
  const diameter = $("diameter").value.trim();
  if (diameter) params.set("diameter", diameter);
  if ($("quality").checked) params.set("quality", "true");
  for (const name of ["page", "channel"]) {
    const value = $(name).value.trim();
    if (value) params.set(name, value);
  }
  const model = $("model-choice").value; // empty: automatic, the server routes by the image
  if (model) params.set("model", model);
  for (let attempt = 0; ; attempt++) {
    const body = new FormData();
    body.append("file", item.file, item.file.name);
    const headers = authHeaders();
    let response;
    try {
      response = await fetch(`segment?${params}`, { method: "POST", body, headers });
    } catch (error) {
      throw new Failure(0, `Could not reach the server (${error.message})`);
    }
    if (response.status === 503 && attempt < MAX_RETRIES) {
      const wait = retryAfter(response.headers.get("Retry-After"));
      setStatus(item, "waiting", `Server busy: retrying in ${wait} s`);
      await sleep(wait * 1000);
      setStatus(item, "working", "Segmenting…");
      continue;
    }
    if (!response.ok) {
      if (response.status === 401) {
        $("key-row").hidden = false;
        $("api-key").focus();
      }
      throw new Failure(response.status, await errorDetail(response));
    }
    return response;
  }
}

async function process(item) {
  const start = performance.now();
  setStatus(item, "working", "Segmenting…");
  try {
    const limit = state.limits.max_upload_bytes;
    if (item.file.size > limit) {
      throw new Failure(413, `${formatBytes(item.file.size)}, the limit is ${formatBytes(limit)}`);
    }
    // one segmentation; the outputs saved as the service wrote them, and the plane it read
    // as a picture the browser can draw (TIFF, 16-bit)
    const answer = await segment(item, "geojson,labels,measurements,preview");
    const parts = [...(await readZip(await answer.blob()))];
    const part = (suffix) => (parts.find(([name]) => name.endsWith(suffix)) || [])[1];
    item.geojsonBytes = part(".geojson");
    item.geojson = JSON.parse(new TextDecoder().decode(item.geojsonBytes));
    item.count = Number(answer.headers.get("X-Nuclei-Count") ?? item.geojson.features.length);
    item.diameter = answer.headers.get("X-Nucleus-Diameter");
    item.quality = answer.headers.get("X-Segmentation-Quality"); // null when not asked for
    item.flag = answer.headers.get("X-Segmentation-Flag") ?? "";
    item.model = MODEL_FIELDS.map((field) => answer.headers.get(`X-Model-${field}`));
    showModel(item.model);
    item.labels = new Blob([part(".labels.png")], { type: "image/png" });
    [item.width, item.height] = await pngSize(item.labels);
    item.csv = part(".measurements.csv");
    item.preview = new Blob([part(".preview.png")], { type: "image/png" });
    item.warning = answer.headers.get("X-Image-Warning") ?? ""; // e.g. several channels, none chosen
    item.seconds = (performance.now() - start) / 1000;
    setStatus(item, "done", item.warning ? "Done: check the channel" : "Done");
    if (item.warning) item.row.title = item.warning;
    if (state.items.includes(item) && !state.items.includes(state.shown)) show(item);
  } catch (error) {
    item.seconds = (performance.now() - start) / 1000;
    item.error = error.message;
    item.errorText = error.summary ?? error.message;
    setStatus(item, "error", error.message);
  }
}

function showModel([name, version, sha256, route]) {
  if (!name) return;
  $("model").textContent = `Model: ${name} ${version || ""}` + (sha256 ? ` (sha256 ${sha256.slice(0, 12)}…)` : "") +
    (route ? ` · chosen: ${route}` : "");
}

// ---- the queue --------------------------------------------------------------------------

function addFiles(files) {
  const added = [...files].filter((f) => !skipped(f.relativePath || f.webkitRelativePath || f.name));
  if (!added.length) return;
  $("batch").hidden = false;
  if (state.running === 0 && !state.items.some((i) => i.status === "queued")) {
    state.run = { start: performance.now(), end: null, base: finishedCount() };
  }
  for (const file of added) {
    const path = file.relativePath || file.webkitRelativePath || file.name;
    const item = { file, path, status: "queued", count: null };
    state.items.push(item);
    item.row = queueRow(item);
    $("queue").tBodies[0].append(item.row);
  }
  state.limitsLoaded.then(pump);
}

function pump() {
  const workers = Math.max(1, Math.min(state.limits.queue_depth || 1, MAX_WORKERS));
  while (state.running < workers) {
    const item = state.items.find((i) => i.status === "queued");
    if (!item) break;
    state.running++;
    process(item).finally(() => {
      state.running--;
      pump();
    });
  }
  updateProgress();
}

const finishedCount = () => state.items.filter((i) => i.status === "done" || i.status === "error").length;

function updateProgress() {
  const total = state.items.length;
  const finished = finishedCount();
  const failed = state.items.filter((i) => i.status === "error").length;
  const pending = total - finished;
  const run = state.run;
  if (run && pending === 0 && run.end === null) run.end = performance.now();
  const seconds = run ? ((run.end ?? performance.now()) - run.start) / 1000 : 0;
  const rate = run && seconds > 0 ? (finished - run.base) / seconds : 0;
  $("progress").max = Math.max(total, 1);
  $("progress").value = finished;
  $("progress-text").textContent = `${finished}/${total} images · ${rate.toFixed(2)} images/s` +
    (failed ? ` · ${failed} failed` : "") + (pending ? "" : " · finished");
  $("zip").disabled = pending > 0 || finished === failed;
  $("retry").hidden = failed === 0 || pending > 0;
}

function queueRow(item) {
  const row = document.createElement("tr");
  row.dataset.testid = "row";
  row.dataset.path = item.path;
  const name = document.createElement("th");
  name.scope = "row";
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link";
  button.textContent = item.path;
  button.addEventListener("click", () => item.status === "done" && show(item));
  name.append(button);
  const status = document.createElement("td");
  status.dataset.testid = "status";
  status.textContent = "Waiting";
  const count = document.createElement("td");
  count.className = "number";
  const quality = document.createElement("td");
  quality.dataset.testid = "quality";
  row.append(name, status, count, quality);
  return row;
}

/** The trust signal as a badge: its value, and `check` (the service's flag) in its colour. */
function qualityBadge(item) {
  const badge = document.createElement("span");
  if (item.quality === null || item.quality === undefined) return badge;
  badge.className = `badge ${item.flag}`;
  badge.dataset.flag = item.flag;
  badge.textContent = `${item.quality} ${item.flag}`;
  badge.title = "How far the model agrees with itself on this image flipped (0–1); " +
    "check: look at it, give the nucleus diameter, or fine-tune on images like it";
  return badge;
}

/** The queue, least trusted first (images without a value last); again: most trusted first. */
function sortByQuality() {
  const th = $("sort-quality").parentElement;
  const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
  th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
  const key = (item) => (item.quality === null || item.quality === undefined ? Infinity * dir : Number(item.quality));
  const rows = [...state.items].sort((a, b) => dir * (key(a) - key(b)) || 0);
  $("queue").tBodies[0].append(...rows.map((item) => item.row));
}

function setStatus(item, status, text) {
  item.status = status;
  const [, cell, count, quality] = item.row.children;
  item.row.dataset.status = status;
  cell.textContent = text;
  count.textContent = item.count ?? "";
  quality.replaceChildren(qualityBadge(item));
  item.row.querySelector("button").disabled = status !== "done";
  updateProgress();
}

async function downloadZip() {
  const encoder = new TextEncoder();
  const entries = [];
  const stems = outputStems(state.items.map((item) => item.path));
  // the columns and row order of nuclei-client's summary.csv (nuclei/naming.py SUMMARY_COLUMNS)
  let summary = csvLine(["path", "width", "height", "count", "diameter", "quality", "flag", "warning", "status",
    "error", ...MODEL_FIELDS.map((field) => `model_${field.toLowerCase()}`), "seconds", "output"]);
  const order = [...state.items.keys()].sort((a, b) => (state.items[a].path < state.items[b].path ? -1 : 1));
  for (const k of order) {
    const [item, base, done] = [state.items[k], stems[k], state.items[k].status === "done"];
    if (done) {
      entries.push({ name: `${base}.labels.png`, data: new Uint8Array(await item.labels.arrayBuffer()) });
      entries.push({ name: `${base}.geojson`, data: item.geojsonBytes });
      entries.push({ name: `${base}.measurements.csv`, data: item.csv });
    }
    summary += csvLine([item.path, item.width ?? "", item.height ?? "", item.count ?? "",
      done ? item.diameter ?? "" : "", done ? item.quality ?? "" : "", done ? item.flag : "",
      done ? item.warning : "", done ? "ok" : "error", item.errorText ?? "",
      ...MODEL_FIELDS.map((_, k) => (done && item.model ? item.model[k] ?? "" : "")), item.seconds === undefined ? "" : item.seconds.toFixed(3), base]);
  }
  entries.push({ name: "summary.csv", data: encoder.encode(summary) }); // no output stem ends in .csv alone
  saveBlob(makeZip(entries), "nuclei-results.zip");
}

// ---- one image: canvas, outlines, zoom, measurements table ------------------------------

async function show(item) {
  state.shown = item;
  state.selected = null;
  for (const row of $("queue").tBodies[0].rows) row.classList.toggle("shown", row === item.row);
  $("result").hidden = false;
  $("result-name").textContent = item.path;
  $("count").textContent = String(item.count);
  $("size").textContent = `${item.width} × ${item.height} pixels` +
    (item.diameter ? ` · nuclei about ${item.diameter} px across` : "");
  $("result-quality").replaceChildren(qualityBadge(item));
  const [model, , , route] = item.model || [];
  $("result-model").textContent = model ? `model ${model}` + (route ? ` (${route})` : "") : "";
  const stem = stemOf(item.file.name);
  setLink("dl-labels", item.labels, `${stem}.labels.png`);
  setLink("dl-geojson", new Blob([item.geojsonBytes], { type: "application/geo+json" }), `${stem}.geojson`);
  setLink("dl-csv", new Blob([item.csv], { type: "text/csv" }), `${stem}.measurements.csv`);
  $("plane-warning").hidden = !item.warning;
  $("plane-warning").textContent = item.warning ? `Check the channel: ${item.warning} (the Channel box above).` : "";
  let bitmap = null;
  try {
    bitmap = await createImageBitmap(item.preview); // the plane segmented, 8-bit: TIFF and 16-bit too
  } catch {
    // TIFF and others the browser cannot show: the outlines on black
  }
  if (state.shown !== item) return bitmap?.close();
  state.view?.bitmap?.close();
  $("view-note").hidden = bitmap !== null;
  $("view-note").textContent = "The image could not be drawn: the outlines are on black.";
  state.view = { bitmap, width: item.width, height: item.height };
  fitZoom();
  renderTable();
}

function setLink(id, blob, name) {
  const link = $(id);
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(blob);
  link.download = name;
}

function fitZoom() {
  const view = state.view;
  if (!view) return;
  const width = Math.max($("viewport").clientWidth - 4, 100);
  const height = Math.max(window.innerHeight * 0.7 - 4, 100);
  setZoom(Math.min(Math.log2(width / view.width), Math.log2(height / view.height), 1));
}

function setZoom(level) {
  const slider = $("zoom");
  const step = Number(slider.step);
  const { width, height } = state.view || { width: 1, height: 1 };
  // a canvas over 16384 pixels a side or 2^27 in all stays blank in browsers
  const largest = Math.log2(Math.min(16384 / width, 16384 / height, Math.sqrt(2 ** 27 / (width * height))));
  const top = Math.min(Number(slider.max), Math.floor(largest / step) * step);
  state.zoom = Math.min(Math.max(Math.round(level / step) * step, Number(slider.min)), top);
  slider.value = String(state.zoom);
  $("zoom-value").textContent = `${Math.round(2 ** state.zoom * 100)}%`;
  draw();
}

function draw() {
  const { view, shown } = state;
  if (!view || !shown) return;
  const scale = 2 ** state.zoom;
  const canvas = $("canvas");
  canvas.width = Math.max(1, Math.round(view.width * scale));
  canvas.height = Math.max(1, Math.round(view.height * scale));
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = scale < 1;
  if (view.bitmap) {
    ctx.drawImage(view.bitmap, 0, 0, canvas.width, canvas.height);
  } else {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
  let drawn = 0;
  if ($("outlines").checked) {
    ctx.lineJoin = "round";
    for (const feature of shown.geojson.features) {
      const id = measurementsOf(feature).id;
      const selected = state.selected !== null && id === state.selected;
      ctx.strokeStyle = selected ? "#ffd400" : "#00ff5a";
      ctx.lineWidth = selected ? 3 : 1.5;
      ctx.beginPath();
      const geometry = feature.geometry || {};
      const polygons = geometry.type === "MultiPolygon" ? geometry.coordinates : [geometry.coordinates || []];
      for (const ring of polygons.flat()) {
        ring.forEach(([x, y], i) => (i ? ctx.lineTo(x * scale, y * scale) : ctx.moveTo(x * scale, y * scale)));
        ctx.closePath();
      }
      ctx.stroke();
      drawn++;
    }
  }
  canvas.dataset.outlines = String(drawn);
}

function renderTable() {
  const rows = state.shown.geojson.features.map(measurementsOf);
  const columns = rows.length ? columnsOf(rows) : COLUMNS;
  const table = $("measurements");
  const head = document.createElement("tr");
  for (const column of columns) {
    const th = document.createElement("th");
    th.scope = "col";
    const sorted = state.sort.key === column;
    th.setAttribute("aria-sort", sorted ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = column.replace(/_/g, " ") + (sorted ? (state.sort.dir > 0 ? " ▲" : " ▼") : "");
    button.addEventListener("click", () => {
      state.sort = { key: column, dir: sorted ? -state.sort.dir : 1 };
      renderTable();
    });
    th.append(button);
    head.append(th);
  }
  table.tHead.replaceChildren(head);
  const { key, dir } = state.sort;
  const value = (r) => (r[key] === null || r[key] === undefined ? -Infinity : r[key]);
  rows.sort((a, b) => (value(a) < value(b) ? -dir : value(a) > value(b) ? dir : 0));
  const body = document.createElement("tbody");
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.id = r.id;
    tr.classList.toggle("selected", r.id === state.selected);
    for (const column of columns) {
      const td = document.createElement("td");
      td.textContent = formatValue(r[column]);
      if (typeof r[column] === "number") td.className = "number";
      tr.append(td);
    }
    tr.addEventListener("click", () => {
      state.selected = state.selected === r.id ? null : r.id;
      for (const other of body.rows) other.classList.toggle("selected", other === tr && state.selected !== null);
      draw();
    });
    body.append(tr);
  }
  table.tBodies[0].replaceWith(body);
}

// ---- choosing files: inputs, drag and drop (folders too) --------------------------------

async function filesOfEntry(entry, into) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    file.relativePath = entry.fullPath.replace(/^\//, "");
    into.push(file);
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const child of batch) await filesOfEntry(child, into);
    }
  }
}

/** From a folder, only the image files (hidden ones are left out by addFiles): a folder holds notes too. */
const imagesOnly = (files) => files.filter((f) => IMAGE_FILE.test(f.name));

function setUp() {
  $("files").addEventListener("change", (event) => {
    addFiles(event.target.files);
    event.target.value = "";
  });
  $("folder").addEventListener("change", (event) => {
    addFiles(imagesOnly([...event.target.files]));
    event.target.value = "";
  });
  window.addEventListener("dragover", (event) => {
    event.preventDefault();
    $("drop").classList.add("over");
  });
  window.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) $("drop").classList.remove("over");
  });
  window.addEventListener("drop", async (event) => {
    event.preventDefault();
    $("drop").classList.remove("over");
    const entries = [...event.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry());
    if (!entries.some((e) => e && e.isDirectory)) return addFiles(event.dataTransfer.files);
    const files = [];
    for (const entry of entries) if (entry) await filesOfEntry(entry, files);
    addFiles(imagesOnly(files));
  });
  $("options").addEventListener("submit", (event) => event.preventDefault());
  $("zip").addEventListener("click", downloadZip);
  $("sort-quality").addEventListener("click", sortByQuality);
  $("retry").addEventListener("click", () => {
    for (const item of state.items.filter((i) => i.status === "error")) {
      item.error = item.errorText = undefined;
      setStatus(item, "queued", "Waiting");
    }
    state.run = { start: performance.now(), end: null, base: finishedCount() };
    pump();
  });
  $("clear").addEventListener("click", () => {
    state.items = state.items.filter((i) => i.status === "working" || i.status === "waiting");
    $("queue").tBodies[0].replaceChildren(...state.items.map((i) => i.row));
    if (!state.items.includes(state.shown)) {
      state.view?.bitmap?.close();
      state.shown = state.view = null;
      $("result").hidden = true;
      $("count").textContent = "–";
    }
    $("batch").hidden = state.items.length === 0;
    updateProgress();
  });
  $("outlines").addEventListener("change", draw);
  $("zoom").addEventListener("input", (event) => setZoom(Number(event.target.value)));
  $("fit").addEventListener("click", fitZoom);
  $("viewport").addEventListener("wheel", (event) => {
    if (!event.ctrlKey) return;
    event.preventDefault();
    setZoom(state.zoom - Math.sign(event.deltaY) * 0.25);
  }, { passive: false });
  $("viewport").addEventListener("keydown", (event) => {
    const delta = { "+": 0.25, "=": 0.25, "-": -0.25 }[event.key];
    if (delta) setZoom(state.zoom + delta);
  });
  $("api-key").addEventListener("change", loadModels);
  state.limitsLoaded = loadLimits();
  loadModels();
}

setUp();

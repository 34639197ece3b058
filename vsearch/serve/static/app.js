// vsearch web page: plain JS against the JSON API of `vsearch serve`; no build step.
// The query and the open photo live in the URL (?q=…&plus=…&tag=…&min=…&photo=42, ?like=42,
// ?tab=faces, ?tab=duplicates&threshold=0.9), so Back, reload and bookmarks work.
"use strict";

const $ = (id) => document.getElementById(id);
const TABS = ["search", "faces", "duplicates"];
let facesAvailable = false; // from /healthz: whether this server has the face endpoints

// -- helpers -----------------------------------------------------------------------------------
const NOT_ANSWERING = "The server is not answering: is vsearch serve still running? The last results are kept.";

async function api(url, options = {}) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (_) { // no HTTP answer at all (the browser says "Failed to fetch"): the server is down or unreachable
    const error = new Error(NOT_ANSWERING);
    error.offline = true;
    throw error;
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON: handled below */ }
  if (!response.ok) {
    const message = body && body.detail ? body.detail : `${response.status} ${response.statusText}`;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function setStatus(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function folderOf(path) {
  const slash = path.lastIndexOf("/");
  return slash > 0 ? path.slice(0, slash) : "/";
}

function humanBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB"];
  let value = n / 1024, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

// one local format for every date the page shows (a Date, seconds since 1970, or an ISO text)
const DATE_FORMAT = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
function formatDate(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : DATE_FORMAT.format(date);
}

const splitTerms = (text) => text.split(",").map((t) => t.trim()).filter(Boolean);

// -- the URL is the state ------------------------------------------------------------------------
function readState() {
  const p = new URLSearchParams(window.location.search);
  const min = parseFloat(p.get("min"));
  const threshold = parseFloat(p.get("threshold"));
  return {
    tab: TABS.includes(p.get("tab")) ? p.get("tab") : "search",
    q: p.get("q") || "", like: p.get("like") || "",
    plus: p.getAll("plus"), minus: p.getAll("minus"), tag: p.getAll("tag"),
    min: Number.isFinite(min) ? min : null,
    k: p.get("k") || "", photo: p.get("photo") || "",
    threshold: Number.isFinite(threshold) ? String(threshold) : "",
  };
}

function stateUrl(state) {
  const p = new URLSearchParams();
  if (state.tab && state.tab !== "search") p.set("tab", state.tab);
  if (state.tab === "duplicates" && state.threshold) p.set("threshold", state.threshold);
  if (state.q) p.set("q", state.q);
  if (state.like) p.set("like", state.like);
  for (const key of ["plus", "minus", "tag"]) for (const v of state[key] || []) p.append(key, v);
  if (state.min !== null && state.min !== undefined) p.set("min", String(state.min));
  if (state.k && state.k !== "24") p.set("k", state.k);
  if (state.photo) p.set("photo", state.photo);
  const text = p.toString();
  return text ? `/?${text}` : "/";
}

function go(state, replace = false) {
  const url = stateUrl(state);
  // a photo opened from the page is one history entry (another photo opened from it replaces
  // it), so closing it is going Back
  const record = { page: true, photoFromPage: Boolean(state.photo) };
  if (replace || (state.photo && readState().photo)) history.replaceState(record, "", url);
  else history.pushState(record, "", url);
  applyState(state);
}

let shownSearch = null; // the search key whose results the grid shows

function searchKey(state) {
  return JSON.stringify([state.q, state.like, state.plus, state.minus, state.tag, state.k]);
}

function applyState(state) {
  showTab(state.tab);
  $("q").value = state.q;
  $("plus").value = state.plus.join(", ");
  $("minus").value = state.minus.join(", ");
  showTagChoice(state.tag[0] || "");
  $("min").value = state.min === null ? "" : String(state.min);
  $("k").value = state.k || "24";
  const key = searchKey(state);
  if (state.q || state.like || state.plus.length) {
    if (key !== shownSearch) runSearch(state);
    else renderHits(); // only the minimum score changed
  } else if (shownSearch !== null && shownSearch !== "image") {
    shownSearch = null;
    lastResult = null;
    grid.replaceChildren();
    setStatus(searchStatus, "");
  }
  if (state.tab === "duplicates") showDuplicates(state);
  if (state.photo) openViewer(state.photo);
  else closeViewerNow();
}

window.addEventListener("popstate", () => applyState(readState()));

// -- tabs --------------------------------------------------------------------------------------
function showTab(name) {
  for (const tab of TABS) {
    const active = tab === name;
    $(`tab-${tab}`).setAttribute("aria-selected", String(active));
    $(`panel-${tab}`).hidden = !active;
  }
  if (name === "faces") loadFaces();
}
$("tab-search").addEventListener("click", () => go({ ...readState(), tab: "search" }));
$("tab-faces").addEventListener("click", () => go({ ...readState(), tab: "faces", photo: "" }));
$("tab-duplicates").addEventListener("click", () => go({ ...readState(), tab: "duplicates", photo: "" }));
$("home").addEventListener("click", (event) => { event.preventDefault(); go(readState().tab !== "search" ? { ...readState(), tab: "search" } : emptyState()); });

function emptyState() {
  return { tab: "search", q: "", like: "", plus: [], minus: [], tag: [], min: null, k: "", photo: "", threshold: "" };
}

// -- search ------------------------------------------------------------------------------------
const grid = $("grid");
const searchStatus = $("status");
let lastResult = null, lastLabel = "";

function k() {
  const value = parseInt($("k").value, 10);
  return Number.isFinite(value) ? Math.min(Math.max(value, 1), 200) : 24;
}

function describe(state) {
  const parts = [];
  if (state.q) parts.push(`“${state.q}”`);
  if (state.like) parts.push(`photos similar to ${state.likeName || `photo ${state.like}`}`);
  for (const p of state.plus) parts.push(`+ ${p}`);
  for (const m of state.minus) parts.push(`− ${m}`);
  let label = parts.join(" ");
  if (state.tag.length) label += ` tagged ${state.tag.join(", ")}`;
  return label;
}

// A photo as a card: thumbnail, name with a badge (a score, "keep", ...), its folder and any
// extra lines; a click opens the photo. Search results and duplicate groups both use it.
function photoCard(photo, badge, onClick, { className = "hit", extra = [] } = {}) {
  const card = el("button", className);
  card.type = "button";
  card.dataset.mediaId = photo.media_id;
  card.title = `${photo.path}\nclick: open this photo`;
  const img = el("img");
  img.src = photo.thumbnail;
  img.alt = photo.name;
  img.loading = "lazy";
  const caption = el("span", "caption");
  const line = el("span", "line");
  line.append(el("span", "name", photo.name), badge);
  const folder = folderOf(photo.path);
  // shown right to left so that a long folder loses its start, not the end that tells folders
  // apart; the marks keep the path itself reading left to right
  const where = el("span", "folder", `\u200e${folder}\u200e`);
  where.title = folder;
  caption.append(line, where, ...extra);
  card.append(img, caption);
  card.addEventListener("click", () => onClick(photo));
  return card;
}

function hitCard(hit, onClick) {
  return photoCard(hit, el("span", "score", hit.score.toFixed(3)), onClick);
}

function renderHits() {
  if (!lastResult) return;
  const min = readState().min;
  const shown = lastResult.results.filter((h) => min === null || h.score >= min);
  grid.replaceChildren(...shown.map((hit) => hitCard(hit, (h) => go({ ...readState(), photo: String(h.media_id) }))));
  const n = shown.length, hidden = lastResult.results.length - n;
  const below = hidden ? ` (${hidden} below the minimum score ${min} hidden)` : "";
  setStatus(searchStatus, n
    ? `${n} result${n === 1 ? "" : "s"} for ${lastLabel} in ${Math.round(lastResult.took_ms)} ms${below} · ${lastResult.photos_in_index} photos indexed`
    : `no results for ${lastLabel}${below} · ${lastResult.photos_in_index} photos indexed`);
}

let searchSerial = 0; // answers to superseded searches are dropped

async function run(label, request, key) {
  const serial = ++searchSerial;
  shownSearch = key;
  setStatus(searchStatus, `searching for ${label}…`);
  try {
    const result = await request();
    if (serial !== searchSerial) return;
    lastResult = result;
    lastLabel = label;
    renderHits();
  } catch (error) {
    if (serial !== searchSerial) return;
    shownSearch = null; // searching again asks again
    if (!error.offline) { // a server that is down may come back: its last answer stays on screen
      lastResult = null;
      grid.replaceChildren();
    }
    setStatus(searchStatus, error.message, true);
  }
}

async function runSearch(state) {
  const params = new URLSearchParams();
  if (state.q) params.set("q", state.q);
  if (state.like) params.set("like", state.like);
  for (const key of ["plus", "minus", "tag"]) for (const v of state[key]) params.append(key, v);
  params.set("k", String(state.k ? Math.min(Math.max(parseInt(state.k, 10) || 24, 1), 200) : 24));
  let likeName = "";
  if (state.like) {
    try { likeName = (await api(`/v1/media/${encodeURIComponent(state.like)}`)).name; } catch (_) { /* the search says why */ }
  }
  run(describe({ ...state, likeName }), () => api(`/v1/search?${params}`), searchKey(state));
}

function formState() {
  const min = parseFloat($("min").value);
  const tag = $("tag").value;
  return {
    ...emptyState(),
    q: $("q").value.trim(), plus: splitTerms($("plus").value), minus: splitTerms($("minus").value),
    tag: tag ? [tag] : [], min: Number.isFinite(min) ? min : null, k: String(k()),
  };
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const state = formState();
  if (!state.q && !state.plus.length) {
    setStatus(searchStatus, "type what you are looking for (or concepts under “more of”)", true);
    return;
  }
  shownSearch = null; // the Search button always searches again
  go(state);
});
// the tag and the minimum score act at once on the current query
$("tag").addEventListener("change", () => {
  const state = readState();
  if (state.q || state.like || state.plus.length) go({ ...state, tag: $("tag").value ? [$("tag").value] : [], photo: "" });
});
$("min").addEventListener("change", () => {
  const state = readState();
  const min = parseFloat($("min").value);
  if (state.q || state.like || state.plus.length) go({ ...state, min: Number.isFinite(min) ? min : null }, true);
});

async function loadTags() {
  try {
    const { tags } = await api("/v1/tags");
    const select = $("tag");
    for (const t of tags) {
      const option = el("option", "", `${t.label} (${t.photos})`);
      option.value = t.label;
      select.append(option);
    }
    $("tag-label").hidden = tags.length === 0;
    showTagChoice(readState().tag[0] || "");
  } catch (_) { /* an older server: no tag filter */ }
}

// the tag menu shows the tag of the URL, also one the list does not hold (yet, or in another case)
function showTagChoice(tag) {
  const select = $("tag");
  select.querySelectorAll("option[data-from-url]").forEach((o) => o.remove());
  let option = [...select.options].find((o) => o.value.toLowerCase() === tag.toLowerCase()); // tags ignore case
  if (!option) { // not listed (yet): shown as the URL has it
    option = el("option", "", tag);
    option.value = tag;
    option.dataset.fromUrl = "1";
    select.append(option);
  }
  select.value = option.value;
  if (tag) $("tag-label").hidden = false;
}

// -- search by an example image (drop or choose) -------------------------------------------------
const drop = $("drop");
const fileInput = $("file");

function searchByImage(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) { setStatus(searchStatus, `${file.name} is not an image`, true); return; }
  const preview = $("drop-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  const form = new FormData();
  form.append("image", file);
  form.append("k", String(k()));
  const tag = $("tag").value;
  if (tag) form.append("tag", tag);
  // an upload cannot live in the URL: the page goes to a blank query, so Back returns to the last one
  history.pushState({ page: true }, "", "/");
  closeViewerNow();
  run(`the image ${file.name}`, () => api("/v1/search", { method: "POST", body: form }), "image");
}

drop.addEventListener("click", () => fileInput.click());
drop.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") { event.preventDefault(); fileInput.click(); }
});
fileInput.addEventListener("change", () => { searchByImage(fileInput.files[0]); fileInput.value = ""; });
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  searchByImage(event.dataTransfer.files[0]);
});

// -- the full view of one photo ------------------------------------------------------------------
const viewer = $("viewer");
let viewerId = null;

function closeViewer() {
  const state = readState();
  if (!state.photo) return;
  if (history.state && history.state.photoFromPage) history.back();
  else go({ ...state, photo: "" }, true); // opened from a bookmark: nothing of ours to go back to
}

function closeViewerNow() {
  viewerId = null;
  viewer.hidden = true;
  document.body.classList.remove("viewing");
}

$("viewer-close").addEventListener("click", closeViewer);
viewer.addEventListener("click", (event) => { if (event.target === viewer) closeViewer(); });
document.addEventListener("keydown", (event) => { if (event.key === "Escape" && !viewer.hidden) closeViewer(); });
$("viewer-all-similar").addEventListener("click", () => {
  if (viewerId) go({ ...emptyState(), like: viewerId, k: readState().k });
});

function fact(list, term, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = el("dt", "", term);
  const dd = el("dd");
  if (value instanceof Node) dd.append(value); else dd.textContent = value;
  list.append(dt, dd);
}

async function openViewer(id) {
  if (viewerId === id && !viewer.hidden) return;
  viewerId = id;
  viewer.hidden = false;
  document.body.classList.add("viewing");
  const frame = $("viewer-frame");
  frame.querySelectorAll(".face, .text-box").forEach((n) => n.remove());
  $("viewer-img").src = `/v1/media/${encodeURIComponent(id)}/thumbnail?size=1024`;
  $("viewer-name").textContent = "…";
  $("viewer-facts").replaceChildren();
  $("viewer-similar").replaceChildren();
  $("viewer-faces").textContent = "";
  $("viewer-close").focus();
  let photo;
  try {
    photo = await api(`/v1/media/${encodeURIComponent(id)}`);
  } catch (error) {
    $("viewer-name").textContent = error.message;
    return;
  }
  if (viewerId !== id) return;
  $("viewer-name").textContent = photo.name;
  if (photo.width && photo.height) $("viewer-frame").style.setProperty("--ar", String(photo.width / photo.height));
  $("viewer-img").alt = photo.name;
  const facts = $("viewer-facts");
  fact(facts, "Folder", photo.folder);
  fact(facts, "Path", photo.path);
  fact(facts, "Size", `${humanBytes(photo.bytes)}${photo.width ? ` · ${photo.width} × ${photo.height} px` : ""}`);
  fact(facts, "Taken", formatDate(photo.taken_at));
  fact(facts, "Modified", formatDate(photo.modified_at));
  if (photo.tags.length) {
    const tags = el("span", "tags");
    for (const t of photo.tags) {
      const chip = el("button", "chip", t.label);
      chip.type = "button";
      chip.title = `score ${t.score.toFixed(3)}: click for photos with this tag`;
      chip.addEventListener("click", () => {
        const state = readState();
        const base = state.q || state.like || state.plus.length ? state : { ...emptyState(), like: id };
        go({ ...base, tag: [t.label], photo: "" });
      });
      tags.append(chip);
    }
    fact(facts, "Tags", tags);
  }
  if (photo.text && photo.text.length && photo.width && photo.height) {
    // the words read in the photo (index --ocr): listed, and each line's box drawn over the photo
    fact(facts, "Text", el("span", "photo-text", photo.text.map((line) => line.text).join("\n")));
    const frame = $("viewer-frame");
    for (const line of photo.text) {
      const [x0, y0, x1, y1] = line.box;
      const box = el("div", "text-box");
      box.title = line.text;
      Object.assign(box.style, {
        left: `${(100 * x0) / photo.width}%`, top: `${(100 * y0) / photo.height}%`,
        width: `${(100 * (x1 - x0)) / photo.width}%`, height: `${(100 * (y1 - y0)) / photo.height}%`,
      });
      frame.append(box);
    }
  }
  $("viewer-original").href = photo.original;
  showFaces(id);
  try {
    const similar = await api(`/v1/search?${new URLSearchParams({ like: id, k: "8" })}`);
    if (viewerId !== id) return;
    $("viewer-similar").replaceChildren(...similar.results.map(
      (hit) => hitCard(hit, (h) => go({ ...readState(), photo: String(h.media_id) }))));
  } catch (error) {
    $("viewer-similar").replaceChildren(el("p", "status error", error.message));
  }
}

async function showFaces(id) {
  const note = $("viewer-faces");
  if (!facesAvailable) return;
  if (!token()) { note.textContent = "Faces: unlock the Faces tab with the access token to see them."; return; }
  try {
    const found = await api(`/v1/faces/photos/${encodeURIComponent(id)}`, { headers: authHeaders() });
    if (viewerId !== id) return;
    const frame = $("viewer-frame");
    for (const face of found.faces) {
      const [x0, y0, x1, y1] = face.face_box;
      const box = el("div", "face");
      Object.assign(box.style, {
        left: `${(100 * x0) / found.width}%`, top: `${(100 * y0) / found.height}%`,
        width: `${(100 * (x1 - x0)) / found.width}%`, height: `${(100 * (y1 - y0)) / found.height}%`,
      });
      const label = face.name || (face.cluster ? `group ${face.cluster}` : "unknown");
      box.append(el("span", face.name ? "who named" : "who", label));
      frame.append(box);
    }
    const names = found.faces.map((f) => f.name).filter(Boolean);
    note.textContent = found.faces.length
      ? `${found.faces.length} face${found.faces.length === 1 ? "" : "s"}${names.length ? `: ${names.join(", ")}` : ""}`
      : "No faces found in this photo.";
  } catch (error) {
    if (error.status === 401) forgetToken();
    note.textContent = `Faces: ${error.message}`;
  }
}

// -- duplicates ----------------------------------------------------------------------------------
// The server finds the groups (seconds on a large catalog) and keeps its last answer; the page
// asks again only when the threshold changes or "Find duplicates" is pressed.
const dupsStatus = $("dups-status");
const DUP_PAGE = 50; // groups drawn at a time: a large library may have thousands
let shownDuplicates = null; // the threshold whose groups are shown ("" for the model's)
let duplicatesDefault = null; // the model's threshold, from the first answer
let duplicatesSerial = 0;

function duplicateCard(copy, isBest, similar = false) {
  let badge;
  if (isBest) badge = similar ? el("span") : el("span", "badge keep", "keep");
  else if (copy.same_bytes_as_best) badge = el("span", "badge same", "same bytes");
  else badge = el("span", "score", copy.similarity.toFixed(3));
  const to = similar ? "the first photo" : "the copy to keep";
  if (!isBest && !copy.same_bytes_as_best) badge.title = `similarity to ${to}`;
  if (!isBest && copy.same_bytes_as && !copy.same_bytes_as_best) badge.title += ` · same bytes as ${copy.same_bytes_as}`;
  const pixels = copy.width && copy.height ? `${copy.width} × ${copy.height} px · ` : "";
  return photoCard(copy, badge, (c) => go({ ...readState(), photo: String(c.media_id) }),
    { className: "hit dup", extra: [el("span", "dims", `${pixels}${humanBytes(copy.size)}`)] });
}

// A group of copies (the one to keep first, the others redundant), or a group of similar shots:
// each shows something the others lack, so none is called redundant and none is marked to keep.
function duplicateGroup(group, similar) {
  const box = el("section", similar ? "dup-group similar" : "dup-group");
  const files = 1 + group.others.length;
  box.append(el("h3", "", similar ? `Similar shots — keep all · ${files} photos`
    : `${group.kind === "exact" ? "Identical files" : "Same picture"} · ${files} files · `
      + `${humanBytes(group.redundant_bytes)} besides the copy to keep`));
  const row = el("div", "dup-row");
  row.append(duplicateCard(group.best, true, similar),
    ...group.others.map((m) => duplicateCard(m, false, similar)));
  box.append(row);
  return box;
}

// the groups of copies, then the similar shots below them, drawn DUP_PAGE at a time
function renderDuplicates(body, from = 0) {
  const list = $("dups");
  if (from === 0) list.replaceChildren();
  list.querySelector(".more")?.remove();
  const rows = [...body.groups.map((g) => [g, false]), ...(body.similar || []).map((g) => [g, true])];
  list.append(...rows.slice(from, from + DUP_PAGE).map(([g, similar]) => duplicateGroup(g, similar)));
  const left = rows.length - from - DUP_PAGE;
  if (left > 0) {
    const more = el("button", "more", `Show ${Math.min(left, DUP_PAGE)} more of ${left} groups`);
    more.type = "button";
    more.addEventListener("click", () => renderDuplicates(body, from + DUP_PAGE));
    list.append(more);
  }
}

async function showDuplicates(state) {
  const input = $("dups-threshold");
  if (state.threshold) input.value = state.threshold;
  else if (duplicatesDefault !== null) input.value = String(duplicatesDefault);
  if (shownDuplicates === state.threshold) return;
  shownDuplicates = state.threshold;
  const serial = ++duplicatesSerial;
  setStatus(dupsStatus, "looking for duplicates (a large catalog takes a while)…");
  const params = state.threshold ? `?${new URLSearchParams({ threshold: state.threshold })}` : "";
  let body;
  try {
    body = await api(`/v1/duplicates${params}`);
  } catch (error) {
    if (serial !== duplicatesSerial) return;
    shownDuplicates = null;
    $("dups").replaceChildren();
    setStatus(dupsStatus, error.message, true);
    return;
  }
  if (serial !== duplicatesSerial) return;
  if (!state.threshold && body.photos) { // an empty catalog has no model to take a default from
    duplicatesDefault = body.threshold;
    input.value = String(body.threshold);
  }
  const seconds = Object.values(body.seconds).reduce((a, b) => a + b, 0);
  const how = `similarity ≥ ${body.threshold}${body.geometric_check ? ", confirmed by matching keypoints" : ""}`;
  const when = body.cached ? "unchanged since the last look" : `found in ${seconds.toFixed(1)} s`;
  const n = body.groups.length;
  const kinds = body.exact_groups && body.near_groups
    ? ` (${body.exact_groups} of identical files, ${body.near_groups} of the same picture)` : "";
  const alike = body.similar ? body.similar.length : 0;
  const shots = alike ? ` · ${alike} group${alike === 1 ? "" : "s"} of similar shots (keep all)` : "";
  setStatus(dupsStatus, n
    ? `${n} group${n === 1 ? "" : "s"} among ${body.photos} photos${kinds} · ${body.redundant_files} `
      + `file${body.redundant_files === 1 ? "" : "s"}, ${humanBytes(body.redundant_bytes)} besides the copies to keep`
      + `${shots} · ${how} · ${when}`
    : `no duplicates among ${body.photos} photos${shots} · ${how} · ${when}`);
  renderDuplicates(body);
}

$("dups-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = parseFloat($("dups-threshold").value);
  if ($("dups-threshold").value && !(value >= -1 && value <= 1)) {
    setStatus(dupsStatus, "the similarity is a number from -1 to 1", true);
    return;
  }
  // the model's own value stays out of the URL, so the link keeps following the model
  const threshold = !Number.isFinite(value) || value === duplicatesDefault ? "" : String(value);
  shownDuplicates = null; // the button always asks again
  go({ ...readState(), tab: "duplicates", threshold, photo: "" });
});

// -- faces ---------------------------------------------------------------------------------------
const facesStatus = $("faces-status");
const TOKEN_KEY = "vsearch.token";
const faceUrls = []; // object URLs of face crops, released on each reload of the tab

const token = () => sessionStorage.getItem(TOKEN_KEY);
function authHeaders() {
  return token() ? { Authorization: `Bearer ${token()}` } : {};
}

function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  $("token").value = "";
  showTokenForm();
}

function showTokenForm() {
  const has = Boolean(token());
  $("token-form").hidden = !facesAvailable || has;
  $("token-kept").hidden = !facesAvailable || !has;
  $("faces-body").hidden = !facesAvailable || !has;
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  loadFaces();
});
$("forget-token").addEventListener("click", () => { forgetToken(); setStatus(facesStatus, "the token is forgotten"); });

// a face crop needs the token, which an <img src> cannot send: fetch it and show a blob
async function faceImage(url, alt) {
  const img = el("img", "face-img");
  img.alt = alt;
  try {
    const response = await fetch(url, { headers: authHeaders() });
    if (!response.ok) return null;
    const blobUrl = URL.createObjectURL(await response.blob());
    faceUrls.push(blobUrl);
    img.src = blobUrl;
    return img;
  } catch (_) {
    return null;
  }
}

function initials(name) {
  return name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join("");
}

let facesLoading = null;
function loadFaces() {
  if (!facesLoading) facesLoading = reloadFaces().finally(() => { facesLoading = null; });
  return facesLoading;
}

async function reloadFaces() {
  showTokenForm();
  if (!facesAvailable) {
    setStatus(facesStatus, "face features are not available on this server");
    return;
  }
  if (!token()) {
    setStatus(facesStatus, "enter the access token to see enrolled people");
    return;
  }
  let result;
  try {
    result = await api("/v1/faces", { headers: authHeaders() });
  } catch (error) {
    if (error.status === 401) forgetToken();
    setStatus(facesStatus, error.message, true);
    return;
  }
  while (faceUrls.length) URL.revokeObjectURL(faceUrls.pop());
  const n = result.people.length;
  setStatus(facesStatus, n
    ? `${n} enrolled ${n === 1 ? "person" : "people"} · threshold ${result.threshold.toFixed(3)}${result.calibrated ? " (calibrated)" : ""}`
    : "nobody is enrolled yet");
  const cards = await Promise.all(result.people.map(async (person) => {
    const card = el("div", "person");
    const face = await faceImage(`/v1/faces/people/${encodeURIComponent(person.name)}/face`, person.name);
    card.append(face || el("span", "face-img placeholder", initials(person.name)));
    const about = el("div", "about");
    about.append(el("strong", "person-name", person.name),
      el("span", "muted", `${person.templates} template${person.templates === 1 ? "" : "s"} · in ${person.photos} photo${person.photos === 1 ? "" : "s"}`));
    const remove = el("button", "danger", "Remove");
    remove.type = "button";
    remove.addEventListener("click", () => removePerson(person.name));
    about.append(remove);
    card.append(about);
    return card;
  }));
  $("people").replaceChildren(...cards);
  const select = $("verify-name");
  const chosen = select.value;
  select.replaceChildren(...result.people.map((p) => { const o = el("option", "", p.name); o.value = p.name; return o; }));
  if (result.people.some((p) => p.name === chosen)) select.value = chosen;
  if (n === 0) select.append(el("option", "", "enroll someone first"));
  select.disabled = n === 0;
  $("verify-form").querySelector("button").disabled = n === 0;
  showFaceCounts(result.faces);
  facesSeen = facesSummary(result);
  loadClusters(result.groups || []);
}

// What the tab shows that indexing elsewhere can change: reloaded when it moves.
let facesSeen = "";
function facesSummary(result) {
  return JSON.stringify([result.faces, result.people.map((p) => [p.name, p.templates, p.photos]), result.groups]);
}

function showFaceCounts(faces) {
  const note = $("faces-counts");
  if (!faces) { note.textContent = ""; return; }
  const loose = faces.total - faces.grouped - faces.named;
  note.textContent = `${faces.total} face${faces.total === 1 ? "" : "s"} in your photos`
    + (loose > 0 ? ` · ${loose} not in a group yet` : "");
}

// Faces indexed while the page is open (vsearch index --faces, a watched folder) show up on their
// own: while the tab is visible its summary is fetched every few seconds and the tab redrawn when
// it moved.
setInterval(async () => {
  if ($("panel-faces").hidden || !facesAvailable || !token() || facesLoading || document.hidden) return;
  try {
    const result = await api("/v1/faces", { headers: authHeaders() });
    if (facesSummary(result) !== facesSeen) loadFaces();
  } catch (_) { /* the next reload says what is wrong */ }
}, 10000);

// "Find groups": the server groups the faces in one of its workers; the page follows its progress.
async function followGrouping(job) {
  const note = $("groups-progress");
  const button = $("find-groups");
  button.disabled = job.state === "running";
  while (job.state === "running") {
    note.textContent = job.total ? `grouping faces: ${job.done} of ${job.total}` : "grouping faces…";
    await new Promise((resolve) => setTimeout(resolve, 500));
    try {
      job = await api("/v1/faces/clusters/find", { headers: authHeaders() });
    } catch (error) {
      note.textContent = error.message;
      button.disabled = false;
      return;
    }
  }
  button.disabled = false;
  if (job.state === "failed") { setStatus(note, `grouping failed: ${job.error}`, true); return; }
  if (job.state === "done") {
    setStatus(note, `${job.groups} group${job.groups === 1 ? "" : "s"} found among ${job.total} face${job.total === 1 ? "" : "s"}`);
    loadFaces();
  }
}

$("find-groups").addEventListener("click", async () => {
  try {
    followGrouping(await api("/v1/faces/clusters/find", { method: "POST", headers: authHeaders() }));
  } catch (error) {
    setStatus($("groups-progress"), error.message, true);
  }
});

async function removePerson(name) {
  if (!window.confirm(`Remove ${name} and all their enrolled faces?`)) return;
  try {
    await api(`/v1/faces/${encodeURIComponent(name)}`, { method: "DELETE", headers: authHeaders() });
    loadFaces();
  } catch (error) {
    setStatus(facesStatus, error.message, true);
  }
}

$("enroll-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = $("enroll-status");
  const name = $("enroll-name").value.trim();
  const file = $("enroll-file").files[0];
  if (!name || !file) { setStatus(status, "give a name and a photo", true); return; }
  const form = new FormData();
  form.append("name", name);
  form.append("image", file);
  setStatus(status, `enrolling ${name}…`);
  try {
    const res = await api("/v1/faces/enroll", { method: "POST", body: form, headers: authHeaders() });
    setStatus(status, res.added === 0 && res.already_enrolled && res.already_enrolled.length
      ? `this photo is already enrolled as ${res.name}`
      : `${res.created ? "enrolled" : "added a photo to"} ${res.name} (${res.templates} template${res.templates === 1 ? "" : "s"})`);
    $("enroll-form").reset();
    loadFaces();
  } catch (error) {
    setStatus(status, error.message, true);
  }
});

$("verify-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = $("verify-status");
  const name = $("verify-name").value;
  const file = $("verify-file").files[0];
  if (!name || !file) { setStatus(status, "choose a person and a photo", true); return; }
  const form = new FormData();
  form.append("name", name);
  form.append("image", file);
  setStatus(status, `verifying against ${name}…`);
  try {
    const res = await api("/v1/faces/verify", { method: "POST", body: form, headers: authHeaders() });
    const far = res.far_estimate === null ? "" : ` · false-accept rate about ${res.far_estimate.toPrecision(2)}`;
    setStatus(status, `${res.match ? "✓ match" : "✗ no match"}: ${name}, score ${res.score.toFixed(3)} `
      + `${res.match ? "≥" : "<"} threshold ${res.threshold.toFixed(3)}${far}`);
    status.classList.toggle("match", res.match);
  } catch (error) {
    setStatus(status, error.message, true);
  }
});

async function loadClusters(lookAlikes = []) {
  const note = $("clusters-status");
  const looks = new Map(lookAlikes.map((g) => [g.cluster, g]));
  let clusters;
  try {
    ({ clusters } = await api("/v1/faces/clusters", { headers: authHeaders() }));
  } catch (error) {
    note.textContent = error.message;
    return;
  }
  note.textContent = clusters.length ? "" : "None yet: Find groups sorts the faces of photos indexed with --faces into people.";
  const cards = await Promise.all(clusters.map(async (c) => {
    const card = el("form", "cluster");
    card.dataset.cluster = c.cluster;
    const faces = el("div", "cluster-faces");
    for (const f of c.faces) {
      const img = await faceImage(`/v1/faces/crops/${f.face_id}`, `face in photo ${f.media_id}`);
      if (!img) continue;
      const link = el("button", "face-link");
      link.type = "button";
      link.title = "open this photo";
      link.append(img);
      link.addEventListener("click", () => go({ ...readState(), tab: "search", photo: String(f.media_id) }));
      faces.append(link);
    }
    const input = el("input");
    input.type = "text";
    input.placeholder = "Name this person";
    input.setAttribute("aria-label", `Name group ${c.cluster}`);
    input.required = true;
    const save = el("button", "", "Save");
    save.type = "submit";
    const row = el("div", "row");
    row.append(input, save);
    const like = looks.get(c.cluster);
    const size = `${c.size} face${c.size === 1 ? "" : "s"}`;
    card.append(el("span", "muted", like ? `${size} · looks like ${like.person} (${like.score.toFixed(2)})` : size), faces, row);
    if (like) { input.value = like.person; save.textContent = `Add to ${like.person}`; }
    input.addEventListener("input", () => {
      save.textContent = like && input.value.trim() === like.person ? `Add to ${like.person}` : "Save";
    });
    // naming a group that looks like someone enrolled as a new name: the server offers the merge
    // (409), and only then a tick appears to confirm that it is someone else
    let otherBox = null;
    const says = el("p", "status");
    card.append(says);
    card.addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = new FormData();
      form.append("name", input.value.trim());
      if (otherBox && otherBox.checked) form.append("new_person", "true");
      try {
        await api(`/v1/faces/clusters/${c.cluster}/name`, { method: "POST", body: form, headers: authHeaders() });
        loadFaces();
      } catch (error) {
        setStatus(says, error.message, true);
        if (error.status === 409 && !otherBox) {
          otherBox = el("input");
          otherBox.type = "checkbox";
          const other = el("label", "muted someone-else");
          other.append(otherBox, " someone else: save as a new person");
          says.after(other);
        }
      }
    });
    return card;
  }));
  $("clusters").replaceChildren(...cards);
}

// -- start ---------------------------------------------------------------------------------------
api("/healthz").then((health) => {
  facesAvailable = health.faces;
  $("health").textContent = `${health.photos_in_index} photos · ${health.model}`;
  $("health").title = health.model;
  showTokenForm();
}).catch(() => { $("health").textContent = "server not answering"; })
  .finally(() => {
    history.replaceState({ page: true }, "", window.location.pathname + window.location.search);
    applyState(readState());
    loadTags();
  });

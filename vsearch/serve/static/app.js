// vsearch web page: plain JS against the JSON API of `vsearch serve`; no build step.
"use strict";

const $ = (id) => document.getElementById(id);
let facesAvailable = false; // from /healthz: whether this server has the face endpoints

// -- helpers -----------------------------------------------------------------------------------
async function api(url, options = {}) {
  const response = await fetch(url, options);
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

// -- tabs --------------------------------------------------------------------------------------
function showTab(name) {
  for (const tab of ["search", "faces"]) {
    const active = tab === name;
    $(`tab-${tab}`).setAttribute("aria-selected", String(active));
    $(`panel-${tab}`).hidden = !active;
  }
  if (name === "faces") loadPeople();
}
$("tab-search").addEventListener("click", () => showTab("search"));
$("tab-faces").addEventListener("click", () => showTab("faces"));

// -- search ------------------------------------------------------------------------------------
const grid = $("grid");
const searchStatus = $("status");

function k() {
  const value = parseInt($("k").value, 10);
  return Number.isFinite(value) ? Math.min(Math.max(value, 1), 200) : 24;
}

function render(result, label) {
  grid.replaceChildren();
  for (const hit of result.results) {
    const card = document.createElement("button");
    card.type = "button";
    card.className = "hit";
    card.dataset.mediaId = hit.media_id;
    card.title = `${hit.path}\nclick: photos similar to this one`;
    const img = document.createElement("img");
    img.src = hit.thumbnail;
    img.alt = hit.name;
    img.loading = "lazy";
    const caption = document.createElement("span");
    caption.className = "caption";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = hit.name;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    caption.append(name, score);
    card.append(img, caption);
    card.addEventListener("click", () => similar(hit));
    grid.append(card);
  }
  const n = result.results.length;
  setStatus(searchStatus, n
    ? `${n} result${n === 1 ? "" : "s"} for ${label} in ${Math.round(result.took_ms)} ms (${result.photos_in_index} photos indexed)`
    : `no results for ${label} (${result.photos_in_index} photos indexed)`);
}

async function run(label, request) {
  setStatus(searchStatus, `searching for ${label}…`);
  try {
    render(await request(), label);
  } catch (error) {
    grid.replaceChildren();
    setStatus(searchStatus, error.message, true);
  }
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("q").value.trim();
  if (!q) { setStatus(searchStatus, "type what you are looking for", true); return; }
  const params = new URLSearchParams({ q, k: String(k()) });
  run(`“${q}”`, () => api(`/v1/search?${params}`));
});

function similar(hit) {
  const params = new URLSearchParams({ like: String(hit.media_id), k: String(k()) });
  window.scrollTo({ top: 0, behavior: "smooth" });
  run(`photos similar to ${hit.name}`, () => api(`/v1/search?${params}`));
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
  run(`the image ${file.name}`, () => api("/v1/search", { method: "POST", body: form }));
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

// -- faces ---------------------------------------------------------------------------------------
const facesStatus = $("faces-status");
const TOKEN_KEY = "vsearch.token";
$("token").value = sessionStorage.getItem(TOKEN_KEY) || "";

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  loadPeople();
});

async function loadPeople() {
  const table = $("people");
  const body = table.querySelector("tbody");
  if (!facesAvailable) {
    table.hidden = true;
    setStatus(facesStatus, "face endpoints are not available on this server");
    return;
  }
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    table.hidden = true;
    setStatus(facesStatus, "enter the access token to list enrolled people");
    return;
  }
  try {
    const result = await api("/v1/faces", { headers: authHeaders() });
    body.replaceChildren();
    for (const person of result.people) {
      const row = document.createElement("tr");
      const name = document.createElement("td");
      name.textContent = person.name;
      const count = document.createElement("td");
      count.textContent = String(person.templates);
      const action = document.createElement("td");
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Remove";
      remove.addEventListener("click", () => removePerson(person.name));
      action.append(remove);
      row.append(name, count, action);
      body.append(row);
    }
    table.hidden = result.people.length === 0;
    setStatus(facesStatus, result.people.length
      ? `${result.people.length} enrolled ${result.people.length === 1 ? "person" : "people"}`
      : "nobody is enrolled yet (vsearch faces enroll NAME PHOTO, or POST /v1/faces/enroll)");
  } catch (error) {
    table.hidden = true;
    setStatus(facesStatus, error.message, true);
  }
}

async function removePerson(name) {
  if (!window.confirm(`Remove ${name} and all their enrolled faces?`)) return;
  try {
    await api(`/v1/faces/${encodeURIComponent(name)}`, { method: "DELETE", headers: authHeaders() });
    loadPeople();
  } catch (error) {
    setStatus(facesStatus, error.message, true);
  }
}

// -- status line ---------------------------------------------------------------------------------
api("/healthz").then((health) => {
  facesAvailable = health.faces;
  $("health").textContent = `${health.photos_in_index} photos · ${health.model}`;
  $("health").title = health.model;
  $("token-form").hidden = !health.faces;
}).catch(() => { $("health").textContent = "server not answering"; });

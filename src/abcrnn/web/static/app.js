// The abcrnn page: read the form, call the JSON API and show each tune.
// Server text is always inserted with textContent, never parsed as HTML.
"use strict";

const hasAbcjs = typeof window.ABCJS !== "undefined";
const byId = (id) => document.getElementById(id);

// Send a JSON request and return the parsed body. On failure, throw an Error
// with the server's sentence, or a plain one when the server is unreachable.
async function callApi(path, body) {
  let response;
  try {
    response = await fetch(path, body === undefined ? {} : {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body),
    });
  } catch (error) {
    throw new Error("The server could not be reached. Is `abcrnn serve` running?");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (error) {
    data = null;
  }
  if (!response.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : null;
    throw new Error(detail || `The server returned status ${response.status}.`);
  }
  return data;
}

function showError(element, error) {
  element.textContent = error ? error.message : "";
  element.hidden = !error;
}

function drawScore(element, abc) {
  if (!hasAbcjs) {
    return;
  }
  try {
    window.ABCJS.renderAbc(element, abc, {responsive: "resize", add_classes: true});
  } catch (error) {
    element.textContent = "The score could not be drawn from this text.";
  }
}

async function loadRuns() {
  const select = byId("run");
  const runs = await callApi("/api/runs");
  select.replaceChildren();
  for (const run of runs) {
    select.append(new Option(run.name, run.name));
  }
  if (runs.length === 0) {
    throw new Error(
      "No trained runs were found in the runs folder. Train one with " +
      "`abcrnn train`, or start the server with --runs-dir pointing at your runs.");
  }
  await describeRun();
}

async function describeRun() {
  const info = byId("run-info");
  const name = byId("run").value;
  info.textContent = "Loading the model…";
  try {
    const run = await callApi(`/api/runs/${encodeURIComponent(name)}`);
    byId("top_k").max = String(run.vocab_size);
    const step = run.step === null ? "unknown step" : `step ${run.step}`;
    info.textContent = `${run.checkpoint}, ${step}, ` +
      `${run.vocab_size} characters in the vocabulary.`;
  } catch (error) {
    info.textContent = error.message;
  }
}

function numberOrNull(id) {
  const text = byId(id).value.trim();
  return text === "" ? null : Number(text);
}

function readRequest() {
  const prime = byId("prime").value;
  return {
    run: byId("run").value,
    num_tunes: numberOrNull("num_tunes"),
    header: {
      title: byId("title").value.trim(),
      meter: byId("meter").value.trim(),
      unit_length: byId("unit_length").value,
      key: byId("key").value,
      mode: byId("mode").value,
    },
    prime: prime.trim() === "" ? null : prime,
    sampling: {
      temperature: numberOrNull("temperature"),
      top_k: numberOrNull("top_k"),
      top_p: numberOrNull("top_p"),
      max_length: numberOrNull("max_length"),
      seed: numberOrNull("seed"),
    },
  };
}

function setLink(link, url) {
  link.hidden = !url;
  if (url) {
    link.href = url;
  } else {
    link.removeAttribute("href");
  }
}

function showFiles(card, files) {
  setLink(card.querySelector(".download-abc"), files.abc);
  setLink(card.querySelector(".download-mid"), files.mid);
  setLink(card.querySelector(".download-wav"), files.wav);
  const player = card.querySelector(".player");
  player.hidden = !files.wav;
  if (files.wav) {
    player.src = files.wav;
  } else {
    player.removeAttribute("src");
  }
  const failure = card.querySelector(".render-error");
  failure.textContent = files.error ? `Audio is missing: ${files.error}` : "";
  failure.hidden = !files.error;
}

function describeDiagnostic(item) {
  const bar = item.bar === null ? "" : `bar ${item.bar}, `;
  return `${item.severity} (${bar}line ${item.line}, column ${item.column}): ` +
    item.message;
}

// Diagnostics listed before the rest fold away under "N more".
const DIAGNOSTICS_SHOWN = 8;

function showCheck(card, report) {
  const verdict = card.querySelector(".verdict");
  const errors = report.diagnostics.filter((item) => item.severity === "error");
  verdict.textContent = report.valid ? "valid" :
    `${errors.length} error${errors.length === 1 ? "" : "s"}`;
  verdict.className = report.valid ? "verdict valid" : "verdict invalid";

  const list = card.querySelector(".diagnostics");
  list.replaceChildren();
  let target = list;
  report.diagnostics.forEach((item, index) => {
    if (index === DIAGNOSTICS_SHOWN) {
      const more = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = `${report.diagnostics.length - index} more`;
      const rest = document.createElement("ul");
      const holder = document.createElement("li");
      more.append(summary, rest);
      holder.append(more);
      list.append(holder);
      target = rest;
    }
    const entry = document.createElement("li");
    entry.textContent = describeDiagnostic(item);
    entry.className = item.severity;
    target.append(entry);
  });
}

function describeSettings(result, tune) {
  const s = result.sampling;
  const step = result.step === null ? "" : ` (step ${result.step})`;
  return `Made by run ${result.run}${step}, tune ${tune.index} of ` +
    `${result.num_tunes}, seed ${s.seed}, temperature ${s.temperature}, ` +
    `top-k ${s.top_k}, top-p ${s.top_p}, max length ${s.max_length}. ` +
    `Priming text: ${JSON.stringify(result.prime)}`;
}

async function recheck(card) {
  const error = card.querySelector(".tune-error");
  try {
    showCheck(card, await callApi("/api/check", {abc: card.abcText()}));
    showError(error, null);
  } catch (failure) {
    showError(error, failure);
  }
}

async function rerender(card) {
  const error = card.querySelector(".tune-error");
  try {
    const result = await callApi("/api/render", {abc: card.abcText()});
    showFiles(card, result.files);
    card.querySelector(".edited").hidden = true;
    showError(error, null);
  } catch (failure) {
    showError(error, failure);
  }
}

function makeCard(result, tune) {
  const card = byId("tune-template").content.firstElementChild.cloneNode(true);
  const editor = card.querySelector(".abc");
  const score = card.querySelector(".score");
  card.abcText = () => editor.value;
  card.querySelector(".tune-title").textContent =
    tune.check.title ? `${tune.index}. ${tune.check.title}` : `Tune ${tune.index}`;
  editor.value = tune.abc;
  card.querySelector(".made-with").textContent = describeSettings(result, tune);
  showFiles(card, tune.files);
  showCheck(card, tune.check);

  let timer = null;
  editor.addEventListener("input", () => {
    card.querySelector(".edited").hidden = false;
    clearTimeout(timer);
    timer = setTimeout(() => drawScore(score, editor.value), 300);
  });
  card.querySelector(".recheck").addEventListener("click", () => recheck(card));
  card.querySelector(".rerender").addEventListener("click", () => rerender(card));
  return card;
}

async function generate(event) {
  event.preventDefault();
  const button = byId("generate");
  const status = byId("status");
  button.disabled = true;
  status.textContent = "Composing…";
  showError(byId("error"), null);
  try {
    const result = await callApi("/api/generate", readRequest());
    const container = byId("tunes");
    container.replaceChildren();
    for (const tune of result.tunes) {
      const card = makeCard(result, tune);
      container.append(card);
      drawScore(card.querySelector(".score"), tune.abc);
    }
    status.textContent = `${result.tunes.length} tunes, seed ${result.sampling.seed}.`;
  } catch (error) {
    status.textContent = "";
    showError(byId("error"), error);
  } finally {
    button.disabled = false;
  }
}

function start() {
  byId("abcjs-missing").hidden = hasAbcjs;
  byId("settings").addEventListener("submit", generate);
  byId("run").addEventListener("change", describeRun);
  loadRuns().catch((error) => showError(byId("error"), error));
}

start();

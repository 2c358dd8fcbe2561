// modeldojo app: the few behaviours htmx does not cover — upload size check, run filter, live charts from
// server-sent events, comparison charts and the chat transcript. No external requests; uPlot draws charts.
"use strict";
window.dojoChartUpdates = 0; // counted by the browser tests: each redraw with new points

const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f"];

function chart(element, names, stepWord) {
  const width = Math.max(280, element.clientWidth || 480);
  const series = [{label: stepWord || "step"}].concat(names.map((name, index) => (
    {label: name, stroke: COLOURS[index % COLOURS.length], width: 2, spanGaps: true, points: {size: 5}})));
  return new uPlot({width: width, height: 240, series: series, scales: {x: {time: false}},
                    legend: {live: false}}, [[]].concat(names.map(() => [])), element);
}

// One chart whose series can grow: x = steps, one y array per series name (null where a series has no point).
class LiveChart {
  constructor(element, stepWord) {
    this.element = element; this.stepWord = stepWord; this.points = {}; this.plot = null; this.drawn = "";
    // A neighbour chart appearing later narrows this one: follow the element's width, never overflow it.
    new ResizeObserver(() => {
      if (this.plot && this.element.clientWidth) this.plot.setSize({width: this.element.clientWidth, height: 240});
    }).observe(element);
  }
  add(name, step, value) {
    (this.points[name] = this.points[name] || new Map()).set(step, value);
  }
  draw() {
    // A fast loop sends hundreds of points a second: after one redraw, the points arriving within the next
    // frame are drawn together at that frame (at most ~60 redraws a second, each with all that arrived).
    if (this.pending) return;
    const now = performance.now();
    if (now - (this.last || 0) > 50) { this.last = now; this.redraw(); return; }
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.last = performance.now(); this.redraw(); });
  }
  redraw() {
    // One curve when the task's main metric is among them (metrics of other scales would flatten it).
    const names = this.prefer && this.points[this.prefer] ? [this.prefer] : Object.keys(this.points);
    if (!names.length) return;
    const figure = this.element.closest("figure");
    if (figure) figure.hidden = false; // before sizing: a hidden element has no width
    const steps = [...new Set(names.flatMap((name) => [...this.points[name].keys()]))].sort((a, b) => a - b);
    const data = [steps].concat(names.map((name) => steps.map((step) => this.points[name].has(step) ? this.points[name].get(step) : null)));
    if (!this.plot || this.drawn !== names.join("\n")) { // another set of curves: a new chart
      if (this.plot) this.plot.destroy();
      this.element.textContent = "";
      this.plot = chart(this.element, names, this.stepWord);
      this.drawn = names.join("\n");
    }
    this.plot.setData(data);
    window.dojoChartUpdates += 1;
  }
}

function seconds(value) {
  if (value === null || value === undefined || !isFinite(value)) return "–";
  value = Math.max(0, Math.round(value));
  const minutes = Math.floor(value / 60);
  return minutes ? `${minutes} min ${value % 60} s` : `${value} s`;
}

function livePage(root) {
  const name = root.dataset.name;
  const words = JSON.parse(root.dataset.words);
  const loss = new LiveChart(document.getElementById("loss-chart"), words.step);
  const validation = new LiveChart(document.getElementById("validation-chart"), words.step);
  validation.prefer = root.dataset.primary || null;
  const log = document.getElementById("log");
  const progressStart = {};
  const source = new EventSource(`/runs/${encodeURIComponent(name)}/events`);
  let finished = false;

  source.addEventListener("dojo", (message) => {
    const event = JSON.parse(message.data);
    if (event.event === "metrics" && event.step !== null && event.step !== undefined) {
      let lossMoved = false, validationMoved = false;
      for (const [metric, value] of Object.entries(event.metrics)) {
        if (value === null) continue;
        if (metric.startsWith("train_")) { loss.add(metric.slice(6), event.step, value); lossMoved = true; }
        else if (metric.startsWith("val_") && metric !== "val_rows") {
          validation.add(metric.slice(4), event.step, value); validationMoved = true;
        }
      }
      if (lossMoved) loss.draw();
      if (validationMoved) validation.draw();
    } else if (event.event === "progress") {
      const bar = document.getElementById("progress");
      bar.max = event.total || 1; bar.value = event.completed;
      document.getElementById("progress-text").textContent = `${event.name}: ${event.completed} / ${event.total}` + (event.info ? ` · ${event.info}` : "");
      let first = progressStart[event.name];
      if (!first || event.elapsed < first.elapsed) { // a resumed process counts its time from zero again
        first = progressStart[event.name] = {elapsed: event.elapsed, completed: event.completed};
      }
      const done = event.completed - first.completed, took = event.elapsed - first.elapsed;
      document.getElementById("elapsed").textContent = seconds(event.elapsed);
      if (done > 0 && took > 0) {
        document.getElementById("eta").textContent = seconds((event.total - event.completed) * took / done);
      }
      if (event.rate) document.getElementById("speed").textContent = Number(event.rate).toFixed(1);
    } else if (event.event === "stage") {
      log.textContent += `${event.name}${event.detail ? ": " + event.detail : ""}\n`;
    } else if (["completed", "failed", "stopped"].includes(event.event)) {
      log.textContent += `${event.event}${event.error ? ": " + event.error : ""}\n`;
    }
  });

  source.addEventListener("state", (message) => {
    const state = JSON.parse(message.data);
    if (state.primary) validation.prefer = state.primary; // the task's main metric: the validation curve shown
    const badge = document.getElementById("state");
    badge.textContent = words[state.state] || state.state;
    badge.className = `state ${state.state}`;
    root.dataset.state = state.state;
    const queue = document.getElementById("queue");
    if (state.state === "queued" && state.job && state.job.position) {
      queue.textContent = root.dataset.queued.replace("{run}", state.job.behind || "").replace("{position}", state.job.position);
      queue.hidden = false;
    } else { queue.hidden = true; }
    document.getElementById("stop").hidden = !["running", "queued"].includes(state.state);
    document.getElementById("resume").hidden = state.state !== "stopped";
    const final = ["completed", "failed", "stopped", "cancelled"].includes(state.state);
    document.getElementById("stop-note").textContent = state.job && state.job.stopping && !final ? words.stopping : "";
    const processLog = document.getElementById("process-log");
    if (state.state === "failed" && state.log_tail && state.log_tail.length) {
      processLog.textContent = state.log_tail.join("\n"); processLog.hidden = false;
    }
    if (["completed", "failed", "stopped", "cancelled"].includes(state.state) && !finished) {
      finished = true;
      if (state.state === "completed") document.getElementById("progress").value = document.getElementById("progress").max;
      document.body.dispatchEvent(new Event("dojo-finished"));
    }
  });
  source.addEventListener("end", () => source.close());
}

function comparePage(root) {
  const charts = JSON.parse(root.dataset.charts);
  for (const [metric, runs] of Object.entries(charts)) {
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption");
    caption.textContent = metric;
    const holder = document.createElement("div");
    holder.className = "chart";
    figure.append(caption, holder);
    root.append(figure);
    const live = new LiveChart(holder, root.dataset.step);
    for (const [run, points] of Object.entries(runs)) {
      points[0].forEach((step, index) => live.add(run, step, points[1][index]));
    }
    live.draw();
  }
}

function chatPage(root) {
  const conversation = [];
  const form = document.getElementById("try-form");
  const message = document.getElementById("message");
  const hidden = document.getElementById("conversation");
  const show = () => {
    root.textContent = "";
    for (const turn of conversation) {
      const line = document.createElement("p");
      line.className = `turn ${turn.role}`;
      line.textContent = turn.content;
      root.append(line);
    }
  };
  form.addEventListener("htmx:configRequest", (event) => {
    const text = message.value.trim();
    if (!text) { event.preventDefault(); return; }
    conversation.push({role: "user", content: text});
    hidden.value = JSON.stringify(conversation);
    event.detail.parameters[root.dataset.field] = hidden.value;
    message.value = "";
    show();
  });
  document.body.addEventListener("htmx:afterSwap", (event) => {
    const answer = document.getElementById("prediction-value");
    if (event.detail.target.id === "answer" && answer) {
      conversation.push({role: "assistant", content: answer.textContent});
      show();
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const upload = document.getElementById("upload-form");
  if (upload) {
    const input = document.getElementById("file");
    input.addEventListener("change", () => {
      const file = input.files[0];
      const problem = document.getElementById("client-problem");
      if (!file) return;
      if (Number(upload.dataset.limit) && file.size > Number(upload.dataset.limit)) {
        problem.textContent = upload.dataset.tooLarge; problem.hidden = false; input.value = ""; return;
      }
      problem.hidden = true;
      document.getElementById("uploading").hidden = false;
      upload.submit();
    });
  }
  const filter = document.getElementById("filter");
  if (filter) {
    filter.addEventListener("input", () => {
      const words = filter.value.toLowerCase();
      for (const row of document.querySelectorAll("#runs tbody tr")) {
        row.hidden = words && !row.textContent.toLowerCase().includes(words);
      }
    });
  }
  const run = document.getElementById("run");
  if (run) livePage(run);
  const compare = document.getElementById("compare-charts");
  if (compare) comparePage(compare);
  const chat = document.getElementById("chat");
  if (chat) chatPage(chat);
});

// kscore report: sortable tables and the WebGL map. Everything it shows comes from the data blocks
// kscore wrote into this page; nothing is fetched. DOM text is set with textContent only.
"use strict";
(function () {
  const header = JSON.parse(document.getElementById("kscore-header").textContent);
  const report = (window.kscoreReport = { ready: false, error: null });

  // ---- Tables: click a heading to sort (numbers by their exact value, text by its text) ----
  for (const table of document.querySelectorAll("table.sortable")) {
    table.querySelectorAll("thead th").forEach((th, column) => {
      th.classList.add("sort");
      th.addEventListener("click", () => {
        const body = table.tBodies[0];
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("thead th").forEach((h) => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const key = (row) => {
          const cell = row.cells[column];
          const value = cell.dataset.value;
          return value === undefined ? cell.textContent : value === "" ? NaN : Number(value);
        };
        const rows = Array.from(body.rows);
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          if (typeof x === "number" && typeof y === "number") {
            if (Number.isNaN(x)) return 1;
            if (Number.isNaN(y)) return -1;
            return ascending ? x - y : y - x;
          }
          return ascending ? String(x).localeCompare(String(y)) : String(y).localeCompare(String(x));
        });
        for (const row of rows) body.appendChild(row);
      });
    });
  }

  if (!header.map) {
    report.ready = true;
    return;
  }
  const map = header.map;

  function base64Bytes(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  async function columns() {
    const packed = base64Bytes(document.getElementById("kscore-points").textContent.trim());
    const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("gzip"));
    const buffer = await new Response(stream).arrayBuffer();
    const decoder = new TextDecoder();
    const out = {};
    for (const spec of map.buffers) {
      if (spec.type === "f32") out[spec.name] = new Float32Array(buffer, spec.offset, spec.bytes / 4);
      else if (spec.type === "u16") out[spec.name] = new Uint16Array(buffer, spec.offset, spec.bytes / 2);
      else if (spec.type === "i32") out[spec.name] = new Int32Array(buffer, spec.offset, spec.bytes / 4);
      else if (spec.type === "u8") out[spec.name] = new Uint8Array(buffer, spec.offset, spec.bytes);
      else out[spec.name] = JSON.parse(decoder.decode(new Uint8Array(buffer, spec.offset, spec.bytes)));
    }
    return out;
  }

  const MISSING = 65535, LEVELS = 65534;
  const VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"];
  const NEUTRAL = "#a3aab2"; // points the chosen score does not cover (a visible grey, named in the legend)
  const CLIP = 0.02; // the colour scale runs from the 2nd to the 98th percentile: outliers do not wash it out

  function palette() {
    const rgb = VIRIDIS.map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
    const colors = [NEUTRAL];
    for (let i = 0; i < 255; i++) {
      const t = (i / 254) * (rgb.length - 1), k = Math.min(Math.floor(t), rgb.length - 2), f = t - k;
      const c = rgb[k].map((v, j) => Math.round(v + (rgb[k + 1][j] - v) * f));
      colors.push("#" + c.map((v) => v.toString(16).padStart(2, "0")).join(""));
    }
    return colors;
  }

  const specs = Object.fromEntries(map.buffers.map((b) => [b.name, b]));
  function specOf(name) {
    return specs[name];
  }

  function valueAt(data, name, i) {
    const code = data[name][i];
    const spec = specOf(name);
    if (code === MISSING || spec.min === null) return null;
    return spec.min + code * ((spec.max - spec.min) / LEVELS);
  }

  function format(value) {
    if (value === null || value === undefined) return "-";
    if (typeof value !== "number") return String(value);
    // four significant digits: 0.0009657 and 0.0063 read alike, and small scores keep their digits
    return Math.abs(value) >= 1e6 ? value.toExponential(3) : String(Number(value.toPrecision(4)));
  }

  async function start() {
    const body = document.getElementById("map-body");
    const probe = document.createElement("canvas");
    if (!probe.getContext("webgl")) {
      throw new Error("no WebGL");
    }
    body.hidden = false; // the map's controls and canvas: shown only where the map can be drawn
    const data = await columns();
    report.data = data;
    const n = map.points;
    const xs = data.map_x, ys = data.map_y;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      if (xs[i] < x0) x0 = xs[i];
      if (xs[i] > x1) x1 = xs[i];
      if (ys[i] < y0) y0 = ys[i];
      if (ys[i] > y1) y1 = ys[i];
    }
    const half = Math.max(x1 - x0, y1 - y0, 1e-12) / 2 * 1.05, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    const x = new Float32Array(n), y = new Float32Array(n), z = new Float32Array(n), w = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      x[i] = (xs[i] - cx) / half;
      y[i] = (ys[i] - cy) / half;
    }
    const canvas = document.getElementById("map-canvas");
    const size = n > 200000 ? 2 : n > 20000 ? 3 : 5;
    const scatterplot = createScatterplot({
      canvas,
      width: "auto",
      height: "auto",
      backgroundColor: "#ffffff",
      pointColor: palette(),
      pointColorActive: "#e4572e",
      pointColorHover: "#111111",
      pointSize: [Math.max(size - 1, 2), size + 1], // the grey points the colour does not cover, the coloured ones
      sizeBy: "valueA",
      colorBy: "valueB",
      pointSizeSelected: 3,
      lassoColor: "#e4572e",
      opacityInactiveMax: 0.6,
    });
    report.scatterplot = scatterplot;
    report.points = { x, y };

    const colorBy = document.getElementById("color-by");
    const legend = document.getElementById("legend");
    const meaning = document.getElementById("color-meaning");
    // The codes at the scale's two ends: the CLIP and 1 - CLIP quantiles of the shown points' codes.
    function clipped(codes) {
      const present = [];
      for (let i = 0; i < n; i++) if (codes[i] !== MISSING) present.push(codes[i]);
      if (!present.length) return [0, LEVELS];
      present.sort((a, b) => a - b);
      const at = (q) => present[Math.min(present.length - 1, Math.floor(q * (present.length - 1) + 0.5))];
      return [at(CLIP), at(1 - CLIP)];
    }
    function colour(name) {
      const codes = data[name];
      const [lowCode, highCode] = clipped(codes);
      const span = Math.max(highCode - lowCode, 1);
      let missingTrain = 0, missingReference = 0;
      for (let i = 0; i < n; i++) {
        z[i] = codes[i] === MISSING ? 0 : 1;
        if (codes[i] === MISSING) {
          w[i] = 0;
          if (data.train[i]) missingTrain++;
          else missingReference++;
          continue;
        }
        const t = Math.min(Math.max((codes[i] - lowCode) / span, 0), 1);
        w[i] = (1.5 + t * 253.99) / 255;
      }
      const spec = specOf(name);
      const words = (map.meanings && map.meanings[name]) || { means: name, low: "low", high: "high" };
      meaning.textContent = words.means;
      const codeValue = (code) => (spec.min === null ? null : spec.min + code * ((spec.max - spec.min) / LEVELS));
      legend.textContent = "";
      const label = document.createElement("div");
      label.textContent = name;
      const bar = document.createElement("div");
      bar.className = "ramp";
      const ends = document.createElement("div");
      ends.className = "ends";
      const low = document.createElement("span"), high = document.createElement("span");
      low.textContent = (lowCode > 0 ? "\u2264 " : "") + format(codeValue(lowCode));
      high.textContent = (highCode < LEVELS ? "\u2265 " : "") + format(codeValue(highCode));
      ends.append(low, high);
      const direction = document.createElement("div");
      direction.className = "direction";
      const lowWord = document.createElement("span"), highWord = document.createElement("span");
      lowWord.textContent = "\u2190 " + words.low;
      highWord.textContent = words.high + " \u2192";
      direction.append(lowWord, highWord);
      legend.append(label, bar, ends, direction);
      if (missingTrain + missingReference) {
        const none = document.createElement("div");
        none.className = "none";
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        const what = !missingTrain
          ? "grey: reference points (validation/test); this score is for train points"
          : !missingReference
            ? "grey: train points; this score is for reference points (validation/test)"
            : "grey: no value";
        none.append(swatch, document.createTextNode(what));
        legend.append(none);
      }
      report.colour = { name, low: low.textContent, high: high.textContent, grey: missingTrain + missingReference };
    }
    let spatialIndex;
    async function draw() {
      const options = { zDataType: "categorical", wDataType: "continuous", preventFilterReset: true };
      if (spatialIndex) options.spatialIndex = spatialIndex;
      await scatterplot.draw({ x, y, z, w }, options);
      spatialIndex = scatterplot.get("spatialIndex");
    }
    colour(map.color);
    await draw();
    colorBy.value = map.color;
    colorBy.addEventListener("change", async () => {
      colour(colorBy.value);
      await draw();
    });

    // Hover: the datapoint's id, scores, --columns and thumbnail.
    const tooltip = document.getElementById("tooltip");
    const wrap = canvas.parentElement;
    let mouse = [0, 0];
    canvas.addEventListener("mousemove", (event) => {
      const box = wrap.getBoundingClientRect();
      mouse = [event.clientX - box.left, event.clientY - box.top];
      if (!tooltip.hidden) place();
    });
    function place() {
      tooltip.style.left = Math.min(mouse[0] + 14, wrap.clientWidth - tooltip.offsetWidth - 4) + "px";
      tooltip.style.top = Math.min(mouse[1] + 14, wrap.clientHeight - tooltip.offsetHeight - 4) + "px";
    }
    function idOf(i) {
      return data.id[i];
    }
    function describe(i) {
      tooltip.textContent = "";
      const title = document.createElement("div");
      title.className = "tip-id";
      title.textContent = String(idOf(i)) + (data.train[i] ? " (train)" : " (reference)");
      tooltip.appendChild(title);
      const list = document.createElement("dl");
      const add = (key, value) => {
        const dt = document.createElement("dt"), dd = document.createElement("dd");
        dt.textContent = key;
        dd.textContent = value;
        list.append(dt, dd);
      };
      for (const name of map.scores) {
        const value = valueAt(data, name, i);
        if (value !== null) add(name, format(value)); // train points have no difficulty, and so on
      }
      const image = map.image && data[map.image] ? data[map.image][i] : null;
      const asImage = image && data["kscore:image_ok"] && data["kscore:image_ok"][i] === 1;
      for (const name of map.text) if (name !== map.image || (image && !asImage)) add(name, data[name][i] ?? "-");
      tooltip.appendChild(list);
      if (asImage) {
        const img = document.createElement("img");
        img.alt = String(idOf(i));
        img.src = data[map.image][i];
        tooltip.appendChild(img);
      }
    }
    scatterplot.subscribe("pointOver", (i) => {
      report.hovered = i;
      describe(i);
      tooltip.hidden = false;
      place();
    });
    scatterplot.subscribe("pointOut", () => {
      report.hovered = null;
      tooltip.hidden = true;
    });

    // Selection (lasso, a table row, a highlight): how many, their mean scores, their ids as CSV.
    const panel = document.getElementById("selection");
    const text = document.getElementById("selection-text");
    let selected = [];
    scatterplot.subscribe("select", ({ points }) => {
      selected = Array.from(points);
      report.selected = selected;
      const parts = [`${selected.length} point${selected.length === 1 ? "" : "s"} selected`];
      for (const name of map.scores) {
        let sum = 0, count = 0;
        for (const i of selected) {
          const v = valueAt(data, name, i);
          if (v !== null) { sum += v; count++; }
        }
        if (count) parts.push(`mean ${name} ${format(sum / count)}`);
      }
      text.textContent = parts.join(" · ");
      panel.hidden = false;
    });
    scatterplot.subscribe("deselect", () => {
      selected = [];
      report.selected = selected;
      panel.hidden = true;
    });
    function csvField(value) {
      const s = String(value);
      return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
    }
    report.selectionCsv = () => [map.id_column, ...selected.map((i) => idOf(i))].map(csvField).join("\n") + "\n";
    document.getElementById("download").addEventListener("click", () => {
      const blob = new Blob([report.selectionCsv()], { type: "text/csv" });
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = "kscore-selection.csv";
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    });

    const lasso = document.getElementById("lasso-mode");
    lasso.addEventListener("click", () => {
      const on = scatterplot.get("mouseMode") !== "lasso";
      scatterplot.set({ mouseMode: on ? "lasso" : "panZoom" });
      lasso.setAttribute("aria-pressed", String(on));
    });
    document.getElementById("reset-view").addEventListener("click", () => scatterplot.reset());

    // Shown points: all, train or reference; while the view moves over a large map, a draft of
    // every k-th of them (drawing a million points in software WebGL takes about half a second a
    // frame), and all of them again once it rests.
    const show = document.getElementById("show");
    function shown(stride) {
      const wanted = show.value === "train" ? 1 : show.value === "reference" ? 0 : -1, keep = [];
      for (let i = 0; i < n; i += stride) if (wanted < 0 || data.train[i] === wanted) keep.push(i);
      return keep;
    }
    async function applyShown() {
      if (show.value === "all") await scatterplot.unfilter({ preventEvent: true });
      else await scatterplot.filter(shown(1), { preventEvent: true });
      if (selected.length) scatterplot.select(selected, { preventEvent: true }); // a draft dropped some
    }
    show.addEventListener("change", applyShown);
    const stride = Math.ceil(n / map.draft_points);
    let drafting = false, rest = null;
    report.drafts = 0;
    scatterplot.subscribe("view", () => {
      if (stride < 2) return;
      if (!drafting && scatterplot.get("mouseMode") !== "lasso") {
        drafting = true;
        report.drafts += 1;
        scatterplot.filter(shown(stride), { preventEvent: true });
      }
      clearTimeout(rest);
      rest = setTimeout(() => {
        drafting = false;
        applyShown();
      }, 250);
    });
    const highlight = document.getElementById("highlight");
    highlight.addEventListener("change", () => {
      if (!highlight.value) return scatterplot.deselect();
      scatterplot.select(map.highlights[highlight.value]);
    });

    // A table row naming a point: select it and fly there.
    for (const row of document.querySelectorAll("tr[data-point]")) {
      const go = () => {
        const i = Number(row.dataset.point);
        scatterplot.select([i]);
        scatterplot.zoomToPoints([i], { transition: true, transitionDuration: 500, padding: 2 });
        document.getElementById("map").scrollIntoView({ behavior: "smooth", block: "start" });
      };
      row.addEventListener("click", go);
      row.addEventListener("keydown", (event) => { if (event.key === "Enter") go(); });
    }
    report.ready = true;
  }

  start().catch((error) => {
    report.error = String(error);
    const body = document.getElementById("map-body");
    if (body) body.hidden = true;
    const note = document.getElementById("map-note");
    if (note) {
      note.textContent = "The map needs WebGL, which this browser does not offer here; the summary " +
        "and the tables do not need it.";
    }
    console.warn("kscore report: the map was not drawn:", error);
  });
})();

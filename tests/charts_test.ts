/**
 * The charts of `scripts/_charts.ts` as a reader gets them: well-formed SVG (checked by a small
 * tag-stack parser, since Deno has no `DOMParser`) with the title, axis titles and units, one
 * bar or point per datum, log axes when asked, escaped text, and no NaN on empty data or on
 * values a log axis cannot show.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Bar, barChart, lineChart, renderChart, type Series } from "../scripts/_charts.ts";

const NAME = /[A-Za-z_][\w.:-]*/.source;
const ATTR_VALUE = /"(?:[^"<&]|&(?:amp|lt|gt|quot|apos|#\d+);)*"/.source;
const TAG = new RegExp(`^<(/?)(${NAME})((?:\\s+${NAME}=${ATTR_VALUE})*)\\s*(/?)>$`);
const TEXT_ENTITY = /&(?!(?:amp|lt|gt|quot|apos|#\d+);)/;

/** Fails unless `xml` is one well-formed element: valid tags, balanced, entities escaped. */
function assertWellFormed(xml: string): void {
  const stack: string[] = [];
  let roots = 0;
  for (const token of xml.split(/(<[^>]*>)/)) {
    if (!token.startsWith("<")) {
      assert.ok(!TEXT_ENTITY.test(token), `unescaped "&" in text: ${token}`);
      assert.ok(stack.length > 0 || token.trim() === "", `text outside the root: ${token}`);
      continue;
    }
    const match = TAG.exec(token);
    assert.ok(match, `malformed tag: ${token}`);
    const [, closing, name, attrs, selfClosing] = match;
    const names = [...attrs.matchAll(new RegExp(`\\s(${NAME})=`, "g"))].map((m) => m[1]);
    assert.equal(new Set(names).size, names.length, `repeated attribute in ${token}`);
    if (closing) {
      assert.equal(stack.pop(), name, `unbalanced </${name}>`);
      continue;
    }
    if (stack.length === 0) roots += 1;
    if (!selfClosing) stack.push(name);
  }
  assert.deepEqual(stack, [], "unclosed elements");
  assert.equal(roots, 1, "exactly one root element");
}

/** Every text the chart shows, in document order, still escaped. */
function texts(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
}

/** How many marks vega describes with `role` (e.g. "bar", "point"). */
function count(svg: string, role: string): number {
  return svg.split(`aria-roledescription="${role}"`).length - 1;
}

/** Checks what every chart must be, then returns its texts. */
function assertChart(svg: string): string[] {
  assertWellFormed(svg);
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'), svg.slice(0, 100));
  assert.doesNotMatch(svg, /NaN|Infinity/, "a coordinate or label is NaN or infinite");
  return texts(svg);
}

const BARS: Bar[] = [
  { label: "per-entry / syscall", value: 2.3, min: 2.2, max: 2.5, group: "syscall" },
  { label: "batch / libbpf", value: 0.31, min: 0.29, max: 0.35, group: "libbpf" },
  { label: "bpf_iter", value: 1048576, group: "iter" },
  { label: "C batch <&>", value: 0.3, min: 0.28, max: 0.31, group: 'C "fast"' },
];

const SERIES: Series[] = [
  { name: "per-entry / syscall", points: [[1e3, 2300], [1e5, 2600], [1e7, 3100]] },
  { name: "batch <&>", points: [[1e3, 310], [1e5, 290], [1e7, 280]] },
];

Deno.test("the well-formedness checker rejects broken XML", () => {
  assertWellFormed('<svg a="1"><g><text>a &amp; b</text></g><rect/></svg>');
  const broken = [
    "<svg><g></svg>",
    "<svg><text>a & b</text></svg>",
    '<svg a="<"></svg>',
    '<svg a="1" a="2"></svg>',
    "<svg></svg><svg></svg>",
    "<svg><text>x</text>",
  ];
  for (const xml of broken) assert.throws(() => assertWellFormed(xml), xml);
});

Deno.test("barChart shows its title, unit, one bar per entry, values and escaped text", async () => {
  const svg = await renderChart(barChart({ title: "Dump <1M> & more", unit: "s", bars: BARS }));
  const shown = assertChart(svg);
  assert.ok(shown.includes("Dump &lt;1M&gt; &amp; more"), "title");
  assert.ok(shown.includes("Median (s) — whiskers span min to max"), "axis title with the unit");
  assert.equal(count(svg, "bar"), BARS.length);
  assert.equal(count(svg, "errorbar"), 3, "a whisker only where min and max are given");
  for (
    const label of ["per-entry / syscall", "batch / libbpf", "bpf_iter", "C batch &lt;&amp;&gt;"]
  ) {
    assert.ok(shown.includes(label), label);
  }
  for (const value of ["2.3 s", "0.31 s", "1.05M s", "0.3 s"]) assert.ok(shown.includes(value));
  assert.ok(shown.includes("C &quot;fast&quot;") || shown.includes('C "fast"'), "legend group");
  assert.ok(!svg.includes("<&>"));
});

Deno.test("barChart draws a log axis when asked, labelled 1-2-5 with k and M", async () => {
  const bars = [{ label: "a", value: 150 }, { label: "b", value: 2_400 }, {
    label: "c",
    value: 9e5,
  }];
  const linear = await renderChart(barChart({ title: "t", unit: "ns", bars }));
  const log = await renderChart(barChart({ title: "t", unit: "ns", bars, logScale: true }));
  assert.match(linear, /X-axis titled 'Median \(ns\)' for a linear scale/);
  assert.match(
    log,
    /X-axis titled 'Median \(ns\)' for a log scale with values from 100 to 1,000,000/,
  );
  const shown = assertChart(log);
  for (const tick of ["100", "1k", "10k", "100k", "1M"]) assert.ok(shown.includes(tick), tick);
  assert.equal(count(log, "bar"), 3);
});

Deno.test("barChart handles no bars, zeros on a log axis and NaN", async () => {
  for (const logScale of [false, true]) {
    const empty = assertChart(
      await renderChart(barChart({ title: "Nothing", unit: "s", bars: [], logScale })),
    );
    assert.ok(empty.includes("no data"));
    const zeros = [{ label: "a", value: 0 }, { label: "b", value: 0, min: 0, max: 0 }];
    const svg = await renderChart(barChart({ title: "t", unit: "s", bars: zeros, logScale }));
    assert.deepEqual(assertChart(svg).includes("no data"), logScale, "zero is drawn only linear");
    const nan = [{ label: "a", value: NaN }, { label: "b", value: 1 }];
    const some = await renderChart(barChart({ title: "t", unit: "s", bars: nan, logScale }));
    assert.ok(assertChart(some).includes("a"), "the row without a value keeps its label");
    assert.equal(count(some, "bar"), 1);
  }
});

Deno.test("lineChart shows title, axis titles, a point per datum, legend and log axes", async () => {
  const svg = await renderChart(lineChart({
    title: "Time <per> entry",
    xLabel: "entries & more",
    yLabel: 'ns "per" entry',
    series: SERIES,
    logX: true,
    logY: true,
  }));
  const shown = assertChart(svg);
  assert.ok(shown.includes("Time &lt;per&gt; entry"));
  assert.ok(shown.includes("entries &amp; more"));
  assert.ok(shown.some((t) => t === 'ns "per" entry' || t === "ns &quot;per&quot; entry"));
  assert.ok(shown.includes("per-entry / syscall") && shown.includes("batch &lt;&amp;&gt;"));
  assert.equal(count(svg, "point"), 6);
  assert.equal(count(svg, "line mark"), 2);
  assert.match(svg, /X-axis titled 'entries &amp; more' for a log scale/);
  assert.match(svg, /Y-axis titled [^"]* for a log scale/);
  for (const tick of ["1k", "10k", "100k", "1M", "10M", "200", "1k", "5k"]) {
    assert.ok(shown.includes(tick), tick);
  }
  const linear = await renderChart(
    lineChart({ title: "t", xLabel: "x", yLabel: "y", series: SERIES }),
  );
  assert.match(linear, /X-axis titled 'x' for a linear scale/);
});

Deno.test("lineChart leaves out what a log axis cannot show, and handles no data", async () => {
  const series: Series[] = [{
    name: "s",
    points: [[1, 5], [2, 0], [3, -1], [4, NaN], [5, 8], [0, 3]],
  }];
  const log = await renderChart(
    lineChart({ title: "t", xLabel: "x", yLabel: "y", series, logX: true, logY: true }),
  );
  assertChart(log);
  assert.equal(count(log, "point"), 2);
  const linear = await renderChart(lineChart({ title: "t", xLabel: "x", yLabel: "y", series }));
  assertChart(linear);
  assert.equal(count(linear, "point"), 5, "only NaN is left out");
  const empty: Series[][] = [[], [{ name: "empty", points: [] }], [{
    name: "z",
    points: [[0, 0]],
  }]];
  for (const series of empty) {
    const svg = await renderChart(
      lineChart({ title: "t", xLabel: "x", yLabel: "y", series, logX: true, logY: true }),
    );
    assert.ok(assertChart(svg).includes("no data"));
  }
});

Deno.test("renderChart draws a spec of a few lines in the house style", async () => {
  const svg = await renderChart({
    title: "Entries per CPU",
    data: { values: [{ cpu: "0", entries: 5200 }, { cpu: "1", entries: 4800 }] },
    mark: "bar",
    encoding: {
      x: { field: "cpu", type: "nominal" },
      y: { field: "entries", type: "quantitative" },
    },
  });
  const shown = assertChart(svg);
  assert.ok(shown.includes("Entries per CPU") && shown.includes("entries"));
  assert.equal(count(svg, "bar"), 2);
  assert.match(svg, /^<svg[^>]*><rect [^>]*fill="white"/, "white background");
});

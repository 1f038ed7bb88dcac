/**
 * The SVG charts of `scripts/_svg.ts`: well-formed XML (checked by a small tag-stack parser,
 * since Deno has no `DOMParser`), escaped text, bar lengths in the order of their values, log
 * axis ticks, edge cases (no data, one point, equal values, long labels) and `compactNumber`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Bar, barChart, compactNumber, lineChart, type Series } from "../scripts/_svg.ts";

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

/** The value of `attr` on every element carrying `class="name"`, in document order. */
function attrsOf(svg: string, className: string, attr: string): number[] {
  const elements = svg.match(new RegExp(`<\\w+[^>]*class="${className}"[^>]*>`, "g")) ?? [];
  return elements.map((element) => Number(new RegExp(`\\s${attr}="([^"]*)"`).exec(element)![1]));
}

/** The text of every element carrying `class="name"`, in document order. */
function textsOf(svg: string, className: string): string[] {
  const pattern = new RegExp(`<text[^>]*class="${className}"[^>]*>([^<]*)</text>`, "g");
  return [...svg.matchAll(pattern)].map((m) => m[1]);
}

function assertFinite(svg: string): void {
  assert.ok(!/NaN|Infinity/.test(svg), "a coordinate is NaN or infinite");
}

const BARS: Bar[] = [
  { label: "normal/syscall", value: 2.3, min: 2.2, max: 2.5, group: "normal" },
  { label: "batch/libbpf", value: 0.31, min: 0.29, max: 0.35, group: "batch" },
  { label: "parallel", value: 0.18, min: 0.16, max: 0.22, group: "parallel" },
  { label: "iter", value: 0.25, group: "iter" },
  { label: "C batch <&>", value: 0.3, min: 0.28, max: 0.31, group: 'C "fast"' },
];

const SERIES: Series[] = [
  { name: "normal/syscall", points: [[1e3, 2300], [1e5, 2600], [1e8, 3100]] },
  { name: "batch <&>", points: [[1e3, 310], [1e5, 290], [1e8, 280]] },
];

Deno.test("the well-formedness checker rejects broken XML", () => {
  assertWellFormed('<svg a="1"><g><text>a &amp; b</text></g><rect/></svg>');
  const broken = [
    "<svg><g></svg>",
    "<svg></g></svg>",
    "<svg><text>a & b</text></svg>",
    '<svg a="<"></svg>',
    '<svg a="1" a="2"></svg>',
    "<svg></svg><svg></svg>",
    "<svg><text>x</text>",
  ];
  for (const xml of broken) assert.throws(() => assertWellFormed(xml), xml);
});

Deno.test("compactNumber uses k, M, G suffixes and three significant digits", () => {
  const cases: [number, string][] = [
    [0, "0"],
    [0.5, "0.5"],
    [0.25, "0.25"],
    [250, "250"],
    [999, "999"],
    [999.9, "1k"],
    [1000, "1k"],
    [1500, "1.5k"],
    [12345, "12.3k"],
    [1e5, "100k"],
    [1048576, "1.05M"],
    [1e6, "1M"],
    [1e8, "100M"],
    [2.5e9, "2.5G"],
    [-2000, "-2k"],
    [0.1 + 0.2, "0.3"],
  ];
  for (const [value, expected] of cases) assert.equal(compactNumber(value), expected, `${value}`);
});

Deno.test("barChart is well-formed and escapes every label, group and the title", () => {
  const svg = barChart({ title: "Dump <1M> & more", unit: "s", bars: BARS });
  assertWellFormed(svg);
  assertFinite(svg);
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  assert.ok(svg.includes("Dump &lt;1M&gt; &amp; more"));
  assert.ok(svg.includes(">C batch &lt;&amp;&gt;</text>"));
  assert.ok(svg.includes(">C &quot;fast&quot;</text>"), "group in the legend");
  assert.ok(!svg.includes("<&>"));
  for (const bar of BARS.slice(0, 4)) assert.ok(svg.includes(`>${bar.label}</text>`));
  assert.ok(svg.includes(">2.3 s</text>"), "value printed at the bar end");
  assert.ok(svg.includes("Median (s)"), "axis label with the unit");
  assert.equal(attrsOf(svg, "whisker", "stroke-width").length, 4, "no whisker without min/max");
});

Deno.test("control characters XML forbids are dropped from text", () => {
  const svg = barChart({
    title: "a\u0001b",
    unit: "s",
    bars: [{ label: "c\u0000d\u001f", value: 1 }],
  });
  assertWellFormed(svg);
  assert.ok(svg.includes(">ab</text>") && svg.includes(">cd</text>"));
  assert.ok(!["\u0000", "\u0001", "\u001f"].some((c) => svg.includes(c)));
});

Deno.test("barChart bar lengths follow the values, linear and log", () => {
  for (const logScale of [false, true]) {
    const svg = barChart({ title: "t", unit: "s", bars: BARS, logScale });
    const widths = attrsOf(svg, "bar", "width");
    assert.equal(widths.length, BARS.length);
    const byValue = BARS.map((bar, i) => [bar.value, widths[i]]).sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < byValue.length; i += 1) {
      assert.ok(byValue[i][1] > byValue[i - 1][1], `log=${logScale}: ${byValue}`);
    }
  }
});

Deno.test("barChart log scale labels decades with 1-2-5 steps", () => {
  const svg = barChart({ title: "t", unit: "s", bars: BARS, logScale: true, width: 900 });
  assert.deepEqual(textsOf(svg, "tick"), ["0.1", "0.2", "0.5", "1", "2", "5"]);
});

Deno.test("barChart left margin fits the longest label", () => {
  const label = "lru_percpu_hash: parallel batch over 16 ranges";
  const svg = barChart({
    title: "t",
    unit: "ns",
    bars: [{ label, value: 5 }, { label: "a", value: 1 }],
  });
  assertWellFormed(svg);
  for (const x of attrsOf(svg, "bar", "x")) assert.ok(x >= label.length * 7, `bar at ${x}`);
});

Deno.test("barChart handles no bars, equal values, zeros and non-finite values", () => {
  const empty = barChart({ title: "Nothing", unit: "s", bars: [] });
  assertWellFormed(empty);
  assert.ok(empty.includes(">no data</text>"));
  const equal = [{ label: "a", value: 3 }, { label: "b", value: 3 }];
  for (const logScale of [false, true]) {
    const svg = barChart({ title: "t", unit: "s", bars: equal, logScale });
    assertWellFormed(svg);
    assertFinite(svg);
    const widths = attrsOf(svg, "bar", "width");
    assert.equal(widths[0], widths[1]);
    assert.ok(widths[0] > 0);
  }
  const zeros = [{ label: "a", value: 0 }, { label: "b", value: 0, min: 0, max: 0 }];
  for (const logScale of [false, true]) {
    assertFinite(barChart({ title: "t", unit: "s", bars: zeros, logScale }));
  }
  const svg = barChart({
    title: "t",
    unit: "s",
    bars: [{ label: "a", value: NaN }, { label: "b", value: 1 }],
  });
  assertWellFormed(svg);
  assert.ok(svg.includes(">n/a</text>"));
});

Deno.test("lineChart is well-formed and escapes the title, axis labels and series names", () => {
  const svg = lineChart({
    title: "Time <per> entry",
    xLabel: "entries & more",
    yLabel: 'ns "per" entry',
    series: SERIES,
    logX: true,
    logY: true,
  });
  assertWellFormed(svg);
  assertFinite(svg);
  assert.ok(svg.includes("Time &lt;per&gt; entry"));
  assert.ok(svg.includes(">entries &amp; more</text>"));
  assert.ok(svg.includes(">ns &quot;per&quot; entry</text>"));
  assert.deepEqual(textsOf(svg, "legend"), ["normal/syscall", "batch &lt;&amp;&gt;"]);
  assert.equal(attrsOf(svg, "series", "stroke-width").length, 2);
  assert.equal(attrsOf(svg, "marker", "stroke-width").length, 6);
});

Deno.test("lineChart log axes label decades 1k to 100M", () => {
  const series = [{
    name: "s",
    points: [1e3, 1e4, 1e5, 1e6, 1e7, 1e8].map((n) => [n, n / 10]),
  }] as Series[];
  const svg = lineChart({ title: "t", xLabel: "x", yLabel: "y", series, logX: true, logY: true });
  const ticks = textsOf(svg, "tick");
  for (const label of ["1k", "10k", "100k", "1M", "10M", "100M"]) {
    assert.ok(ticks.includes(label), label);
  }
  assert.ok(ticks.includes("100") && ticks.includes("10M"), "y decades");
});

Deno.test("lineChart skips points a log axis cannot show", () => {
  const series: Series[] = [{
    name: "s",
    points: [[1, 5], [2, 0], [3, -1], [4, NaN], [5, 8], [0, 3]],
  }];
  const log = lineChart({ title: "t", xLabel: "x", yLabel: "y", series, logX: true, logY: true });
  assertWellFormed(log);
  assertFinite(log);
  assert.equal(attrsOf(log, "marker", "stroke-width").length, 2);
  const linear = lineChart({ title: "t", xLabel: "x", yLabel: "y", series });
  assert.equal(attrsOf(linear, "marker", "stroke-width").length, 5, "only NaN skipped");
});

Deno.test("lineChart handles no series, empty series, one point and flat lines", () => {
  for (const series of [[], [{ name: "empty", points: [] }]] as Series[][]) {
    const svg = lineChart({ title: "t", xLabel: "x", yLabel: "y", series, logX: true });
    assertWellFormed(svg);
    assert.ok(svg.includes(">no data</text>"));
  }
  const cases: Series[][] = [
    [{ name: "one", points: [[1000, 42]] }],
    [{ name: "flat", points: [[1, 7], [2, 7], [3, 7]] }],
    [{ name: "zero", points: [[0, 0], [0, 0]] }],
  ];
  for (const series of cases) {
    for (const log of [false, true]) {
      const svg = lineChart({ title: "t", xLabel: "x", yLabel: "y", series, logX: log, logY: log });
      assertWellFormed(svg);
      assertFinite(svg);
    }
  }
});

/**
 * Dot charts for benchmark results, drawn without an image dependency: a chart is first laid out
 * as a list of drawing operations (pure, inspectable in tests), then painted on an RGB raster
 * that `png.ts` encodes. Integer pixel arithmetic only, so the same input gives the same pixels.
 */
import { encodePng, type RgbImage } from './png.ts';

/** An 8-bit colour. */
export type Rgb = readonly [r: number, g: number, b: number];

/** Glyph cell: 5 columns × 7 rows, one blank column after each character (and see `DESCENDERS`). */
export const GLYPH_WIDTH = 5;
export const GLYPH_HEIGHT = 7;

/**
 * A 5×7 bitmap font, one string per row, `#` for ink. Only the characters the benchmark charts
 * write (lower case, digits, a little punctuation and the title's capital); `missingGlyphs`
 * tells a caller what it cannot write before drawing.
 */
export const FONT: Readonly<Record<string, readonly string[]>> = {
  ' ': ['.....', '.....', '.....', '.....', '.....', '.....', '.....'],
  '0': ['.###.', '#...#', '#..##', '#.#.#', '##..#', '#...#', '.###.'],
  '1': ['..#..', '.##..', '..#..', '..#..', '..#..', '..#..', '.###.'],
  '2': ['.###.', '#...#', '....#', '...#.', '..#..', '.#...', '#####'],
  '3': ['#####', '...#.', '..#..', '...#.', '....#', '#...#', '.###.'],
  '4': ['...#.', '..##.', '.#.#.', '#..#.', '#####', '...#.', '...#.'],
  '5': ['#####', '#....', '####.', '....#', '....#', '#...#', '.###.'],
  '6': ['..##.', '.#...', '#....', '####.', '#...#', '#...#', '.###.'],
  '7': ['#####', '....#', '...#.', '..#..', '.#...', '.#...', '.#...'],
  '8': ['.###.', '#...#', '#...#', '.###.', '#...#', '#...#', '.###.'],
  '9': ['.###.', '#...#', '#...#', '.####', '....#', '...#.', '.##..'],
  '.': ['.....', '.....', '.....', '.....', '.....', '.##..', '.##..'],
  ',': ['.....', '.....', '.....', '.....', '.##..', '..#..', '.#...'],
  ':': ['.....', '.##..', '.##..', '.....', '.##..', '.##..', '.....'],
  '-': ['.....', '.....', '.....', '#####', '.....', '.....', '.....'],
  _: ['.....', '.....', '.....', '.....', '.....', '.....', '#####'],
  '/': ['.....', '....#', '...#.', '..#..', '.#...', '#....', '.....'],
  '(': ['...#.', '..#..', '.#...', '.#...', '.#...', '..#..', '...#.'],
  ')': ['.#...', '..#..', '...#.', '...#.', '...#.', '..#..', '.#...'],
  C: ['.###.', '#...#', '#....', '#....', '#....', '#...#', '.###.'],
  a: ['.....', '.....', '.###.', '....#', '.####', '#...#', '.####'],
  b: ['#....', '#....', '#.##.', '##..#', '#...#', '#...#', '####.'],
  c: ['.....', '.....', '.###.', '#....', '#....', '#...#', '.###.'],
  d: ['....#', '....#', '.##.#', '#..##', '#...#', '#...#', '.####'],
  e: ['.....', '.....', '.###.', '#...#', '#####', '#....', '.###.'],
  f: ['..##.', '.#..#', '.#...', '###..', '.#...', '.#...', '.#...'],
  g: ['.####', '#...#', '#...#', '#...#', '.####', '....#', '.###.'],
  h: ['#....', '#....', '#.##.', '##..#', '#...#', '#...#', '#...#'],
  i: ['..#..', '.....', '.##..', '..#..', '..#..', '..#..', '.###.'],
  j: ['...#.', '.....', '..##.', '...#.', '...#.', '#..#.', '.##..'],
  k: ['#....', '#....', '#..#.', '#.#..', '##...', '#.#..', '#..#.'],
  l: ['.##..', '..#..', '..#..', '..#..', '..#..', '..#..', '.###.'],
  m: ['.....', '.....', '##.#.', '#.#.#', '#.#.#', '#...#', '#...#'],
  n: ['.....', '.....', '#.##.', '##..#', '#...#', '#...#', '#...#'],
  o: ['.....', '.....', '.###.', '#...#', '#...#', '#...#', '.###.'],
  p: ['####.', '#...#', '#...#', '#...#', '####.', '#....', '#....'],
  q: ['.####', '#...#', '#...#', '#...#', '.####', '....#', '....#'],
  r: ['.....', '.....', '#.##.', '##..#', '#....', '#....', '#....'],
  s: ['.....', '.....', '.###.', '#....', '.###.', '....#', '####.'],
  t: ['.#...', '.#...', '###..', '.#...', '.#...', '.#..#', '..##.'],
  u: ['.....', '.....', '#...#', '#...#', '#...#', '#..##', '.##.#'],
  v: ['.....', '.....', '#...#', '#...#', '#...#', '.#.#.', '..#..'],
  w: ['.....', '.....', '#...#', '#...#', '#.#.#', '#.#.#', '.#.#.'],
  x: ['.....', '.....', '#...#', '.#.#.', '..#..', '.#.#.', '#...#'],
  y: ['#...#', '#...#', '#...#', '#...#', '.####', '....#', '.###.'],
  z: ['.....', '.....', '#####', '...#.', '..#..', '.#...', '#####'],
};

/**
 * Letters drawn `DESCENT` rows lower than the others: their first five rows sit on the x-height
 * of the other lower-case letters and the last two hang below the line, so g, p, q and y do not
 * read as 9, P and the like.
 */
export const DESCENDERS: ReadonlySet<string> = new Set(['g', 'p', 'q', 'y']);
export const DESCENT = 2;

/** The characters of `text` that `FONT` cannot draw, each once, in order of appearance. */
export function missingGlyphs(text: string): string[] {
  return [...new Set([...text].filter((ch) => FONT[ch] === undefined))];
}

/** Width in pixels of `text` drawn at `scale` (no trailing gap). */
export function textWidth(text: string, scale: number): number {
  const n = [...text].length;
  return n === 0 ? 0 : (n * (GLYPH_WIDTH + 1) - 1) * scale;
}

/** An RGB raster with the few primitives a chart needs; drawing outside it is clipped. */
export class Canvas implements RgbImage {
  readonly width: number;
  readonly height: number;
  readonly pixels: Uint8Array;

  constructor(width: number, height: number, background: Rgb) {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
      throw new RangeError(`a canvas needs positive integer dimensions, got ${width}×${height}`);
    }
    this.width = width;
    this.height = height;
    this.pixels = new Uint8Array(width * height * 3);
    this.fillRect(0, 0, width, height, background);
  }

  /** The colour at (x, y); throws outside the canvas. */
  pixel(x: number, y: number): Rgb {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) {
      throw new RangeError(`(${x}, ${y}) is outside the ${this.width}×${this.height} canvas`);
    }
    const i = (y * this.width + x) * 3;
    return [this.pixels[i]!, this.pixels[i + 1]!, this.pixels[i + 2]!];
  }

  fillRect(x: number, y: number, w: number, h: number, color: Rgb): void {
    const x0 = Math.max(0, Math.round(x));
    const y0 = Math.max(0, Math.round(y));
    const x1 = Math.min(this.width, Math.round(x + w));
    const y1 = Math.min(this.height, Math.round(y + h));
    for (let row = y0; row < y1; row++) {
      for (let col = x0; col < x1; col++) {
        const i = (row * this.width + col) * 3;
        this.pixels[i] = color[0];
        this.pixels[i + 1] = color[1];
        this.pixels[i + 2] = color[2];
      }
    }
  }

  /**
   * A one-pixel line from (x0, y0) to (x1, y1), both ends included (Bresenham). With `dash`,
   * `on` pixels drawn then `off` skipped, counted along the line.
   */
  line(x0: number, y0: number, x1: number, y1: number, color: Rgb, dash?: { on: number; off: number }): void {
    let x = Math.round(x0);
    let y = Math.round(y0);
    const xe = Math.round(x1);
    const ye = Math.round(y1);
    const dx = Math.abs(xe - x);
    const dy = -Math.abs(ye - y);
    const sx = x < xe ? 1 : -1;
    const sy = y < ye ? 1 : -1;
    let err = dx + dy;
    const period = dash === undefined ? 0 : dash.on + dash.off;
    for (let step = 0; ; step++) {
      if (dash === undefined || step % period < dash.on) this.fillRect(x, y, 1, 1, color);
      if (x === xe && y === ye) break;
      const e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y += sy;
      }
    }
  }

  /** A filled disc of radius `r` centred on (cx, cy). */
  disc(cx: number, cy: number, r: number, color: Rgb): void {
    const x = Math.round(cx);
    const y = Math.round(cy);
    // r² + r instead of r² rounds the outline: no single-pixel nubs at the four extremes.
    const limit = r * r + r;
    for (let dy = -r; dy <= r; dy++) {
      for (let dx = -r; dx <= r; dx++) {
        if (dx * dx + dy * dy <= limit) this.fillRect(x + dx, y + dy, 1, 1, color);
      }
    }
  }

  /**
   * `text` with its top-left corner at (x, y), each font pixel a `scale`×`scale` square; the
   * descenders reach `DESCENT × scale` pixels below the 7-row cell.
   * @throws RangeError when a character has no glyph (check with `missingGlyphs` first).
   */
  text(x: number, y: number, text: string, color: Rgb, scale: number): void {
    const missing = missingGlyphs(text);
    if (missing.length > 0) throw new RangeError(`no glyph for ${missing.map((c) => `'${c}'`).join(', ')}`);
    let left = Math.round(x);
    for (const ch of text) {
      const rows = FONT[ch]!;
      const top = y + (DESCENDERS.has(ch) ? DESCENT * scale : 0);
      for (let row = 0; row < GLYPH_HEIGHT; row++) {
        for (let col = 0; col < GLYPH_WIDTH; col++) {
          if (rows[row]![col] === '#')
            this.fillRect(left + col * scale, top + row * scale, scale, scale, color);
        }
      }
      left += (GLYPH_WIDTH + 1) * scale;
    }
  }
}

/** One thing to draw; a chart's layout is a list of these, painted in order. */
export type DrawOp =
  | { kind: 'rect'; x: number; y: number; w: number; h: number; color: Rgb }
  | {
      kind: 'line';
      x0: number;
      y0: number;
      x1: number;
      y1: number;
      color: Rgb;
      dash?: { on: number; off: number };
    }
  | { kind: 'disc'; cx: number; cy: number; r: number; color: Rgb }
  | { kind: 'text'; x: number; y: number; text: string; color: Rgb; scale: number };

/** A laid-out chart: what `paint` draws. */
export interface Drawing {
  width: number;
  height: number;
  background: Rgb;
  ops: DrawOp[];
}

/** Paints a drawing's operations in order on a fresh canvas. */
export function paint(drawing: Drawing): Canvas {
  const canvas = new Canvas(drawing.width, drawing.height, drawing.background);
  for (const op of drawing.ops) {
    switch (op.kind) {
      case 'rect':
        canvas.fillRect(op.x, op.y, op.w, op.h, op.color);
        break;
      case 'line':
        canvas.line(op.x0, op.y0, op.x1, op.y1, op.color, op.dash);
        break;
      case 'disc':
        canvas.disc(op.cx, op.cy, op.r, op.color);
        break;
      case 'text':
        canvas.text(op.x, op.y, op.text, op.color, op.scale);
        break;
    }
  }
  return canvas;
}

/** Every string a drawing writes, in drawing order. */
export function drawingTexts(drawing: Drawing): string[] {
  return drawing.ops.flatMap((op) => (op.kind === 'text' ? [op.text] : []));
}

/**
 * Y-axis ticks from 0: a step of 1, 2 or 5 × 10^k giving about `target` intervals, the top the
 * first multiple of the step at or above `max`, and the decimals the step needs. A `max` of 0 or
 * less (nothing to show) gets the axis 0…1.
 */
export function niceTicks(
  max: number,
  target = 5,
): { step: number; top: number; ticks: number[]; decimals: number } {
  const upper = Number.isFinite(max) && max > 0 ? max : 1;
  const raw = upper / target;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / magnitude;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * magnitude;
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  // The epsilon keeps 1.0000000002 (float noise in a measured figure) from adding a whole step.
  const intervals = Math.max(1, Math.ceil(upper / step - 1e-9));
  const fix = (v: number) => Number(v.toFixed(decimals));
  const ticks = Array.from({ length: intervals + 1 }, (_, i) => fix(i * step));
  return { step, top: ticks[ticks.length - 1]!, ticks, decimals };
}

/** X-axis ticks over 1…n: 1, then every multiple of a 1/2/5 × 10^k step, at most ~`target` labels. */
export function indexTicks(n: number, target = 12): number[] {
  if (n < 1) return [];
  let step = 1;
  for (let k = 1; n / step > target; k *= 10) {
    step = [1, 2, 5, 10].map((m) => m * k).find((s) => n / s <= target) ?? 10 * k;
  }
  const ticks = [1];
  for (let t = step; t <= n; t += step) if (t !== 1) ticks.push(t);
  return ticks;
}

/** One series of a dot chart: values by index (the first is x = 1); null for "no figure". */
export interface ChartSeries {
  label: string;
  values: readonly (number | null)[];
}

/** What a dot chart shows. Sizes in pixels. */
export interface DotChartSpec {
  title: string;
  /** Written under the x axis. */
  xLabel: string;
  /** Written above the y axis. */
  yLabel: string;
  /** Appended to every y tick label after a space (`s` → `1.5 s`); empty for none. */
  yUnit: string;
  series: readonly ChartSeries[];
  /** A small line at the bottom left (where and when it was measured). */
  note?: string;
  /** Default 900. */
  width?: number;
  /** Default 500. */
  height?: number;
}

/** Series colours in order (a colour-blind-safe blue/orange first pair). */
export const SERIES_COLORS: readonly Rgb[] = [
  [31, 119, 180],
  [230, 97, 1],
  [44, 160, 44],
  [148, 103, 189],
];
const INK: Rgb = [33, 33, 33];
const AXIS: Rgb = [90, 90, 90];
const GRID: Rgb = [228, 228, 228];
const WHITE: Rgb = [255, 255, 255];

/** Where a dot chart put its plot area and scales: exported so tests can find a value's pixel. */
export interface DotChartGeometry {
  plotLeft: number;
  plotTop: number;
  plotRight: number;
  plotBottom: number;
  /** Slots on the x axis: the longest series. */
  slots: number;
  yTop: number;
  markerRadius: number;
  /** Pixel centre of value `index` (0-based) of series `series`. */
  at(series: number, index: number, value: number): { x: number; y: number };
}

/** Plot area, scales and marker placement for a spec. Pure. */
export function dotChartGeometry(
  spec: DotChartSpec,
): DotChartGeometry & { yTicks: ReturnType<typeof niceTicks> } {
  const width = spec.width ?? 900;
  const height = spec.height ?? 500;
  const values = spec.series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const yTicks = niceTicks(values.length === 0 ? 0 : Math.max(...values), 6);
  const labelWidth = Math.max(
    ...yTicks.ticks.map((t) => textWidth(yTickLabel(t, yTicks.decimals, spec.yUnit), 2)),
  );
  const plotLeft = 16 + labelWidth + 12;
  const plotTop = 104;
  const plotRight = width - 28;
  const plotBottom = height - 76;
  const slots = Math.max(1, ...spec.series.map((s) => s.values.length));
  const slotWidth = (plotRight - plotLeft) / slots;
  const k = spec.series.length;
  const markerRadius = Math.max(2, Math.min(5, Math.round(slotWidth / (k + 1) / 2)));
  const at = (series: number, index: number, value: number) => ({
    // Series side by side within a slot, so equal values at one index stay distinguishable.
    x: Math.round(plotLeft + (index + (series + 1) / (k + 1)) * slotWidth),
    y: Math.round(plotBottom - (value / yTicks.top) * (plotBottom - plotTop)),
  });
  return { plotLeft, plotTop, plotRight, plotBottom, slots, yTop: yTicks.top, markerRadius, at, yTicks };
}

function yTickLabel(value: number, decimals: number, unit: string): string {
  // Every label with the step's decimals (0.8, 1.0), so the column lines up on the point.
  const text = value.toFixed(decimals);
  return unit === '' ? text : `${text} ${unit}`;
}

/**
 * Lays out a dot chart: title, legend (a marker and the label per series), y grid and ticks from
 * 0, x ticks by index (1-based), one marker per value (a cross on the top edge for null), and
 * per series a dashed line at its largest value across the indices it covers. Pure.
 */
export function layoutDotChart(spec: DotChartSpec): Drawing {
  const width = spec.width ?? 900;
  const height = spec.height ?? 500;
  const g = dotChartGeometry(spec);
  const ops: DrawOp[] = [];
  const color = (i: number) => SERIES_COLORS[i % SERIES_COLORS.length]!;

  ops.push({ kind: 'text', x: 16, y: 16, text: spec.title, color: INK, scale: 2 });
  let legendX = 16;
  spec.series.forEach((s, i) => {
    ops.push({ kind: 'disc', cx: legendX + 6, cy: 53, r: 5, color: color(i) });
    ops.push({ kind: 'text', x: legendX + 18, y: 46, text: s.label, color: INK, scale: 2 });
    legendX += 18 + textWidth(s.label, 2) + 28;
  });
  ops.push({ kind: 'text', x: 16, y: g.plotTop - 26, text: spec.yLabel, color: INK, scale: 2 });

  for (const t of g.yTicks.ticks) {
    const y = g.at(0, 0, t).y;
    if (t > 0) ops.push({ kind: 'line', x0: g.plotLeft + 1, y0: y, x1: g.plotRight, y1: y, color: GRID });
    ops.push({ kind: 'line', x0: g.plotLeft - 5, y0: y, x1: g.plotLeft - 1, y1: y, color: AXIS });
    const label = yTickLabel(t, g.yTicks.decimals, spec.yUnit);
    ops.push({
      kind: 'text',
      x: g.plotLeft - 10 - textWidth(label, 2),
      y: y - 7,
      text: label,
      color: INK,
      scale: 2,
    });
  }
  const slotWidth = (g.plotRight - g.plotLeft) / g.slots;
  for (const index of indexTicks(g.slots)) {
    const x = Math.round(g.plotLeft + (index - 0.5) * slotWidth);
    ops.push({ kind: 'line', x0: x, y0: g.plotBottom + 1, x1: x, y1: g.plotBottom + 5, color: AXIS });
    const label = String(index);
    ops.push({
      kind: 'text',
      x: x - Math.floor(textWidth(label, 2) / 2),
      y: g.plotBottom + 10,
      text: label,
      color: INK,
      scale: 2,
    });
  }
  const xLabelX = Math.round((g.plotLeft + g.plotRight - textWidth(spec.xLabel, 2)) / 2);
  ops.push({ kind: 'text', x: xLabelX, y: g.plotBottom + 34, text: spec.xLabel, color: INK, scale: 2 });

  spec.series.forEach((s, i) => {
    const present = s.values.filter((v): v is number => v !== null);
    if (present.length === 0) return;
    const y = g.at(i, 0, Math.max(...present)).y;
    const x1 = Math.round(g.plotLeft + s.values.length * slotWidth);
    ops.push({
      kind: 'line',
      x0: g.plotLeft + 1,
      y0: y,
      x1,
      y1: y,
      color: color(i),
      dash: { on: 6, off: 4 },
    });
  });
  spec.series.forEach((s, i) => {
    s.values.forEach((v, index) => {
      if (v === null) {
        // No figure: a cross at the top edge, so a gap is not mistaken for a missing task.
        const { x, y } = g.at(i, index, g.yTop);
        const r = g.markerRadius;
        for (const dx of [0, 1]) {
          ops.push({ kind: 'line', x0: x - r + dx, y0: y - r, x1: x + r + dx, y1: y + r, color: color(i) });
          ops.push({ kind: 'line', x0: x - r + dx, y0: y + r, x1: x + r + dx, y1: y - r, color: color(i) });
        }
        return;
      }
      const p = g.at(i, index, v);
      // A white rim keeps neighbouring markers of the other series apart where they overlap.
      ops.push({ kind: 'disc', cx: p.x, cy: p.y, r: g.markerRadius + 1, color: WHITE });
      ops.push({ kind: 'disc', cx: p.x, cy: p.y, r: g.markerRadius, color: color(i) });
    });
  });

  // Axes last, over the markers of zero values.
  ops.push({ kind: 'line', x0: g.plotLeft, y0: g.plotTop, x1: g.plotLeft, y1: g.plotBottom, color: AXIS });
  ops.push({
    kind: 'line',
    x0: g.plotLeft,
    y0: g.plotBottom,
    x1: g.plotRight,
    y1: g.plotBottom,
    color: AXIS,
  });
  if (spec.note !== undefined) {
    ops.push({ kind: 'text', x: 16, y: height - 16, text: spec.note, color: AXIS, scale: 1 });
  }
  return { width, height, background: WHITE, ops };
}

/** Lays out and paints a dot chart. */
export function renderDotChart(spec: DotChartSpec): Canvas {
  return paint(layoutDotChart(spec));
}

/** A dot chart as PNG file bytes. */
export function dotChartPng(spec: DotChartSpec): Buffer {
  return encodePng(renderDotChart(spec));
}

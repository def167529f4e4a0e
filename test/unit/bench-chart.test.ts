import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Canvas,
  DESCENDERS,
  type DotChartSpec,
  dotChartGeometry,
  drawingTexts,
  FONT,
  GLYPH_HEIGHT,
  GLYPH_WIDTH,
  indexTicks,
  layoutDotChart,
  missingGlyphs,
  niceTicks,
  paint,
  type Rgb,
  renderDotChart,
  SERIES_COLORS,
  textWidth,
} from '../../bench/lib/chart.ts';
import { encodePng, type RgbImage } from '../../bench/lib/png.ts';
import { chartPathFor, redrawRotationChart, rotationChartSpec } from '../../bench/rotation.ts';

// An independent CRC-32 (the PNG spec's sample code, table-driven), so a wrong CRC in the
// encoder cannot be hidden by checking it with the same zlib.crc32 the encoder uses.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

interface DecodedPng {
  chunkTypes: string[];
  width: number;
  height: number;
  bitDepth: number;
  colorType: number;
  compression: number;
  filter: number;
  interlace: number;
  /** The inflated IDAT stream: a filter byte then the row's bytes, per row. */
  raw: Buffer;
  pixels: Uint8Array;
}

/** A strict little reader for what the encoder promises: 8-bit RGB, filter 0, CRCs checked. */
function decodePng(file: Buffer): DecodedPng {
  expect([...file.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const chunkTypes: string[] = [];
  const idat: Buffer[] = [];
  let header: Buffer | undefined;
  let offset = 8;
  while (offset < file.length) {
    const length = file.readUInt32BE(offset);
    const typeAndData = file.subarray(offset + 4, offset + 8 + length);
    const type = typeAndData.subarray(0, 4).toString('latin1');
    const data = typeAndData.subarray(4);
    expect(file.readUInt32BE(offset + 8 + length), `CRC of ${type}`).toBe(crc(typeAndData));
    chunkTypes.push(type);
    if (type === 'IHDR') header = data;
    if (type === 'IDAT') idat.push(data);
    offset += 12 + length;
  }
  expect(offset).toBe(file.length);
  if (header === undefined) throw new Error('no IHDR');
  expect(header.length).toBe(13);
  const width = header.readUInt32BE(0);
  const height = header.readUInt32BE(4);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * 3;
  const pixels = new Uint8Array(stride * height);
  for (let y = 0; y < height && raw.length === (stride + 1) * height; y++) {
    expect(raw[y * (stride + 1)], `filter byte of row ${y}`).toBe(0);
    pixels.set(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)), y * stride);
  }
  return {
    chunkTypes,
    width,
    height,
    bitDepth: header[8]!,
    colorType: header[9]!,
    compression: header[10]!,
    filter: header[11]!,
    interlace: header[12]!,
    raw,
    pixels,
  };
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function pixelOf(image: RgbImage, x: number, y: number): Rgb {
  const i = (y * image.width + x) * 3;
  return [image.pixels[i]!, image.pixels[i + 1]!, image.pixels[i + 2]!];
}

describe('the test CRC-32', () => {
  it('gives the CRC that ends every PNG file (IEND, empty data: AE 42 60 82)', () => {
    expect(crc(Buffer.from('IEND', 'latin1'))).toBe(0xae426082);
  });
});

describe('encodePng', () => {
  // 3×2: red, green, blue / white, black, grey.
  const image: RgbImage = {
    width: 3,
    height: 2,
    pixels: Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 128, 128, 128]),
  };

  it('writes the signature, IHDR, IDAT and IEND chunks with valid CRCs', () => {
    expect(decodePng(encodePng(image)).chunkTypes).toEqual(['IHDR', 'IDAT', 'IEND']);
  });

  it('declares the size, 8-bit RGB, deflate, the adaptive filter method and no interlace in IHDR', () => {
    expect(decodePng(encodePng(image))).toMatchObject({
      width: 3,
      height: 2,
      bitDepth: 8,
      colorType: 2,
      compression: 0,
      filter: 0,
      interlace: 0,
    });
  });

  it('stores rows whose IDAT inflates to one filter byte plus three bytes per pixel per row', () => {
    const decoded = decodePng(encodePng(image));
    expect(decoded.raw.length).toBe(2 * (1 + 3 * 3));
    expect(decoded.pixels).toEqual(image.pixels);
  });

  it('round-trips any small image through a decoder', () => {
    const sized = fc
      .record({ width: fc.integer({ min: 1, max: 24 }), height: fc.integer({ min: 1, max: 24 }) })
      .chain(({ width, height }) =>
        fc
          .uint8Array({ minLength: width * height * 3, maxLength: width * height * 3 })
          .map((pixels) => ({ width, height, pixels })),
      );
    fc.assert(
      fc.property(sized, (img) => {
        const decoded = decodePng(encodePng(img));
        expect([decoded.width, decoded.height]).toEqual([img.width, img.height]);
        expect(decoded.pixels).toEqual(img.pixels);
      }),
      { numRuns: 60 },
    );
  });

  it.each([
    ['a zero width', { width: 0, height: 1, pixels: new Uint8Array(0) }],
    ['a fractional height', { width: 1, height: 1.5, pixels: new Uint8Array(3) }],
    ['a negative height', { width: 1, height: -1, pixels: new Uint8Array(0) }],
    ['too few pixel bytes', { width: 2, height: 2, pixels: new Uint8Array(11) }],
    ['too many pixel bytes', { width: 2, height: 2, pixels: new Uint8Array(13) }],
  ])('refuses %s', (_name, bad) => {
    expect(() => encodePng(bad)).toThrow(RangeError);
  });
});

describe('FONT', () => {
  it('holds every glyph as 7 rows of 5 cells, each ink or blank', () => {
    for (const [ch, rows] of Object.entries(FONT)) {
      expect(rows, `glyph '${ch}'`).toHaveLength(GLYPH_HEIGHT);
      for (const row of rows) expect(row, `glyph '${ch}'`).toMatch(new RegExp(`^[#.]{${GLYPH_WIDTH}}$`));
    }
  });

  it('draws digits, the point, s and a blank, which every tick label needs', () => {
    expect(missingGlyphs('0123456789. s')).toEqual([]);
  });

  it('has a glyph for every descender it lowers', () => {
    for (const ch of DESCENDERS) expect(FONT[ch], `descender '${ch}'`).toBeDefined();
  });

  it('names each missing character once', () => {
    expect(missingGlyphs('ZaZ€')).toEqual(['Z', '€']);
  });
});

describe('Canvas', () => {
  const red: Rgb = [255, 0, 0];
  const white: Rgb = [255, 255, 255];

  it('draws both ends of a line and every pixel between on a diagonal', () => {
    const canvas = new Canvas(5, 5, white);
    canvas.line(0, 0, 4, 4, red);
    for (let i = 0; i < 5; i++) expect(canvas.pixel(i, i)).toEqual(red);
    expect(canvas.pixel(1, 0)).toEqual(white);
  });

  it('leaves the gaps of a dashed line blank', () => {
    const canvas = new Canvas(10, 1, white);
    canvas.line(0, 0, 9, 0, red, { on: 2, off: 3 });
    const row = Array.from({ length: 10 }, (_, x) => (canvas.pixel(x, 0)[1] === 0 ? '#' : '.'));
    expect(row.join('')).toBe('##...##...');
  });

  it('clips rectangles at the edges instead of wrapping into the next row', () => {
    const canvas = new Canvas(4, 2, white);
    canvas.fillRect(2, 0, 10, 1, red);
    expect([0, 1, 2, 3].map((x) => canvas.pixel(x, 1))).toEqual([white, white, white, white]);
    expect(canvas.pixel(3, 0)).toEqual(red);
  });

  it('writes a glyph pixel for pixel, scaled', () => {
    const canvas = new Canvas(12, 14, white);
    canvas.text(0, 0, '1', red, 2);
    FONT['1']!.forEach((row, y) => {
      [...row].forEach((cell, x) => {
        expect(canvas.pixel(x * 2 + 1, y * 2 + 1), `(${x}, ${y})`).toEqual(cell === '#' ? red : white);
      });
    });
  });

  it('lowers a descender below the cell', () => {
    const canvas = new Canvas(6, 9, white);
    canvas.text(0, 0, 'p', red, 1);
    expect(canvas.pixel(0, 8)).toEqual(red);
    expect(canvas.pixel(0, 0)).toEqual(white);
  });

  it('refuses text with a character the font lacks', () => {
    expect(() => new Canvas(20, 10, white).text(0, 0, 'aZ', red, 1)).toThrow(/no glyph for 'Z'/);
  });

  it('measures text as glyphs plus one blank column between them', () => {
    expect(textWidth('10 s', 2)).toBe((4 * 6 - 1) * 2);
    expect(textWidth('', 2)).toBe(0);
  });
});

describe('niceTicks', () => {
  it.each([
    [1.014, 6, { step: 0.2, top: 1.2, decimals: 1 }],
    [2.858, 6, { step: 0.5, top: 3, decimals: 1 }],
    [10, 5, { step: 2, top: 10, decimals: 0 }],
    [0.0042, 5, { step: 0.001, top: 0.005, decimals: 3 }],
    [0, 5, { step: 0.2, top: 1, decimals: 1 }],
  ])('scales a maximum of %s for about %s intervals', (max, target, expected) => {
    const ticks = niceTicks(max, target);
    expect(ticks).toMatchObject(expected);
    expect(ticks.ticks[0]).toBe(0);
    expect(ticks.top).toBeGreaterThanOrEqual(max);
  });

  it('always reaches the maximum from 0 in equal steps, with few intervals', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-3, max: 1e4, noNaN: true }), (max) => {
        const { ticks, step, top } = niceTicks(max, 6);
        // Float noise above a tick (0.0010000000000000002) does not cost a whole extra step.
        expect(top).toBeGreaterThanOrEqual(max - step * 1e-9);
        expect(ticks.length - 1).toBeLessThanOrEqual(13);
        ticks.forEach((t, i) => {
          expect(t).toBeCloseTo(i * step, 9);
        });
      }),
    );
  });
});

describe('indexTicks', () => {
  it.each([
    [1, [1]],
    [10, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]],
    [50, [1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50]],
    [200, [1, 20, 40, 60, 80, 100, 120, 140, 160, 180, 200]],
    [0, []],
  ])('labels %s slots at %j', (n, expected) => {
    expect(indexTicks(n)).toEqual(expected);
  });
});

// The fixed input of the pixel tests: a complete 3-task run and a 6-task run in which one task
// never served the new certificate.
const fixedResults = {
  at: '2026-11-23T17:29:12.000Z',
  environment: { cores: 2, loadAverage1m: 0.7 },
  runs: [
    {
      tasks: 3,
      status: 'SUCCEEDED',
      seconds: 0.25,
      perTask: [
        { taskId: 'task-1', seconds: 0.2 },
        { taskId: 'task-2', seconds: 0.25 },
        { taskId: 'task-3', seconds: 0.21 },
      ],
    },
    {
      tasks: 6,
      status: 'SUCCEEDED',
      seconds: null,
      perTask: [
        { taskId: 'task-1', seconds: 0.3 },
        { taskId: 'task-2', seconds: 0.5 },
        { taskId: 'task-3', seconds: null },
        { taskId: 'task-4', seconds: 0.9 },
        { taskId: 'task-5', seconds: 1.1 },
        { taskId: 'task-6', seconds: 1.3 },
      ],
    },
  ],
};

describe('rotationChartSpec', () => {
  it('makes one series per fleet size with each task in fleet order', () => {
    const spec = rotationChartSpec(fixedResults);
    expect(spec.series.map((s) => s.values)).toEqual([
      [0.2, 0.25, 0.21],
      [0.3, 0.5, null, 0.9, 1.1, 1.3],
    ]);
  });

  it('labels a series by when every task served, or how many did, or how the run ended', () => {
    const spec = rotationChartSpec({
      ...fixedResults,
      runs: [
        ...fixedResults.runs,
        { tasks: 1, status: 'TIMED_OUT', seconds: null, perTask: [] },
        { tasks: 50, status: 'SUCCEEDED', seconds: 2.858 },
      ],
    });
    expect(spec.series.map((s) => s.label)).toEqual([
      '3 tasks: all serving by 0.25 s',
      '6 tasks: 5/6 seen serving',
      '1 task: timed_out',
      '50 tasks: no per-task figures',
    ]);
  });

  it('writes only characters the font has, in every label it can produce', () => {
    const spec = rotationChartSpec({
      at: '2026-11-23T17:29:12.000Z',
      environment: { cores: 2, loadAverage1m: 7.64 },
      runs: [
        ...fixedResults.runs,
        ...['FAILED', 'TIMED_OUT', 'ABORTED', 'ERROR'].map((status) => ({
          tasks: 10,
          status,
          seconds: null,
          perTask: [],
        })),
        { tasks: 50, status: 'SUCCEEDED', seconds: 2.858 },
      ],
    });
    const texts = drawingTexts(layoutDotChart(spec));
    expect(texts).toContain(spec.title);
    expect(texts.flatMap(missingGlyphs)).toEqual([]);
  });
});

describe('layoutDotChart', () => {
  const spec: DotChartSpec = rotationChartSpec(fixedResults);

  it('renders the same pixels for the same input', () => {
    const first = renderDotChart(spec);
    const second = renderDotChart(structuredClone(spec));
    expect(sha256(second.pixels)).toBe(sha256(first.pixels));
    // The reviewed look of the fixed input; a deliberate change of the chart updates this.
    expect(sha256(first.pixels)).toBe('0db4a84c9d82941591e6cc6210df5ee3d6c45255e0b17e9f3df0f085bf40acbe');
  });

  it('draws a marker in the series colour at each value and a cross on the top edge for a missing one', () => {
    const drawing = layoutDotChart(spec);
    const canvas = paint(drawing);
    const markers = drawing.ops.filter((op) => op.kind === 'disc' && op.cy > 80);
    const byColour = (colour: Rgb) =>
      markers.filter((op) => op.kind === 'disc' && op.color.every((c, i) => c === colour[i]));
    expect(byColour(SERIES_COLORS[0]!)).toHaveLength(3);
    expect(byColour(SERIES_COLORS[1]!)).toHaveLength(5);
    for (const op of byColour(SERIES_COLORS[1]!)) {
      if (op.kind === 'disc') expect(canvas.pixel(op.cx, op.cy)).toEqual(SERIES_COLORS[1]);
    }
    const geometry = dotChartGeometry(spec);
    const cross = geometry.at(1, 2, geometry.yTop);
    expect(canvas.pixel(cross.x, cross.y)).toEqual(SERIES_COLORS[1]);
    expect(canvas.pixel(cross.x, cross.y - geometry.markerRadius - 2)).toEqual([255, 255, 255]);
  });

  // The axes are the last two lines drawn: the y axis from the plot's top down, then the x axis.
  function axes(drawing: ReturnType<typeof layoutDotChart>) {
    const lines = drawing.ops.flatMap((op) => (op.kind === 'line' ? [op] : []));
    return { yAxis: lines[lines.length - 2]!, xAxis: lines[lines.length - 1]! };
  }

  it('places a value at its height on the y scale: 0 on the x axis, the top tick at the plot top', () => {
    const drawing = layoutDotChart({ ...spec, series: [{ label: 'x', values: [0, 1.5, 0.75] }] });
    const { xAxis, yAxis } = axes(drawing);
    const centres = drawing.ops.flatMap((op) =>
      op.kind === 'disc' && op.cy > yAxis.y0 - 10 && op.color === SERIES_COLORS[0] ? [op.cy] : [],
    );
    expect(centres).toEqual([xAxis.y0, yAxis.y0, Math.round((xAxis.y0 + yAxis.y0) / 2)]);
  });

  it('labels the y ticks with the unit, ending at the first tick above the largest value', () => {
    const texts = drawingTexts(layoutDotChart(spec));
    expect(texts).toEqual(expect.arrayContaining(['0.0 s', '0.5 s', '1.0 s', '1.5 s']));
    expect(texts).not.toContain('2.0 s');
  });

  it('leaves the corners white and draws both axes over the markers', () => {
    const drawing = layoutDotChart({ ...spec, series: [{ label: 'x', values: [0] }] });
    const canvas = paint(drawing);
    const { xAxis, yAxis } = axes(drawing);
    expect(pixelOf(canvas, 0, 0)).toEqual([255, 255, 255]);
    expect(pixelOf(canvas, canvas.width - 1, canvas.height - 1)).toEqual([255, 255, 255]);
    const marker = drawing.ops.findLast((op) => op.kind === 'disc');
    if (marker?.kind !== 'disc') throw new Error('no marker');
    expect(pixelOf(canvas, marker.cx, xAxis.y0)).toEqual(pixelOf(canvas, yAxis.x0, yAxis.y0 + 1));
  });
});

describe('chartPathFor', () => {
  it('puts the chart next to the JSON under the same name', () => {
    expect(chartPathFor('bench/results/rotation.json')).toBe('bench/results/rotation.png');
    expect(chartPathFor('/tmp/out')).toBe('/tmp/out.png');
  });
});

describe('redrawRotationChart', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('draws the PNG of an existing results file next to it', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bench-chart-'));
    const json = join(dir, 'rotation.json');
    await writeFile(json, JSON.stringify({ suite: 'rotation', ...fixedResults }));
    const png = await redrawRotationChart(json);
    expect(png).toBe(join(dir, 'rotation.png'));
    const decoded = decodePng(await readFile(png));
    expect([decoded.width, decoded.height]).toEqual([900, 500]);
    expect(sha256(decoded.pixels)).toBe(sha256(renderDotChart(rotationChartSpec(fixedResults)).pixels));
  });

  it('refuses results written before the per-task figures were stored', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bench-chart-'));
    const json = join(dir, 'rotation.json');
    const { perTask: _a, ...first } = fixedResults.runs[0]!;
    await writeFile(json, JSON.stringify({ ...fixedResults, runs: [first] }));
    await expect(redrawRotationChart(json)).rejects.toMatchObject({
      name: 'BenchmarkError',
      message: expect.stringMatching(/no per-task figures/),
    });
  });

  it('refuses a file that is not rotation results', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bench-chart-'));
    const json = join(dir, 'rotation.json');
    await writeFile(json, JSON.stringify({ suite: 'dataplane', rows: [] }));
    await expect(redrawRotationChart(json)).rejects.toMatchObject({ name: 'BenchmarkError' });
  });
});

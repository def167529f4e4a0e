/**
 * A strict reader of the Prometheus text exposition format (0.0.4), for tests: it refuses what
 * the format's rules refuse and what lenient parsers let through
 * (https://prometheus.io/docs/instrumenting/exposition_formats/):
 * - lines end with `\n`, the last one too;
 * - all lines of a metric family form one group, `# HELP`/`# TYPE` first, each at most once;
 * - `# TYPE` is one of counter, gauge, histogram, summary, untyped;
 * - metric and label names follow their grammars, label values only escape `\\`, `\"`, `\n`;
 * - a sample's value is a float, `NaN`, `+Inf` or `-Inf`, then an optional integer timestamp;
 * - every (name, label set) appears once.
 * And this project's rule on top: every sample of a family carries the same label names.
 * It is used together with `parse-prometheus-text-format`, the npm parser, on every scrape.
 */
import parsePrometheusTextFormat from 'parse-prometheus-text-format';

export interface ExpositionSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface ExpositionFamily {
  name: string;
  type: string;
  help: string | undefined;
  samples: ExpositionSample[];
}

export class ExpositionError extends Error {
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.name = 'ExpositionError';
  }
}

const METRIC = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const FLOAT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** The family a sample name belongs to (`x_bucket`, `x_sum`, `x_count` of a histogram/summary `x`). */
function familyOf(name: string, types: Map<string, string>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const type = types.get(base);
    if (type === 'histogram' || (type === 'summary' && suffix !== '_bucket')) return base;
  }
  return name;
}

function parseLabels(text: string, line: number): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new ExpositionError(line, `label without '=' in {${text}}`);
    const name = text.slice(i, eq).trim();
    if (!LABEL.test(name)) throw new ExpositionError(line, `invalid label name '${name}'`);
    if (name in labels) throw new ExpositionError(line, `label '${name}' repeated`);
    if (text[eq + 1] !== '"') throw new ExpositionError(line, `label '${name}' value not quoted`);
    let value = '';
    let j = eq + 2;
    for (; j < text.length; j++) {
      const c = text[j];
      if (c === '\\') {
        const next = text[j + 1];
        if (next === '\\') value += '\\';
        else if (next === '"') value += '"';
        else if (next === 'n') value += '\n';
        else throw new ExpositionError(line, `invalid escape '\\${next ?? ''}' in label '${name}'`);
        j++;
      } else if (c === '"') {
        break;
      } else {
        value += c;
      }
    }
    if (j >= text.length) throw new ExpositionError(line, `label '${name}' value not closed`);
    labels[name] = value;
    i = j + 1;
    if (i < text.length) {
      if (text[i] !== ',') throw new ExpositionError(line, `expected ',' after label '${name}'`);
      i++;
    }
  }
  return labels;
}

function parseValue(text: string, line: number): number {
  if (text === 'NaN') return Number.NaN;
  if (text === '+Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  if (!FLOAT.test(text)) throw new ExpositionError(line, `invalid value '${text}'`);
  return Number(text);
}

/** Parses `text` by the rules above; throws `ExpositionError` naming the first line that breaks one. */
export function parseExposition(text: string): ExpositionFamily[] {
  if (text.length > 0 && !text.endsWith('\n'))
    throw new ExpositionError(0, 'the last line must end with \\n');
  const lines = text.split('\n').slice(0, -1);
  const families = new Map<string, ExpositionFamily>();
  const types = new Map<string, string>();
  const closed = new Set<string>();
  const series = new Set<string>();
  const labelNames = new Map<string, string>();
  let current: string | undefined;
  const enter = (name: string, n: number, what: string) => {
    if (current === name) return;
    if (closed.has(name))
      throw new ExpositionError(n, `${what} of ${name} after another family: families interleave`);
    if (current !== undefined) closed.add(current);
    current = name;
  };
  const family = (name: string): ExpositionFamily => {
    let f = families.get(name);
    if (f === undefined) {
      f = { name, type: 'untyped', help: undefined, samples: [] };
      families.set(name, f);
    }
    return f;
  };
  lines.forEach((raw, index) => {
    const n = index + 1;
    const line = raw.trim();
    if (line === '') return;
    if (line.startsWith('#')) {
      const tokens = line
        .slice(1)
        .trim()
        .split(/[ \t]+/);
      const [keyword, name] = tokens;
      if (keyword !== 'HELP' && keyword !== 'TYPE') return;
      if (name === undefined || !METRIC.test(name))
        throw new ExpositionError(n, `# ${keyword} with an invalid name`);
      enter(name, n, keyword);
      const f = family(name);
      if (keyword === 'HELP') {
        if (f.help !== undefined) throw new ExpositionError(n, `second # HELP for ${name}`);
        const help = line.replace(/^#[ \t]*HELP[ \t]+\S+[ \t]?/, '');
        if (/\\[^\\n]/.test(help.replace(/\\\\/g, '')))
          throw new ExpositionError(n, `invalid escape in # HELP ${name}`);
        f.help = help.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
        return;
      }
      if (types.has(name)) throw new ExpositionError(n, `second # TYPE for ${name}`);
      if (f.samples.length > 0) throw new ExpositionError(n, `# TYPE ${name} after its samples`);
      if (tokens.length !== 3 || !TYPES.has(tokens[2]!))
        throw new ExpositionError(n, `# TYPE ${name} needs one of ${[...TYPES].join(', ')}`);
      types.set(name, tokens[2]!);
      f.type = tokens[2]!;
      return;
    }
    const m = /^([^{\s]+)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+(\S+))?$/.exec(line);
    if (!m) throw new ExpositionError(n, `not a sample: ${line}`);
    const name = m[1]!;
    if (!METRIC.test(name)) throw new ExpositionError(n, `invalid metric name '${name}'`);
    const labels = m[2] === undefined ? {} : parseLabels(m[2], n);
    const value = parseValue(m[3]!, n);
    if (m[4] !== undefined && !/^-?\d+$/.test(m[4]))
      throw new ExpositionError(n, `invalid timestamp '${m[4]}'`);
    const base = familyOf(name, types);
    enter(base, n, 'sample');
    const key = `${name}{${Object.entries(labels)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(',')}}`;
    if (series.has(key)) throw new ExpositionError(n, `series ${key} repeated`);
    series.add(key);
    const names = Object.keys(labels)
      .filter((l) => l !== 'le' && l !== 'quantile')
      .sort()
      .join(',');
    const known = labelNames.get(base);
    if (known !== undefined && known !== names)
      throw new ExpositionError(n, `${base} samples carry different label names: [${known}] and [${names}]`);
    labelNames.set(base, names);
    family(base).samples.push({ name, labels, value });
  });
  return [...families.values()];
}

/** What `parse-prometheus-text-format` (the npm parser) reads from `text`. */
export function parseWithLibrary(text: string): {
  name: string;
  help: string;
  type: string;
  metrics: { value?: string; labels?: Record<string, string> }[];
}[] {
  return parsePrometheusTextFormat(text);
}

/**
 * Parses `text` with both readers, checks they agree on the families, and returns this reader's
 * families by name.
 */
export function checkExposition(text: string): Map<string, ExpositionFamily> {
  const strict = parseExposition(text);
  const library = parseWithLibrary(text);
  const byName = new Map(strict.map((f) => [f.name, f]));
  const seen = new Set<string>();
  for (const f of library) {
    // The library starts a new family whenever the name changes: a name twice means interleaving.
    if (seen.has(f.name)) throw new Error(`parse-prometheus-text-format read family ${f.name} twice`);
    seen.add(f.name);
    const own = byName.get(f.name);
    if (own === undefined)
      throw new Error(`parse-prometheus-text-format read family ${f.name} the strict reader did not`);
    if (f.type.toLowerCase() !== own.type)
      throw new Error(`${f.name}: types differ (${f.type} / ${own.type})`);
    if (f.metrics.length !== own.samples.length)
      throw new Error(
        `${f.name}: ${f.metrics.length} samples read by the library, ${own.samples.length} strictly`,
      );
  }
  return byName;
}

/** The value of `name` with exactly `labels` (undefined when absent). */
export function sampleValue(
  families: Map<string, ExpositionFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name !== name) continue;
      const keys = Object.keys(s.labels);
      if (keys.length === Object.keys(labels).length && keys.every((k) => s.labels[k] === labels[k]))
        return s.value;
    }
  }
  return undefined;
}

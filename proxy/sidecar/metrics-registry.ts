/**
 * A Prometheus text-format registry: every family declared once with its type, help and label
 * names, samples added in any order, each family rendered as its `# HELP`/`# TYPE` followed by
 * all its samples (families never interleave, a family's label set never varies); and
 * {@link ReloadSafeCounters}, which keeps counters read from a source that restarts at 0 growing.
 */
import { MetricsError } from './errors.ts';

export type MetricType = 'gauge' | 'counter';

/** One metric family: name, type, help and the exact label names every sample carries. */
export interface MetricFamily {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly labels: readonly string[];
}

/** Label names to values for one sample. */
export type Labels = Readonly<Record<string, string>>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Escapes a label value (backslash, quote, newline) as the exposition format wants. */
export function labelValue(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Escapes `# HELP` text (backslash, newline). */
function helpText(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A sample value as the format writes it (`+Inf`, `-Inf`, `NaN`, else the number). */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

function sameFamily(a: MetricFamily, b: MetricFamily): boolean {
  return (
    a.type === b.type &&
    a.help === b.help &&
    a.labels.length === b.labels.length &&
    a.labels.every((l, i) => l === b.labels[i])
  );
}

/**
 * The families and samples of one exposition. Families render in the order they were declared;
 * samples of a family sorted by their label values.
 * @example
 * const registry = new MetricsRegistry();
 * registry.set(registry.family({ name: 'x_total', type: 'counter', help: 'X.', labels: ['reason'] }), { reason: 'a' }, 3);
 * registry.render(); // "# HELP x_total X.\n# TYPE x_total counter\nx_total{reason=\"a\"} 3\n"
 */
export class MetricsRegistry {
  readonly #families = new Map<string, { family: MetricFamily; samples: Map<string, number> }>();

  /**
   * Declares a family (idempotent for the same declaration). Throws `MetricsError` for an
   * invalid name or label, a counter not named `…_total`, or a second, different declaration.
   */
  family(family: MetricFamily): MetricFamily {
    const known = this.#families.get(family.name);
    if (known !== undefined) {
      if (!sameFamily(known.family, family))
        throw new MetricsError(`metric family ${family.name} declared twice, differently`);
      return known.family;
    }
    if (!METRIC_NAME.test(family.name)) throw new MetricsError(`invalid metric name ${family.name}`);
    if (family.type === 'counter' && !family.name.endsWith('_total'))
      throw new MetricsError(`counter ${family.name} must end in _total`);
    for (const label of family.labels) {
      if (!LABEL_NAME.test(label) || label.startsWith('__'))
        throw new MetricsError(`invalid label name ${label} on ${family.name}`);
    }
    if (new Set(family.labels).size !== family.labels.length)
      throw new MetricsError(`repeated label name on ${family.name}`);
    this.#families.set(family.name, { family, samples: new Map() });
    return family;
  }

  /** Sets the sample of `family` with `labels` (exactly the family's label names). */
  set(family: MetricFamily, labels: Labels, value: number): void {
    this.#samples(family, labels).samples.set(this.#key(family, labels), value);
  }

  /** Adds `value` to the sample of `family` with `labels` (0 when absent). */
  add(family: MetricFamily, labels: Labels, value: number): void {
    const entry = this.#samples(family, labels);
    const key = this.#key(family, labels);
    entry.samples.set(key, (entry.samples.get(key) ?? 0) + value);
  }

  /** The text exposition (format 0.0.4), ending in a newline. */
  render(): string {
    const out: string[] = [];
    for (const { family, samples } of this.#families.values()) {
      out.push(`# HELP ${family.name} ${helpText(family.help)}`, `# TYPE ${family.name} ${family.type}`);
      for (const [key, value] of [...samples.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
        out.push(`${family.name}${key} ${formatValue(value)}`);
      }
    }
    return `${out.join('\n')}\n`;
  }

  #samples(family: MetricFamily, labels: Labels) {
    this.family(family);
    const entry = this.#families.get(family.name)!;
    const names = Object.keys(labels);
    if (names.length !== family.labels.length || !family.labels.every((l) => l in labels)) {
      throw new MetricsError(
        `${family.name} takes labels [${family.labels.join(', ')}], got [${names.join(', ')}]`,
      );
    }
    return entry;
  }

  #key(family: MetricFamily, labels: Labels): string {
    if (family.labels.length === 0) return '';
    return `{${family.labels.map((l) => `${l}="${labelValue(labels[l] ?? '')}"`).join(',')}}`;
  }
}

/**
 * Adds samples of families it declares itself (`registry.family(…)`) to a scrape. Given to
 * {@link renderMetrics}; runs after the sidecar's own families, so its families follow them.
 */
export type MetricsContributor = (registry: MetricsRegistry) => void;

/**
 * Counters read from a source that restarts at 0 (HAProxy's stick tables on every reload),
 * summed in the sidecar. A restart is seen as another worker pid, or a value below the last one
 * read; what the previous worker had counted is kept as a base. Counts the previous worker adds
 * after the last read (its draining connections) are not seen.
 */
export class ReloadSafeCounters {
  readonly #entries = new Map<string, { base: number; last: number }>();
  #epoch: number | string | undefined;

  /** Records the values read from worker `epoch` and returns the running totals, by key. */
  observe(epoch: number | string, values: Readonly<Record<string, number>>): Record<string, number> {
    const restarted = this.#epoch !== undefined && this.#epoch !== epoch;
    this.#epoch = epoch;
    const out: Record<string, number> = {};
    for (const entry of this.#entries.values()) {
      if (restarted) {
        entry.base += entry.last;
        entry.last = 0;
      }
    }
    for (const [key, value] of Object.entries(values)) {
      const entry = this.#entries.get(key) ?? { base: 0, last: 0 };
      if (value < entry.last) entry.base += entry.last;
      entry.last = value;
      this.#entries.set(key, entry);
    }
    for (const [key, entry] of this.#entries) out[key] = entry.base + entry.last;
    return out;
  }
}

/** Types of the npm parser (it ships none): families with their samples, values as strings. */
declare module 'parse-prometheus-text-format' {
  interface ParsedFamily {
    name: string;
    help: string;
    /** Upper case: `COUNTER`, `GAUGE`, `UNTYPED`, … */
    type: string;
    metrics: { value?: string; labels?: Record<string, string> }[];
  }
  export default function parsePrometheusTextFormat(text: string): ParsedFamily[];
}

/**
 * Reading a packaged template the way CloudFormation would for one set of parameters: its
 * Conditions evaluated (packaging has already put the parameters in as literals), `Fn::If`
 * resolved, and the resources that would be created.
 */
import type { CfnResource, CfnTemplate } from './package.ts';

const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : [value]);

/** Evaluates every Condition (Fn::Equals/Not/Or/And over literals and Condition names). */
export function evaluateConditions(template: CfnTemplate): Record<string, boolean> {
  const conditions = template.Conditions ?? {};
  const cache: Record<string, boolean> = {};
  const evaluate = (node: unknown): unknown => {
    if (typeof node !== 'object' || node === null) return node;
    const [[fn, args]] = Object.entries(node) as [[string, unknown]];
    const values = list(args);
    switch (fn) {
      case 'Fn::Equals':
        return evaluate(values[0]) === evaluate(values[1]);
      case 'Fn::Not':
        return !evaluate(values[0]);
      case 'Fn::Or':
        return values.some((v) => evaluate(v) === true);
      case 'Fn::And':
        return values.every((v) => evaluate(v) === true);
      case 'Condition':
        return byName(args as string);
      default:
        throw new Error(`cannot evaluate ${fn}`);
    }
  };
  const byName = (name: string): boolean => {
    if (!(name in conditions)) throw new Error(`unknown condition ${name}`);
    cache[name] ??= evaluate(conditions[name]) === true;
    return cache[name];
  };
  for (const name of Object.keys(conditions)) byName(name);
  return cache;
}

/** Resolves `Fn::If` (and leaves everything else) under the evaluated conditions. */
export function resolveIf(value: unknown, conditions: Record<string, boolean>): unknown {
  if (Array.isArray(value)) return value.map((v) => resolveIf(v, conditions));
  if (typeof value !== 'object' || value === null) return value;
  const fnIf = (value as { 'Fn::If'?: [string, unknown, unknown] })['Fn::If'];
  if (fnIf !== undefined) {
    const [name, yes, no] = fnIf;
    if (!(name in conditions)) throw new Error(`unknown condition ${name}`);
    return resolveIf(conditions[name] ? yes : no, conditions);
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolveIf(v, conditions)]));
}

/** The resources CloudFormation would create under the evaluated conditions. */
export function created(
  template: CfnTemplate,
  conditions: Record<string, boolean>,
): Record<string, CfnResource> {
  return Object.fromEntries(
    Object.entries(template.Resources).filter(
      ([, r]) => r.Condition === undefined || conditions[r.Condition],
    ),
  );
}

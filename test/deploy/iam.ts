/** IAM statements of a packaged template, for the tests that check least privilege. */
import type { CfnTemplate } from './package.ts';

export interface Statement {
  Sid?: string;
  Effect: string;
  Action?: string | string[];
  NotAction?: unknown;
  Resource?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

/** A policy field that may be one value or a list, as a list. */
export const list = <T>(value: T | T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

/** Every IAM statement of a role (inline policies) plus standalone policies attached to it. */
export function roleStatements(template: CfnTemplate, roleId: string): Statement[] {
  const role = template.Resources[roleId];
  if (role?.Type !== 'AWS::IAM::Role') throw new Error(`${roleId} is not an IAM role of the template`);
  const inline = (
    (role.Properties?.Policies ?? []) as { PolicyDocument: { Statement: Statement[] } }[]
  ).flatMap((p) => p.PolicyDocument.Statement);
  const attached = Object.values(template.Resources)
    .filter(
      (r) =>
        r.Type === 'AWS::IAM::Policy' &&
        JSON.stringify((r.Properties as { Roles: unknown }).Roles).includes(`"${roleId}"`),
    )
    .flatMap(
      (r) => (r.Properties as { PolicyDocument: { Statement: Statement[] } }).PolicyDocument.Statement,
    );
  return [...inline, ...attached];
}

/** Every IAM statement of the template with the role or policy it belongs to. */
export function allStatements(template: CfnTemplate): { owner: string; statement: Statement }[] {
  const result: { owner: string; statement: Statement }[] = [];
  for (const [id, r] of Object.entries(template.Resources)) {
    const p = r.Properties as Record<string, unknown> | undefined;
    if (r.Type === 'AWS::IAM::Role') {
      for (const policy of (p?.Policies ?? []) as { PolicyDocument: { Statement: Statement[] } }[])
        for (const statement of policy.PolicyDocument.Statement) result.push({ owner: id, statement });
    }
    if (r.Type === 'AWS::IAM::Policy' || r.Type === 'AWS::IAM::ManagedPolicy') {
      for (const statement of (p?.PolicyDocument as { Statement: Statement[] } | undefined)?.Statement ?? [])
        result.push({ owner: id, statement });
    }
  }
  return result;
}

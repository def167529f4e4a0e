/**
 * osls plugin: refuses, when the stack is packaged, parameter values CloudFormation or the
 * services would only refuse at deploy time, halfway through a stack operation:
 *
 * - with `ecrPullThroughPrefix`, a `haproxyImage` that is not on `public.ecr.aws` (the
 *   pull-through rule's upstream; CloudFormation's `Fn::Select` would fail on it);
 * - an NLB listener's `tcp.idle_timeout.seconds` outside 60–6000 (`tcpIdleTimeoutSeconds`;
 *   Elastic Load Balancing's documented range);
 * - task counts that are not whole numbers ≥ 0, or a `minCapacity` above `maxCapacity` (the
 *   FleetReadiness check would fail the deploy on them).
 *
 * It reads the compiled template, where every `${param:…}` is already resolved, just before
 * osls writes it (`sls package` and `sls deploy` alike), so no AWS call is needed.
 *
 * Loaded by osls through `require()`; Node ≥ 22.18 strips the types, hence the default export.
 */

interface Template {
  Conditions?: Record<string, unknown>;
  Resources: Record<string, { Type?: string; Properties?: Record<string, unknown> }>;
}

const IDLE_TIMEOUT = { min: 60, max: 6000 } as const;
const PUBLIC_ECR = 'public.ecr.aws/';

/** The literal compared with "" in a `Fn::Not: [Fn::Equals: [x, ""]]` condition. */
function notEmptyOperand(condition: unknown): string | undefined {
  const equals = (condition as { 'Fn::Not'?: [{ 'Fn::Equals'?: [unknown, unknown] }] })?.['Fn::Not']?.[0]?.[
    'Fn::Equals'
  ];
  return typeof equals?.[0] === 'string' ? equals[0] : undefined;
}

/** `haproxyImage` as resolved into the gateway container's pull-through expression. */
function gatewayImage(template: Template): string | undefined {
  const containers = template.Resources.GatewayTaskDefinition?.Properties?.ContainerDefinitions as
    | { Name?: string; Image?: unknown }[]
    | undefined;
  const image = containers?.find((c) => c.Name === 'gateway')?.Image as
    | { 'Fn::If'?: [string, unknown, unknown] }
    | undefined;
  const plain = image?.['Fn::If']?.[2];
  return typeof plain === 'string' ? plain : undefined;
}

/** Every problem found in a compiled template (empty when there is none). Pure. */
export function templateProblems(template: Template): string[] {
  const problems: string[] = [];
  const prefix = notEmptyOperand(template.Conditions?.UsePullThroughCache);
  const image = gatewayImage(template);
  if (prefix === undefined || image === undefined) {
    problems.push(
      'the gateway image or the UsePullThroughCache condition is not where this check reads them',
    );
  } else if (prefix !== '' && !image.startsWith(PUBLIC_ECR)) {
    problems.push(
      `haproxyImage '${image}' is not on public.ecr.aws, but ecrPullThroughPrefix '${prefix}' pulls it through a public.ecr.aws cache rule: use a public.ecr.aws image or leave ecrPullThroughPrefix empty`,
    );
  }

  for (const [id, resource] of Object.entries(template.Resources)) {
    if (resource.Type !== 'AWS::ElasticLoadBalancingV2::Listener') continue;
    const attributes = (resource.Properties?.ListenerAttributes ?? []) as { Key?: string; Value?: unknown }[];
    for (const attribute of attributes) {
      if (attribute.Key !== 'tcp.idle_timeout.seconds') continue;
      const seconds = Number(attribute.Value);
      if (!Number.isInteger(seconds) || seconds < IDLE_TIMEOUT.min || seconds > IDLE_TIMEOUT.max)
        problems.push(
          `${id}: tcp.idle_timeout.seconds (tcpIdleTimeoutSeconds) is '${String(attribute.Value)}', not a whole number of seconds from ${IDLE_TIMEOUT.min} to ${IDLE_TIMEOUT.max}`,
        );
    }
  }

  const readiness = template.Resources.FleetReadiness?.Properties;
  if (readiness !== undefined) {
    const counts: Record<string, number> = {};
    for (const [key, param] of [
      ['DesiredCount', 'desiredCount'],
      ['MinCapacity', 'minCapacity'],
      ['MaxCapacity', 'maxCapacity'],
    ] as const) {
      const value = Number(readiness[key]);
      if (!Number.isInteger(value) || value < 0)
        problems.push(`${param} is '${String(readiness[key])}', not a whole number ≥ 0`);
      counts[key] = value;
    }
    if ((counts.MinCapacity ?? 0) > (counts.MaxCapacity ?? 0))
      problems.push(`minCapacity (${counts.MinCapacity}) is above maxCapacity (${counts.MaxCapacity})`);
  }
  return problems;
}

interface Serverless {
  service: { provider: { compiledCloudFormationTemplate: Template } };
}

export default class TemplateChecksPlugin {
  readonly hooks: Record<string, () => void>;

  constructor(serverless: Serverless) {
    this.hooks = {
      'before:aws:package:finalize:saveServiceState': () => {
        const problems = templateProblems(serverless.service.provider.compiledCloudFormationTemplate);
        if (problems.length > 0)
          throw new Error(`the stack's parameters would fail at deploy time:\n- ${problems.join('\n- ')}`);
      },
    };
  }
}

/**
 * The package-time checks of serverless/template-checks-plugin.ts, on templates of the shapes
 * serverless/fleet.yml compiles to. (Every packaged-template test runs the plugin on the real
 * template too: packaging fails when a check cannot find what it reads.)
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import TemplateChecksPlugin, { templateProblems } from '../../serverless/template-checks-plugin.ts';

function template(
  options: {
    prefix?: string;
    image?: string;
    idle?: string;
    desired?: string;
    min?: string;
    max?: string;
  } = {},
) {
  const image = options.image ?? 'public.ecr.aws/docker/library/haproxy:3.2.0';
  return {
    Conditions: { UsePullThroughCache: { 'Fn::Not': [{ 'Fn::Equals': [options.prefix ?? '', ''] }] } },
    Resources: {
      GatewayTaskDefinition: {
        Type: 'AWS::ECS::TaskDefinition',
        Properties: {
          ContainerDefinitions: [
            { Name: 'sidecar', Image: 'sidecar:1' },
            {
              Name: 'gateway',
              Image: { 'Fn::If': ['UsePullThroughCache', { 'Fn::Sub': ['…', {}] }, image] },
            },
          ],
        },
      },
      PublicTlsListener: {
        Type: 'AWS::ElasticLoadBalancingV2::Listener',
        Properties: {
          ListenerAttributes: [{ Key: 'tcp.idle_timeout.seconds', Value: options.idle ?? '3600' }],
        },
      },
      FleetReadiness: {
        Type: 'Custom::FleetReadiness',
        Properties: {
          DesiredCount: options.desired ?? '3',
          MinCapacity: options.min ?? '3',
          MaxCapacity: options.max ?? '9',
        },
      },
    },
  };
}

describe('templateProblems', () => {
  it('passes the defaults, and a public.ecr.aws image through a pull-through prefix', () => {
    expect(templateProblems(template())).toEqual([]);
    expect(templateProblems(template({ prefix: 'ecr-public' }))).toEqual([]);
    // Without a prefix any registry will do.
    expect(templateProblems(template({ image: 'registry.example.test/haproxy:3.2.0' }))).toEqual([]);
  });

  it('refuses an image the pull-through cache rule cannot serve', () => {
    const problems = templateProblems(
      template({ prefix: 'ecr-public', image: 'docker.io/library/haproxy:3.2.0' }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /haproxyImage 'docker\.io\/library\/haproxy:3\.2\.0' is not on public\.ecr\.aws/,
    );
  });

  it('refuses an NLB idle timeout outside 60-6000 s', () => {
    expect(templateProblems(template({ idle: '59' }))[0]).toMatch(
      /PublicTlsListener: tcp\.idle_timeout\.seconds/,
    );
    expect(templateProblems(template({ idle: '6001' }))).toHaveLength(1);
    expect(templateProblems(template({ idle: 'soon' }))).toHaveLength(1);
    expect(templateProblems(template({ idle: '60' }))).toEqual([]);
    expect(templateProblems(template({ idle: '6000' }))).toEqual([]);
  });

  it('refuses counts that are not whole numbers, and a minimum above the maximum', () => {
    expect(templateProblems(template({ desired: '-1' }))).toEqual([
      "desiredCount is '-1', not a whole number ≥ 0",
    ]);
    expect(templateProblems(template({ max: 'nine' }))[0]).toMatch(/^maxCapacity is 'nine'/);
    expect(templateProblems(template({ min: '10', max: '9' }))).toEqual([
      'minCapacity (10) is above maxCapacity (9)',
    ]);
  });

  it('says so when the template no longer has the shape it reads', () => {
    const changed = template();
    delete (changed.Conditions as Record<string, unknown>).UsePullThroughCache;
    expect(templateProblems(changed)[0]).toMatch(/not where this check reads them/);
  });
});

describe('the plugin', () => {
  it('fails packaging before the template is saved, listing every problem', () => {
    const plugin = new TemplateChecksPlugin({
      service: {
        provider: {
          compiledCloudFormationTemplate: template({
            prefix: 'ecr-public',
            image: 'quay.io/haproxy',
            idle: '30',
          }),
        },
      },
    });
    const hook = plugin.hooks['before:aws:package:finalize:saveServiceState']!;
    expect(hook).toThrow(/would fail at deploy time:\n- haproxyImage .*\n- PublicTlsListener/s);
    const fine = new TemplateChecksPlugin({
      service: { provider: { compiledCloudFormationTemplate: template() } },
    });
    expect(() => fine.hooks['before:aws:package:finalize:saveServiceState']!()).not.toThrow();
  });

  it('hooks an event osls has: the last step of aws:package:finalize, before the template is written', async () => {
    const source = await readFile(
      createRequire(import.meta.url).resolve('osls/lib/plugins/aws/package/index.js'),
      'utf8',
    );
    expect(source).toMatch(/finalize: \{\s*lifecycleEvents: \[[^\]]*'saveServiceState'/);
    expect(source).toContain("'aws:package:finalize:saveServiceState'");
    const hooks = Object.keys(
      new TemplateChecksPlugin({ service: { provider: { compiledCloudFormationTemplate: template() } } })
        .hooks,
    );
    expect(hooks).toEqual(['before:aws:package:finalize:saveServiceState']);
  });
});

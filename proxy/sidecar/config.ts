/**
 * The sidecar's own configuration (`portcullis sidecar --config FILE`, YAML or JSON): where the
 * secrets live, where the fleet config comes from, where HAProxy's files go, and the loop timings.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { dirname, extname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { type FleetConfig, formatIssues } from '../../lib/config/index.ts';
import { ValidationError } from '../../lib/errors.ts';

const port = z.number().int().min(0).max(65535);

export const SidecarConfigSchema = z
  .object({
    store: z.discriminatedUnion('kind', [
      z.object({ kind: z.literal('file'), dir: z.string().min(1) }).strict(),
      z.object({ kind: z.literal('aws'), region: z.string().min(1).optional() }).strict(),
    ]),
    /** The fleet config: a secret (`AWSCURRENT`, polled like the others) or a file (re-read on poll). */
    fleetConfig: z.union([
      z.object({ secretId: z.string().min(1) }).strict(),
      z.object({ file: z.string().min(1) }).strict(),
    ]),
    /** Root of the gateway layout shared with HAProxy (`/var/run/portcullis` in the task). */
    gatewayDir: z.string().min(1),
    admin: z
      .object({
        /** `0.0.0.0` in the container (the control plane calls the task's private IP). */
        host: z.string().min(1).default('127.0.0.1'),
        /** 0 picks a free port (tests); the task uses 9901. */
        port: port.default(9901),
      })
      .strict()
      .prefault({}),
    /** Poll backstop: every `pollIntervalMs` plus up to `pollJitterMs` (30–60 s by default). */
    pollIntervalMs: z.number().int().min(10).default(30_000),
    pollJitterMs: z.number().int().min(0).default(30_000),
    /** How often HAProxy's `show info` is read to notice a restart. */
    watchIntervalMs: z.number().int().min(10).default(1000),
    /** After rendering, how long to wait for HAProxy's admin socket before warning (it keeps waiting). */
    haproxyStartWaitMs: z.number().int().min(10).default(60_000),
    /** Backoff between start attempts when the store or its content is not usable yet. */
    retry: z
      .object({
        initialMs: z.number().int().min(1).default(1000),
        maxMs: z.number().int().min(1).default(30_000),
      })
      .strict()
      .prefault({}),
    /**
     * The task's own address: every listener binds it instead of the fleet config's
     * `listeners.bind`, and it is denied as a destination like the task's other addresses. For a
     * task that binds its ENI address only, and for local tasks, which share one fleet config and
     * one machine, each on its own loopback address (127.0.1.N). Absent: `listeners.bind`.
     */
    bindAddress: z
      .string()
      .refine((text) => isIP(text) !== 0, 'must be an IPv4 or IPv6 address')
      .optional(),
    /** Addresses of this task (denied as destinations), on top of the non-loopback interface addresses. */
    ownAddresses: z.array(z.string()).default([]),
    /** Read the task's addresses from its network interfaces. */
    autoOwnAddresses: z.boolean().default(true),
    /** Tolerated clock difference for certificate validity, seconds. */
    clockSkewSeconds: z.number().int().min(0).max(3600).default(60),
    /** Cap of a nudge body; a nudge is two short ids. */
    maxNudgeBytes: z.number().int().min(256).max(1_048_576).default(16_384),
    logLevel: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
    /**
     * CloudWatch embedded metric format on stdout (see `emf.ts`): the task's awslogs driver ships
     * the lines and CloudWatch extracts the metrics. Absent: no EMF lines (local tasks).
     */
    emf: z
      .object({
        namespace: z.string().min(1).max(255).default('Portcullis'),
        /** Every record's dimensions, e.g. `{ "Fleet": "edge" }` (at most 29: one is left for `Certificate`). */
        dimensions: z
          .record(z.string().regex(/^[A-Za-z][A-Za-z0-9]{0,249}$/), z.string().min(1).max(1024))
          .refine((d) => Object.keys(d).length >= 1 && Object.keys(d).length <= 29, '1 to 29 dimensions'),
        intervalMs: z.number().int().min(1000).default(60_000),
      })
      .strict()
      .optional(),
  })
  .strict();

export type SidecarConfig = z.output<typeof SidecarConfigSchema>;
export type SidecarConfigInput = z.input<typeof SidecarConfigSchema>;

/** Validates a sidecar configuration object and applies defaults. @throws ValidationError */
export function parseSidecarConfig(input: unknown, source = 'sidecar config'): SidecarConfig {
  const result = SidecarConfigSchema.safeParse(input);
  if (result.success) return result.data;
  throw new ValidationError(`invalid ${source}:\n  ${formatIssues(result.error.issues).join('\n  ')}`, {
    cause: result.error,
  });
}

/**
 * The fleet config as this task renders it: with `bindAddress`, every listener binds that address
 * only (the fleet's `listeners.bind` is for tasks that bind what their container has). Pure.
 */
export function taskFleetConfig(fleet: FleetConfig, bindAddress: string | undefined): FleetConfig {
  if (bindAddress === undefined) return fleet;
  return { ...fleet, listeners: { ...fleet.listeners, bind: [bindAddress] } };
}

/** Resolves the configuration's relative paths (store dir, gateway dir, fleet config file) against `base`. */
export function resolveSidecarPaths(config: SidecarConfig, base: string): SidecarConfig {
  return {
    ...config,
    store:
      config.store.kind === 'file' ? { ...config.store, dir: resolve(base, config.store.dir) } : config.store,
    fleetConfig:
      'file' in config.fleetConfig ? { file: resolve(base, config.fleetConfig.file) } : config.fleetConfig,
    gatewayDir: resolve(base, config.gatewayDir),
  };
}

/**
 * Reads a sidecar configuration from a YAML or JSON file; relative paths in it are relative to
 * the file's directory. @throws ValidationError
 */
export async function loadSidecarConfig(path: string): Promise<SidecarConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ValidationError(`cannot read sidecar config ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  let document: unknown;
  try {
    document = extname(path) === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new ValidationError(`sidecar config ${path} does not parse: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return resolveSidecarPaths(parseSidecarConfig(document, `sidecar config ${path}`), dirname(resolve(path)));
}

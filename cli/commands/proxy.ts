/**
 * `portcullis proxy render --config FILE --out DIR [--allowlist FILE] [--own-address IP]…`
 * Renders a gateway's haproxy.cfg and its map/ACL files into a directory laid out as
 * `proxy/haproxy/layout.ts` describes.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { loadFleetConfig } from '../../lib/config/index.ts';
import { ValidationError } from '../../lib/errors.ts';
import { gatewayLayout, renderGateway, writeGateway } from '../../proxy/haproxy/index.ts';
import { ExitCode, parseCommandArgs, usageError } from '../command.ts';

export const summary = 'Render the gateway configuration';

const HELP = `Usage: portcullis proxy render --config FILE --out DIR [options]

Renders haproxy.cfg and the map/ACL files of one gateway task into DIR.

Options:
  --config FILE       fleet configuration (YAML or JSON)
  --out DIR           output directory (the gateway's shared volume root)
  --allowlist FILE    source CIDRs: JSON {"cidrs": [...]} or one CIDR per line (# comments);
                      without it the allowlist is empty and every source is refused
  --own-address IP    an address of this task, never a destination (repeatable)
  -h, --help          show this help

Exit status: 0 written, 1 invalid input (each problem as path: reason), 2 usage error.`;

/** Reads an allowlist file: the allowlist secret's JSON shape, or plain lines. */
export function parseAllowlistText(text: string): string[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    let document: unknown;
    try {
      document = JSON.parse(trimmed);
    } catch (error) {
      throw new ValidationError(`allowlist is not valid JSON: ${(error as Error).message}`, { cause: error });
    }
    const cidrs = Array.isArray(document) ? document : (document as { cidrs?: unknown }).cidrs;
    if (!Array.isArray(cidrs) || !cidrs.every((c) => typeof c === 'string')) {
      throw new ValidationError('allowlist JSON must be {"cidrs": ["…"]} or an array of strings', {
        path: 'cidrs',
      });
    }
    return cidrs;
  }
  return trimmed
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter((line) => line !== '');
}

async function render(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(argv, options, HELP);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  if (values.config === undefined || values.out === undefined) {
    return usageError(`proxy render needs --config and --out\n\n${HELP}`);
  }
  try {
    const config = await loadFleetConfig(values.config);
    let allowlist: string[] = [];
    if (values.allowlist !== undefined) {
      let text: string;
      try {
        text = await readFile(values.allowlist, 'utf8');
      } catch (error) {
        throw new ValidationError(`cannot read allowlist ${values.allowlist}: ${(error as Error).message}`);
      }
      allowlist = parseAllowlistText(text);
    }
    const out = resolve(values.out);
    const rendered = renderGateway(config, {
      layout: gatewayLayout(out),
      allowlistCidrs: allowlist,
      ownAddresses: values['own-address'] ?? [],
    });
    const written = await writeGateway(out, rendered);
    console.log(
      `rendered fleet ${config.fleet}: ${config.routes.length} route(s), ${allowlist.length} allowlist entr${allowlist.length === 1 ? 'y' : 'ies'}`,
    );
    for (const path of written) console.log(`  wrote ${path}`);
    return ExitCode.Ok;
  } catch (error) {
    if (error instanceof ValidationError) {
      console.error(`portcullis: ${error.message}`);
      return ExitCode.Failure;
    }
    throw error;
  }
}

/** The command's options (shell completion reads them too). */
export const options = {
  config: { type: 'string' },
  out: { type: 'string' },
  allowlist: { type: 'string' },
  'own-address': { type: 'string', multiple: true },
} as const;

/** Entry point of `portcullis proxy <subcommand>`. */
export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(HELP);
    return sub === undefined ? ExitCode.Usage : ExitCode.Ok;
  }
  if (sub !== 'render') return usageError(`unknown proxy subcommand '${sub}'\n\n${HELP}`);
  return render(rest);
}

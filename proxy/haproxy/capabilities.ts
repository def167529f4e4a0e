/**
 * What differs between the HAProxy releases the gateway runs on: 3.2 LTS (the image, pinned in
 * `HAPROXY_RELEASE`) and Debian 12's 2.6 LTS. Every version-dependent behaviour the product or its
 * tests rely on is one field here, named after what changed and the release that changed it, so
 * a new release is one place to check. Answers that tell their own shape (the master CLI's
 * `reload`) are parsed by shape instead, and the field only documents them.
 */
import { ValidationError } from '../../lib/errors.ts';

/**
 * The HAProxy release the image runs and CI builds (`scripts/build-haproxy.sh`). `proxy/Dockerfile`,
 * the `haproxyImage` default in `serverless.yml` and `docs/deploy.md` name the same one; a unit
 * test keeps them equal.
 */
export const HAPROXY_RELEASE = '3.2.0';

export interface HaproxyVersion {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  /** As HAProxy prints it, e.g. `3.2.0-e134140d2` or `2.6.12-1+deb12u4`. */
  readonly text: string;
}

/** Reads `3.2.0-e134140d2`, `2.6.12-1+deb12u4`, `HAProxy version 3.2.0 2025/05/28 …`. */
export function parseHaproxyVersion(text: string): HaproxyVersion {
  const m = /(?:^|version )(\d+)\.(\d+)(?:\.(\d+))?(\S*)/.exec(text.trim());
  if (!m) throw new ValidationError(`not an HAProxy version: ${JSON.stringify(text.slice(0, 80))}`);
  return {
    major: Number(m[1]),
    minor: Number(m[2]),
    patch: Number(m[3] ?? 0),
    text: `${m[1]}.${m[2]}${m[3] === undefined ? '' : `.${m[3]}`}${m[4] ?? ''}`,
  };
}

function atLeast(v: HaproxyVersion, major: number, minor: number, patch = 0): boolean {
  if (v.major !== major) return v.major > major;
  if (v.minor !== minor) return v.minor > minor;
  return v.patch >= patch;
}

export interface HaproxyCapabilities {
  readonly version: HaproxyVersion;
  /**
   * 2.7: the master CLI's `reload` waits for the new worker and answers `Success=1` or
   * `Success=0`, then `--` and the startup log. 2.6 re-executes the master and closes the
   * connection without a word; the outcome is read from `show proc`.
   */
  readonly reloadAnswersStatus: boolean;
  /** 3.0: `haproxy -c` prints "Configuration file is valid" only with `-V` (2.6 prints it always). */
  readonly checkIsQuiet: boolean;
  /**
   * 3.1: `tune.lua.bool-sample-conversion` exists, and 3.2 warns on every config that loads Lua
   * without it; 2.6 and 3.0 refuse the keyword. The renderer wraps it in `.if version_atleast(3.1)`.
   */
  readonly luaBoolSampleConversion: boolean;
  /**
   * 3.2: after a failed reload `show proc` lists the worker that goes on serving under "old
   * workers" (the workers list is empty); 2.6 keeps it under workers.
   */
  readonly failedReloadListsServingWorkerAsOld: boolean;
  /**
   * 3.2: the HTTP/1 parser answers 400 itself to a `Host` that is no valid authority (userinfo
   * `a@b`, a space, a slash), before any `http-request` rule runs, and the HTTP/2 parser closes
   * the connection on such an `:authority` (2.6 answers that stream 400). The gateway's own rules
   * refuse the same values on 2.6 with their reason; on 3.2 the line comes from
   * `error-log-format` with reason `bad-http-request`. Comma lists without a space pass both
   * parsers and are refused by the gateway's rule on every release. Checked on 2.6.12 and 3.2.0.
   */
  readonly parserRefusesMalformedHost: boolean;
  /**
   * 3.0: log-format encodes a whole line as JSON (`%{+json}o` with `%(name)` field names). 2.6
   * accepts the syntax without a word and prints `(name)ci` literally, so the renderer spells the
   * JSON object out itself on every release (render.ts `logFormat`). Checked on 2.6.12 and 3.2.0.
   */
  readonly logFormatJsonEncoding: boolean;
  /**
   * 3.2: the message a full log ring writes once it has room again ("N events dropped") ends with
   * a NUL byte; 2.6 sends the bare text. The sidecar's log sink reads both by shape
   * (proxy/sidecar/log-sink.ts); the field only documents it. Checked on 2.6.12 and 3.2.0.
   */
  readonly ringDropAnnouncementEndsWithNul: boolean;
  /**
   * `set/commit ssl ca-file` is safe to use on a live worker. False on every release checked:
   * 2.6.12, 3.0.11 and 3.2.0 serve a stale certificate after a later `commit ssl cert`, and a
   * second `commit ssl ca-file` kills the worker. Upstream fixed it in commit 7482b6ebf (haproxy
   * issue 3165, backported to the stable branches); until a pinned release that carries it has
   * been checked here, trust bundles are applied by a seamless reload (proxy/sidecar/apply.ts).
   */
  readonly caFileCommitSafe: boolean;
}

export function capabilitiesOf(version: HaproxyVersion | string): HaproxyCapabilities {
  const v = typeof version === 'string' ? parseHaproxyVersion(version) : version;
  return {
    version: v,
    reloadAnswersStatus: atLeast(v, 2, 7),
    checkIsQuiet: atLeast(v, 3, 0),
    luaBoolSampleConversion: atLeast(v, 3, 1),
    failedReloadListsServingWorkerAsOld: atLeast(v, 3, 2),
    parserRefusesMalformedHost: atLeast(v, 3, 2),
    ringDropAnnouncementEndsWithNul: atLeast(v, 3, 2),
    logFormatJsonEncoding: atLeast(v, 3, 0),
    caFileCommitSafe: false,
  };
}

/** The binary the product starts: `HAPROXY_BIN` when set, else `haproxy` from PATH. */
export function haproxyBinary(env: NodeJS.ProcessEnv = process.env): string {
  return env['HAPROXY_BIN'] || 'haproxy';
}

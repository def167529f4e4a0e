import { type ChildProcess, spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { DemoReport } from '../../cli/demo/demo.ts';
import { processesMentioning } from '../support/processes.ts';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'main.ts');

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

/** Starts `node cli/main.ts demo …`; `finished` resolves when it exits (killed after `timeoutMs`). */
function startDemo(args: string[], timeoutMs: number) {
  const child = spawn(process.execPath, [MAIN, 'demo', ...args], {
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const finished = new Promise<Finished>((resolve) => {
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, finished, output: () => stdout + stderr };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function stateDirOf(progress: string): string | undefined {
  return /state directory (\S+)/.exec(progress)?.[1];
}

afterEach(() => {
  for (const child of children) child.kill('SIGKILL');
});

describe('npm run demo', () => {
  it('rotates and updates the allowlist on a live 3-task fleet under traffic, then leaves nothing behind', async () => {
    const demo = startDemo(['--tasks', '3', '--json'], 100_000);
    const run = await demo.finished;
    const lines = run.stdout.trim().split('\n');
    const report = JSON.parse(lines[lines.length - 1]!) as DemoReport;

    expect(report.missing, run.stderr.slice(-3000)).toEqual([]);
    expect(report).toMatchObject({
      tasks: 3,
      rotation: { status: 'SUCCEEDED', tasksServingNew: 3 },
      traffic: { failedHandshakes: 0, droppedLongLived: 0 },
      allowlist: {
        status: 'SUCCEEDED',
        removedSourceRefused: true,
        otherSourceUnaffected: true,
        restored: true,
      },
      ok: true,
    });
    expect(report.rotation.newSerial).toMatch(/^[0-9a-f]+$/);
    expect(report.rotation.newSerial).not.toBe(report.rotation.previousSerial);
    expect(report.rotation.seconds).toBeGreaterThan(0);
    for (const task of report.rotation.perTask) {
      expect(task.before).toBe(report.rotation.previousSerial);
      expect(task.after).toBe(report.rotation.newSerial);
    }
    expect(report.traffic.handshakes).toBeGreaterThan(0);
    expect(report.traffic.byRoute.mtls?.handshakes).toBeGreaterThan(0);
    expect(report.traffic.byRoute.passthrough?.handshakes).toBeGreaterThan(0);
    expect(report.traffic.longLived).toBeGreaterThan(0);
    expect(report.allowlist.cutLongLived).toBe(report.allowlist.longLivedOfRemovedSource);
    expect(report.allowlist.longLivedOfRemovedSource).toBeGreaterThan(0);
    expect(report.events).toEqual(['CertificateRotated', 'AllowlistUpdated', 'AllowlistUpdated']);
    // A task held on the old serial fires the out-of-sync alert; the rollback clears it.
    expect(report.alert).toMatchObject({
      fired: true,
      cleared: true,
      otherTasksInSync: true,
      refusal: 'untrusted-chain',
    });
    expect(report.alert?.heldSerial).toBe(report.rotation.newSerial);
    expect(run.code).toBe(0);

    // Every sidecar and HAProxy named files under the state directory: none may survive it.
    expect(await processesMentioning(report.stateDir)).toEqual([]);
    expect(await exists(report.stateDir)).toBe(false);
    // The progress never carries key material.
    expect(run.stdout + run.stderr).not.toMatch(/PRIVATE KEY/);
  }, 120_000);

  it('cleans up every process and its temp directory on Ctrl-C', async () => {
    const demo = startDemo(['--tasks', '2'], 60_000);
    // Interrupt once the fleet is up and traffic flows: the moment with the most to clean up.
    for (let i = 0; i < 600 && !/traffic: /.test(demo.output()) && demo.child.exitCode === null; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const stateDir = stateDirOf(demo.output());
    expect(demo.output()).toMatch(/traffic: /);
    expect(stateDir, demo.output()).toBeDefined();
    demo.child.kill('SIGINT');
    const run = await demo.finished;
    expect(run.code).toBe(130);
    expect(await processesMentioning(stateDir!)).toEqual([]);
    expect(await exists(stateDir!)).toBe(false);
  }, 90_000);
});

/**
 * `npm run asl`: writes `statemachines/<name>.asl.json` from the descriptions in
 * `statemachines/src/` (`--check`: writes nothing, exits 1 naming each file that would change).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { aslText, STATE_MACHINES } from '../statemachines/src/index.ts';

const dir = new URL('../statemachines/', import.meta.url);
const check = process.argv.includes('--check');
let stale = 0;
for (const [name, machine] of Object.entries(STATE_MACHINES)) {
  const file = new URL(`${name}.asl.json`, dir);
  const text = aslText(machine);
  const committed = await readFile(file, 'utf8').catch(() => '');
  if (committed === text) continue;
  if (check) {
    console.error(
      `statemachines/${name}.asl.json differs from statemachines/src/${name}.ts: run npm run asl`,
    );
    stale++;
  } else {
    await writeFile(file, text);
    console.log(`wrote statemachines/${name}.asl.json`);
  }
}
process.exitCode = stale > 0 ? 1 : 0;

/**
 * A sync's output is pinned byte for byte (see test/pins/sync-output.ts): the
 * RiskAssessments, Provenances and Devices written for 150 demo patients with both demo models, and the
 * JSON Lines `sync --json` prints for them. Optimisations of the pull, the mapping, the models or the
 * write-back must leave every byte as it was; a change that is meant to alter results regenerates the
 * pin (`node --import tsx test/pins/sync-output.ts --write`) and shows the change in its diff.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { digest, pinnedSyncOutput, readPin, SYNC_OUTPUT_PIN } from './sync-output.js';

describe('sync output (pinned)', () => {
  it('writes and reports exactly the pinned output', async () => {
    const actual = await pinnedSyncOutput();
    const expected = readPin();
    if (actual === expected) return;
    // Keep the actual output for a diff; name the first line that differs (lines carry no patient data
    // beyond the generated demo population).
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'fhir-ml-pin-')), 'sync-output.ndjson');
    writeFileSync(file, actual);
    const a = actual.split('\n');
    const e = expected.split('\n');
    const at = a.findIndex((line, i) => line !== e[i]);
    throw new Error(
      `sync output differs from ${SYNC_OUTPUT_PIN} (sha256 ${digest(actual)} vs ${digest(expected)}, ` +
        `${a.length} vs ${e.length} lines) first at line ${at + 1}; actual output in ${file}. ` +
        `If the change is intended: node --import tsx test/pins/sync-output.ts --write`,
    );
  }, 300_000);
});

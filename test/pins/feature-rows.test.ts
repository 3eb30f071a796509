/**
 * Feature rows of the shipped mappings on the public datasets are pinned (see ./feature-rows.ts): a
 * faster mapping must give byte-identical rows, exclusions and counts. Skipped, and said so, without
 * ../shared/datasets.
 */
import { existsSync } from 'node:fs';
import { FEATURE_ROWS_PIN, PINNED_DATASETS, readRowsPin, rowsDigest, type PinnedDataset } from './feature-rows.js';

for (const dataset of Object.keys(PINNED_DATASETS) as PinnedDataset[]) {
  const dir = PINNED_DATASETS[dataset];
  const present = existsSync(dir);
  // Straight to stderr: jest hides console output of a suite whose tests are all skipped.
  if (!present) process.stderr.write(`skipping: feature-rows pin (${dataset}): ${dir} not found (FHIR_ML_SHARED_DATASETS)\n`);
  (present ? test : test.skip)(`feature rows on ${dataset} are exactly the pinned ones`, () => {
    const pinned = readRowsPin()[dataset];
    const actual = rowsDigest(dataset);
    if (actual.sha256 !== pinned.sha256) {
      throw new Error(
        `feature rows on ${dataset} differ from ${FEATURE_ROWS_PIN} (${actual.rows} rows, sha256 ${actual.sha256}; pinned ${pinned.rows}, ${pinned.sha256}). ` +
          'If the change is intended: node --import tsx test/pins/feature-rows.ts --write',
      );
    }
    expect(actual).toEqual(pinned);
  });
}

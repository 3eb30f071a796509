import { readFileSync } from 'node:fs';
import { packagePath } from '../core/paths.js';
import { AdapterError } from '../core/errors.js';

/** One row of the Efron et al. (2004) diabetes data (fixtures/diabetes/diabetes.csv). */
export interface DiabetesRow {
  age: number;
  sex: 1 | 2;
  bmi: number;
  bp: number;
  tc: number;
  ldl: number;
  hdl: number;
  tch: number;
  ltg: number;
  glu: number;
  progression: number;
}

const COLUMNS = ['age', 'sex', 'bmi', 'bp', 'tc', 'ldl', 'hdl', 'tch', 'ltg', 'glu', 'progression'] as const;

export function parseDiabetesCsv(text: string, file = 'diabetes.csv'): DiabetesRow[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const header = lines[0].split(',').map((h) => h.trim());
  if (COLUMNS.some((c, i) => header[i] !== c)) {
    throw new AdapterError('input-invalid', `${file}: header must be ${COLUMNS.join(',')}`);
  }
  return lines.slice(1).map((line, i) => {
    const cells = line.split(',').map(Number);
    if (cells.length !== COLUMNS.length || cells.some((c) => !Number.isFinite(c))) {
      throw new AdapterError('input-invalid', `${file}: line ${i + 2} does not have ${COLUMNS.length} numbers`);
    }
    const row = Object.fromEntries(COLUMNS.map((c, j) => [c, cells[j]])) as unknown as DiabetesRow;
    return row;
  });
}

export function loadDiabetesRows(file = packagePath('fixtures', 'diabetes', 'diabetes.csv')): DiabetesRow[] {
  return parseDiabetesCsv(readFileSync(file, 'utf8'), file);
}

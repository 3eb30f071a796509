import { createApp, type App } from '../app.js';
import type { ConfigOverrides } from '../config/index.js';
import { AdapterError } from '../core/errors.js';

/**
 * What every command starts from: the composition root (`src/app.ts`) built from the global
 * `--config`, the command's flags and the environment.
 */
export type CommandContext = App;

let globalConfigFile: string | undefined;
/** Set from the global `--config FILE` option before any command runs. */
export function setConfigFile(file: string | undefined): void {
  globalConfigFile = file;
}

export function commandContext(overrides: ConfigOverrides = {}): CommandContext {
  return createApp({ overrides: { configFile: globalConfigFile, ...overrides } });
}

/** FHIR ids: 1 to 64 of [A-Za-z0-9-.]. */
const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;

/**
 * Patient ids from the command line: `123` or `Patient/123`. Invalid ones are named (they are the
 * user's own input, echoed back on the terminal, never logged) and refused before any request.
 */
export function parsePatientIds(values: string[], option = '--patient'): { ids: string[]; problems: string[] } {
  const ids: string[] = [];
  const bad: string[] = [];
  for (const value of values) {
    const id = value.startsWith('Patient/') ? value.slice('Patient/'.length) : value;
    if (FHIR_ID.test(id)) ids.push(id);
    else bad.push(JSON.stringify(value));
  }
  const problems = bad.length
    ? [`${option}: not a patient id (1-64 of A-Z a-z 0-9 - ., optionally as Patient/<id>): ${bad.slice(0, 10).join(', ')}${bad.length > 10 ? ` and ${bad.length - 10} more` : ''}`]
    : [];
  return { ids, problems };
}

/** Throws one AdapterError for the problems of an invocation: `input-invalid` when any is a usage problem, else `config-invalid`. */
export function invocationError(usage: string[], config: string[]): AdapterError {
  const all = [...usage, ...config];
  const text = all.length === 1 ? all[0] : `${all.length} problems:\n  - ${all.join('\n  - ')}`;
  return new AdapterError(usage.length ? 'input-invalid' : 'config-invalid', text, { details: { problems: all } });
}

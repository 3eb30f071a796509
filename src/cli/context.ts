import { createApp, type App } from '../app.js';
import type { ConfigOverrides } from '../config/index.js';

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

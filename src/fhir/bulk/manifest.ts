import { z } from 'zod';
import { AdapterError } from '../../core/errors.js';

/**
 * The completion manifest of an export (Bulk Data IG v2): `transactionTime`, `requiresAccessToken`, and the
 * `output`, `error` (OperationOutcome NDJSON) and `deleted` (transaction Bundles of DELETEs) files. Parsed
 * into one ordered file list; a manifest that breaks the rules is refused with the paths that are wrong.
 */

export type BulkFileKind = 'output' | 'error' | 'deleted';

export interface BulkFile {
  /** Position in the manifest (output files first, then error, then deleted), from 1: the file's key. */
  seq: number;
  kind: BulkFileKind;
  /** The resource type the file holds (OperationOutcome for error files, Bundle for deleted files). */
  type: string;
  url: string;
  /** The count the server states, when it does. */
  count?: number;
}

export interface BulkManifest {
  /** The instant the export is consistent at: the `_since` of the next incremental export. */
  transactionTime: string;
  requiresAccessToken: boolean;
  files: BulkFile[];
}

const fileSchema = z.looseObject({
  type: z.string().regex(/^[A-Z][A-Za-z]{1,63}$/, 'must be a resource type name'),
  url: z.string().refine((u) => {
    try {
      const url = new URL(u);
      return url.protocol === 'https:' || url.protocol === 'http:';
    } catch {
      return false;
    }
  }, 'must be an absolute http(s) URL'),
  count: z.number().int().min(0).optional(),
});

const manifestSchema = z.looseObject({
  transactionTime: z.string().refine((t) => !Number.isNaN(Date.parse(t)) && /T/.test(t), 'must be a FHIR instant'),
  request: z.string().optional(),
  requiresAccessToken: z.boolean(),
  output: z.array(fileSchema),
  error: z.array(fileSchema).optional(),
  deleted: z.array(fileSchema).optional(),
});

export function parseManifest(body: unknown): BulkManifest {
  const parsed = manifestSchema.safeParse(body);
  if (!parsed.success) {
    // Paths and rules only: zod does not echo values.
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(manifest)'}: ${i.message}`);
    throw new AdapterError('fhir-invalid-response', `The bulk export manifest is not valid: ${problems.join('; ')}`, { details: { problems } });
  }
  const m = parsed.data;
  const files: BulkFile[] = [];
  const add = (kind: BulkFileKind, list: z.infer<typeof fileSchema>[] | undefined) => {
    for (const f of list ?? []) files.push({ seq: files.length + 1, kind, type: f.type, url: f.url, ...(f.count !== undefined ? { count: f.count } : {}) });
  };
  add('output', m.output);
  add('error', m.error);
  add('deleted', m.deleted);
  return { transactionTime: new Date(m.transactionTime).toISOString(), requiresAccessToken: m.requiresAccessToken, files };
}

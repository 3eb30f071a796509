import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { AdapterError } from '../core/errors.js';
import { expandAlternatives, newTrie, trieInsert, type TrieNode } from './trie.js';
import { normalizeToken, tokenizePhrase } from './wink.js';

/**
 * Loads, validates (zod) and compiles the NLP data files in `mappings/nlp/` once per process:
 * findings.yaml (lexicon), context-rules.yaml (ConText triggers) and sections.yaml (headings).
 * Every phrase is tokenized with the same wink tokenizer as report text, then stored in a token trie.
 */

export const ASSERTIONS = ['affirmed', 'negated', 'possible', 'historical', 'hypothetical', 'other-subject'] as const;
export type Assertion = (typeof ASSERTIONS)[number];
export type ModifierCategory = Exclude<Assertion, 'affirmed'>;
const CATEGORIES = ['negated', 'possible', 'historical', 'hypothetical', 'other-subject'] as const;

const phrase = z.string().min(1);

const findingsSchema = z.strictObject({
  version: z.literal(1),
  system: z.string().url(),
  concepts: z
    .array(
      z.strictObject({
        id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'must be a lower-case slug'),
        code: z.string().regex(/^\d{6,18}$/, 'must be a SNOMED CT concept id'),
        display: z.string().min(1),
        verified: z.boolean(),
        synonyms: z.array(phrase).min(1),
        exclude: z.array(phrase).optional(),
      }),
    )
    .min(1),
});

const triggerEntry = z.union([phrase, z.strictObject({ phrase, window: z.number().int().min(1).max(50) })]);
const directional = z.strictObject({
  forward: z.array(triggerEntry).optional(),
  backward: z.array(triggerEntry).optional(),
  bidirectional: z.array(triggerEntry).optional(),
});
const contextSchema = z.strictObject({
  version: z.literal(1),
  precedence: z
    .array(z.enum(CATEGORIES))
    .refine((p) => new Set(p).size === CATEGORIES.length, `must list each of ${CATEGORIES.join(', ')} once`),
  scopeGroups: z
    .array(z.array(z.enum(CATEGORIES)).min(1))
    .refine((g) => g.flat().length === CATEGORIES.length && new Set(g.flat()).size === CATEGORIES.length, `must put each of ${CATEGORIES.join(', ')} in exactly one group`),
  window: z.strictObject({ forward: z.number().int().min(1), backward: z.number().int().min(1) }),
  terminators: z.array(phrase),
  triggers: z.strictObject({
    negated: directional,
    possible: directional,
    historical: directional,
    hypothetical: directional,
    'other-subject': directional,
  }),
  pseudo: z.array(phrase),
});

const sectionsSchema = z.strictObject({
  version: z.literal(1),
  sections: z
    .array(
      z.strictObject({
        name: z.string().min(1),
        headings: z.array(z.coerce.string().min(1)).min(1),
        assertion: z.enum(CATEGORIES).optional(),
      }),
    )
    .min(1),
});

export interface Concept {
  id: string;
  system: string;
  code: string;
  display: string;
}

/** Value stored in the concept trie. `exclude` entries block a shorter synonym inside a longer phrase. */
export type ConceptEntry = { concept: Concept } | { exclude: true };

export type TriggerEntry =
  | { kind: 'trigger'; category: ModifierCategory; forward: number; backward: number; phrase: string }
  | { kind: 'pseudo'; phrase: string }
  | { kind: 'terminator'; phrase: string };

export interface SectionRule {
  name: string;
  assertion?: ModifierCategory;
}

export interface CompiledRules {
  concepts: Concept[];
  conceptTrie: TrieNode<ConceptEntry>;
  triggerTrie: TrieNode<TriggerEntry>;
  /** Rank per category: lower wins. */
  precedence: Record<ModifierCategory, number>;
  /** Scope group per category: a trigger of another category in the same group ends a scope. */
  scopeGroup: Record<ModifierCategory, number>;
  /** Matches one heading at a line start; group 1 = heading text. Flags gim. */
  headingPattern: RegExp;
  sectionByHeading: Map<string, SectionRule>;
  files: { findings: string; context: string; sections: string };
}

let cached: CompiledRules | undefined;

/** The compiled rules (lazy singleton). `FHIR_ML_NLP_DIR` overrides the directory. */
export function nlpRules(): CompiledRules {
  cached ??= loadNlpRules();
  return cached;
}

/** Loads and compiles the rules from `dir` (default: the repository's `mappings/nlp`). Throws `mapping-invalid`. */
export function loadNlpRules(dir: string = defaultRulesDir()): CompiledRules {
  const files = {
    findings: join(dir, 'findings.yaml'),
    context: join(dir, 'context-rules.yaml'),
    sections: join(dir, 'sections.yaml'),
  };
  const findings = readValidated(files.findings, findingsSchema);
  const context = readValidated(files.context, contextSchema);
  const sections = readValidated(files.sections, sectionsSchema);

  // Lexicon
  const conceptTrie = newTrie<ConceptEntry>();
  const concepts: Concept[] = [];
  const seenIds = new Set<string>();
  findings.concepts.forEach((c, i) => {
    if (seenIds.has(c.id)) fail(files.findings, `concepts.${i}.id`, `duplicate id ${JSON.stringify(c.id)}`);
    seenIds.add(c.id);
    const concept: Concept = { id: c.id, system: findings.system, code: c.code, display: c.display };
    concepts.push(concept);
    const owner = new Map<string, string>();
    const add = (list: string[], key: string, value: ConceptEntry) =>
      list.forEach((p, j) => {
        for (const expanded of expandOrFail(files.findings, `concepts.${i}.${key}.${j}`, p)) {
          const tokens = phraseTokens(expanded);
          if (tokens.length === 0) fail(files.findings, `concepts.${i}.${key}.${j}`, 'phrase has no tokens');
          const previous = trieInsert(conceptTrie, tokens, value);
          if (previous && 'concept' in previous && previous.concept.id !== c.id && 'concept' in value) {
            fail(files.findings, `concepts.${i}.${key}.${j}`, `"${expanded}" is already a synonym of ${previous.concept.id}`);
          }
          owner.set(tokens.join(' '), c.id);
        }
      });
    add(c.synonyms, 'synonyms', { concept });
    add(c.exclude ?? [], 'exclude', { exclude: true });
  });

  // ConText rules
  const triggerTrie = newTrie<TriggerEntry>();
  const byPhrase = new Map<string, { entry: TriggerEntry; where: string }>();
  const put = (where: string, raw: string, make: (phrase: string) => TriggerEntry) => {
    for (const expanded of expandOrFail(files.context, where, raw)) {
      const tokens = phraseTokens(expanded);
      if (tokens.length === 0) fail(files.context, where, 'phrase has no tokens');
      const key = tokens.join(' ');
      const entry = make(expanded);
      const prev = byPhrase.get(key);
      if (prev) {
        const a = prev.entry;
        // The same phrase listed forward and backward in one category becomes bidirectional.
        if (a.kind === 'trigger' && entry.kind === 'trigger' && a.category === entry.category) {
          a.forward = Math.max(a.forward, entry.forward);
          a.backward = Math.max(a.backward, entry.backward);
          continue;
        }
        if (a.kind === entry.kind && a.kind !== 'trigger') continue;
        fail(files.context, where, `"${expanded}" conflicts with the same phrase at ${prev.where}`);
      }
      byPhrase.set(key, { entry, where });
      trieInsert(triggerTrie, tokens, entry);
    }
  };
  context.terminators.forEach((p, i) => put(`terminators.${i}`, p, (phrase) => ({ kind: 'terminator', phrase })));
  context.pseudo.forEach((p, i) => put(`pseudo.${i}`, p, (phrase) => ({ kind: 'pseudo', phrase })));
  for (const category of CATEGORIES) {
    const d = context.triggers[category];
    for (const direction of ['forward', 'backward', 'bidirectional'] as const) {
      (d[direction] ?? []).forEach((t, i) => {
        const text = typeof t === 'string' ? t : t.phrase;
        const fw = typeof t === 'string' ? context.window.forward : t.window;
        const bw = typeof t === 'string' ? context.window.backward : t.window;
        put(`triggers.${category}.${direction}.${i}`, text, (phrase) => ({
          kind: 'trigger',
          category,
          phrase,
          forward: direction === 'backward' ? 0 : fw,
          backward: direction === 'forward' ? 0 : bw,
        }));
      });
    }
  }
  const precedence = Object.fromEntries(context.precedence.map((c, i) => [c, i])) as Record<ModifierCategory, number>;
  const scopeGroup = Object.fromEntries(context.scopeGroups.flatMap((g, i) => g.map((c) => [c, i]))) as Record<ModifierCategory, number>;

  // Sections
  const sectionByHeading = new Map<string, SectionRule>();
  const headings: string[] = [];
  sections.sections.forEach((s, i) =>
    s.headings.forEach((h, j) => {
      const key = headingKey(h);
      if (sectionByHeading.has(key)) fail(files.sections, `sections.${i}.headings.${j}`, `duplicate heading ${JSON.stringify(h)}`);
      sectionByHeading.set(key, { name: s.name, assertion: s.assertion });
      headings.push(h);
    }),
  );
  headings.sort((a, b) => b.length - a.length);
  const alternation = headings.map((h) => h.trim().split(/\s+/).map(escapeRegExp).join('[ \\t]+')).join('|');
  // Line start, optional list number / bullet, heading, then ':' or ' -' or end of line.
  const headingPattern = new RegExp(`^[ \\t]*(?:[-*\\u2022][ \\t]*)?(${alternation})[ \\t]*(?::|[ \\t]-[ \\t]|$)`, 'gim');

  return { concepts, conceptTrie, triggerTrie, precedence, scopeGroup, headingPattern, sectionByHeading, files };
}

export function headingKey(h: string): string {
  return h.trim().toLowerCase().replace(/\s+/g, ' ');
}

function phraseTokens(p: string): string[] {
  return tokenizePhrase(p).map(normalizeToken);
}

function expandOrFail(file: string, where: string, p: string): string[] {
  try {
    return expandAlternatives(p);
  } catch (err) {
    fail(file, where, (err as Error).message);
  }
}

function readValidated<S extends z.ZodType>(file: string, schema: S): z.infer<S> {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new AdapterError('mapping-invalid', `${file}: cannot read or parse YAML: ${(err as Error).message}`, { cause: err });
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    fail(file, issue.path.join('.') || '(root)', issue.message);
  }
  return result.data;
}

function fail(file: string, path: string, message: string): never {
  throw new AdapterError('mapping-invalid', `${file}: ${path}: ${message}`, { details: { file, path } });
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

function defaultRulesDir(): string {
  if (process.env.FHIR_ML_NLP_DIR) return resolve(process.env.FHIR_ML_NLP_DIR);
  // Walk up from this module (src/nlp or dist/src/nlp) to the directory holding mappings/nlp.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'mappings', 'nlp');
    if (existsSync(join(candidate, 'findings.yaml'))) return candidate;
    dir = dirname(dir);
  }
  return resolve('mappings', 'nlp');
}

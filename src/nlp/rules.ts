import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { AdapterError } from '../core/errors.js';
import { expandAlternatives, newTrie, trieInsert, type TrieNode } from './trie.js';
import { TOKEN_CLASSES, tokenizePhrase } from './tokens.js';

/**
 * Loads, validates (zod) and compiles the NLP data files in `mappings/nlp/`: findings.yaml (lexicon),
 * context-rules.yaml (ConText triggers, terminators, pseudo-triggers, list and clause words) and
 * sections.yaml (headings). Every phrase is tokenized exactly as report text is, then stored in a
 * token trie. Validation errors name the file and the path of the entry (`mapping-invalid`).
 */

/**
 * ConText's three properties of a mention, each with its own values (Harkema et al. 2009):
 * negation (certainty), temporality, experiencer. The first value of each is the default.
 */
export const DIMENSIONS = {
  negation: ['affirmed', 'negated', 'possible'],
  temporality: ['recent', 'historical', 'hypothetical'],
  experiencer: ['patient', 'other'],
} as const;
export type Dimension = keyof typeof DIMENSIONS;
export type Negation = (typeof DIMENSIONS.negation)[number];
export type Temporality = (typeof DIMENSIONS.temporality)[number];
export type Experiencer = (typeof DIMENSIONS.experiencer)[number];
export const DIMENSION_NAMES = Object.keys(DIMENSIONS) as Dimension[];

/** The single summary value kept for compatibility (see `summaryAssertion`). */
export const ASSERTIONS = ['affirmed', 'negated', 'possible', 'historical', 'hypothetical', 'other-subject'] as const;
export type Assertion = (typeof ASSERTIONS)[number];
/** Trigger categories: each sets one non-default value of one dimension. */
export type ModifierCategory = Exclude<Assertion, 'affirmed'>;
const CATEGORIES = ['negated', 'possible', 'historical', 'hypothetical', 'other-subject'] as const;
export const CATEGORY_EFFECT: Record<ModifierCategory, { dimension: Dimension; value: string }> = {
  negated: { dimension: 'negation', value: 'negated' },
  possible: { dimension: 'negation', value: 'possible' },
  historical: { dimension: 'temporality', value: 'historical' },
  hypothetical: { dimension: 'temporality', value: 'hypothetical' },
  'other-subject': { dimension: 'experiencer', value: 'other' },
};

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

const triggerEntry = z.union([
  phrase,
  z.strictObject({
    phrase,
    /** Tokens a scope may run past the trigger (or past the last list joiner); default `window`. */
    window: z.number().int().min(1).max(60).optional(),
    /** false: the scope ends at the window even inside a coordinated list. Default true. */
    lists: z.boolean().optional(),
    /** Categories of other dimensions the trigger also sets ("rule out": hypothetical and possible). */
    also: z.array(z.enum(['negated', 'possible', 'historical', 'hypothetical', 'other-subject'])).min(1).optional(),
  }),
]);
const directional = z.strictObject({
  forward: z.array(triggerEntry).optional(),
  backward: z.array(triggerEntry).optional(),
  bidirectional: z.array(triggerEntry).optional(),
});
const dimensionList = z.array(z.enum(['negation', 'temporality', 'experiencer'])).min(1);
const terminatorEntry = z.union([
  phrase,
  z.strictObject({
    phrase,
    dimensions: dimensionList,
    /** Also sets its dimensions back to the default for what follows, over a section default ("patient herself" under FAMILY HISTORY). */
    resets: z.boolean().optional(),
  }),
]);
const contextSchema = z.strictObject({
  version: z.literal(2),
  precedence: z.strictObject({
    negation: z.array(z.enum(['negated', 'possible'])).length(2).refine((p) => new Set(p).size === 2, 'must list negated and possible once each'),
    temporality: z.array(z.enum(['historical', 'hypothetical'])).length(2).refine((p) => new Set(p).size === 2, 'must list historical and hypothetical once each'),
  }),
  assertion: z
    .array(z.enum(CATEGORIES))
    .refine((p) => new Set(p).size === CATEGORIES.length && p.length === CATEGORIES.length, `must list each of ${CATEGORIES.join(', ')} once`),
  window: z.strictObject({ forward: z.number().int().min(1), backward: z.number().int().min(1) }),
  listJoiners: z.array(phrase).min(1),
  clauseBreaks: z.array(z.strictObject({ categories: z.array(z.enum(CATEGORIES)).min(1), phrases: z.array(phrase).min(1) })),
  terminators: z.array(terminatorEntry),
  triggers: z.strictObject({
    negated: directional,
    possible: directional,
    historical: directional,
    hypothetical: directional,
    'other-subject': directional,
  }),
  pseudo: z.array(phrase),
  slotAnswers: z.strictObject({
    affirmed: z.array(phrase),
    negated: z.array(phrase),
    possible: z.array(phrase),
  }),
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
  | {
      kind: 'trigger';
      category: ModifierCategory;
      dimension: Dimension;
      /** Window forward / backward in tokens (0: not in that direction). */
      forward: number;
      backward: number;
      /** Whether a coordinated list extends the scope past the window, forward / backward. */
      listsForward: boolean;
      listsBackward: boolean;
      phrase: string;
      /** The same trigger's effect on other dimensions, if any (same windows). */
      also?: Extract<TriggerEntry, { kind: 'trigger' }>[];
    }
  | { kind: 'pseudo'; phrase: string }
  | { kind: 'terminator'; phrase: string; dimensions: ReadonlySet<Dimension>; resets: boolean }
  | { kind: 'joiner'; phrase: string }
  | { kind: 'clause'; phrase: string; categories: ReadonlySet<ModifierCategory> };

export interface SectionRule {
  name: string;
  assertion?: ModifierCategory;
}

export interface CompiledRules {
  concepts: Concept[];
  conceptTrie: TrieNode<ConceptEntry>;
  triggerTrie: TrieNode<TriggerEntry>;
  /** Slot answers ("COMPLICATIONS: none"): the value a bare answer gives the header's own words. */
  answerTrie: TrieNode<Negation>;
  /** Rank per category inside its dimension: lower wins. */
  precedence: Record<ModifierCategory, number>;
  /** Categories in the order that derives the summary assertion (first non-default wins). */
  assertionOrder: ModifierCategory[];
  sectionByHeading: Map<string, SectionRule>;
  /** Longest heading in tokens. */
  maxHeadingTokens: number;
  files: { findings: string; context: string; sections: string };
}

let cached: CompiledRules | undefined;

/** The repository's compiled rules, loaded once per process. */
export function nlpRules(): CompiledRules {
  cached ??= loadNlpRules();
  return cached;
}

/** Loads and compiles the rules from `dir` (default: the package's `mappings/nlp`). Throws `mapping-invalid`. */
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
    const add = (list: string[], key: string, value: ConceptEntry) =>
      list.forEach((p, j) => {
        for (const expanded of expandOrFail(files.findings, `concepts.${i}.${key}.${j}`, p)) {
          const tokens = phraseTokens(files.findings, `concepts.${i}.${key}.${j}`, expanded);
          const previous = trieInsert(conceptTrie, tokens, value);
          if (previous && 'concept' in previous && previous.concept.id !== c.id && 'concept' in value) {
            fail(files.findings, `concepts.${i}.${key}.${j}`, `"${expanded}" is already a synonym of ${previous.concept.id}`);
          }
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
      const tokens = phraseTokens(files.context, where, expanded);
      const key = tokens.join(' ');
      const entry = make(expanded);
      const prev = byPhrase.get(key);
      if (prev) {
        const a = prev.entry;
        // The same phrase listed forward and backward in one category becomes bidirectional.
        if (a.kind === 'trigger' && entry.kind === 'trigger' && a.category === entry.category) {
          for (const x of [a, ...(a.also ?? [])]) {
            if (entry.forward > 0) {
              x.forward = Math.max(x.forward, entry.forward);
              x.listsForward = entry.listsForward;
            }
            if (entry.backward > 0) {
              x.backward = Math.max(x.backward, entry.backward);
              x.listsBackward = entry.listsBackward;
            }
          }
          continue;
        }
        if (a.kind === entry.kind && a.kind !== 'trigger') continue;
        fail(files.context, where, `"${expanded}" conflicts with the same phrase at ${prev.where}`);
      }
      byPhrase.set(key, { entry, where });
      trieInsert(triggerTrie, tokens, entry);
    }
  };
  const ALL_DIMENSIONS: ReadonlySet<Dimension> = new Set(DIMENSION_NAMES);
  context.terminators.forEach((t, i) => {
    const text = typeof t === 'string' ? t : t.phrase;
    const dims = typeof t === 'string' ? ALL_DIMENSIONS : new Set(t.dimensions);
    const resets = typeof t !== 'string' && t.resets === true;
    put(`terminators.${i}`, text, (phrase) => ({ kind: 'terminator', phrase, dimensions: dims, resets }));
  });
  context.pseudo.forEach((p, i) => put(`pseudo.${i}`, p, (phrase) => ({ kind: 'pseudo', phrase })));
  context.listJoiners.forEach((p, i) => put(`listJoiners.${i}`, p, (phrase) => ({ kind: 'joiner', phrase })));
  context.clauseBreaks.forEach((group, g) => {
    const categories = new Set(group.categories);
    group.phrases.forEach((p, i) => put(`clauseBreaks.${g}.phrases.${i}`, p, (phrase) => ({ kind: 'clause', phrase, categories })));
  });
  for (const category of CATEGORIES) {
    const d = context.triggers[category];
    for (const direction of ['forward', 'backward', 'bidirectional'] as const) {
      (d[direction] ?? []).forEach((t, i) => {
        const text = typeof t === 'string' ? t : t.phrase;
        const fw = (typeof t === 'string' ? undefined : t.window) ?? context.window.forward;
        const bw = (typeof t === 'string' ? undefined : t.window) ?? context.window.backward;
        const lists = typeof t === 'string' ? true : t.lists !== false;
        const also = typeof t === 'string' ? [] : (t.also ?? []);
        const where = `triggers.${category}.${direction}.${i}`;
        for (const other of also) {
          if (CATEGORY_EFFECT[other].dimension === CATEGORY_EFFECT[category].dimension) fail(files.context, `${where}.also`, `${other} is in the same dimension as ${category}`);
        }
        const make = (c: ModifierCategory, phrase: string): Extract<TriggerEntry, { kind: 'trigger' }> => ({
          kind: 'trigger',
          category: c,
          dimension: CATEGORY_EFFECT[c].dimension,
          phrase,
          listsForward: direction === 'backward' ? false : lists,
          listsBackward: direction === 'forward' ? false : lists,
          forward: direction === 'backward' ? 0 : fw,
          backward: direction === 'forward' ? 0 : bw,
        });
        put(where, text, (phrase) => ({ ...make(category, phrase), ...(also.length ? { also: also.map((c) => make(c, phrase)) } : {}) }));
      });
    }
  }
  const answerTrie = newTrie<Negation>();
  for (const value of ['affirmed', 'negated', 'possible'] as const) {
    context.slotAnswers[value].forEach((p, i) => {
      for (const expanded of expandOrFail(files.context, `slotAnswers.${value}.${i}`, p)) {
        trieInsert(answerTrie, phraseTokens(files.context, `slotAnswers.${value}.${i}`, expanded), value);
      }
    });
  }
  const precedence = {
    ...Object.fromEntries(context.precedence.negation.map((c, i) => [c, i])),
    ...Object.fromEntries(context.precedence.temporality.map((c, i) => [c, i])),
    'other-subject': 0,
  } as Record<ModifierCategory, number>;

  // Sections
  const sectionByHeading = new Map<string, SectionRule>();
  let maxHeadingTokens = 1;
  sections.sections.forEach((s, i) =>
    s.headings.forEach((h, j) => {
      const where = `sections.${i}.headings.${j}`;
      const key = headingKey(phraseTokens(files.sections, where, h));
      if (sectionByHeading.has(key)) fail(files.sections, where, `duplicate heading ${JSON.stringify(h)}`);
      sectionByHeading.set(key, { name: s.name, assertion: s.assertion });
      maxHeadingTokens = Math.max(maxHeadingTokens, key.split(' ').length);
    }),
  );

  return {
    concepts,
    conceptTrie,
    triggerTrie,
    answerTrie,
    precedence,
    assertionOrder: context.assertion,
    sectionByHeading,
    maxHeadingTokens,
    files,
  };
}

/** Lookup key of a heading from its normalized tokens. */
export function headingKey(tokens: readonly string[]): string {
  return tokens.join(' ');
}

/**
 * A phrase's normalized tokens. `<year>`, `<date>`, `<number>` and `<deid>` stand for a token of that
 * class (see tokens.ts), so "in <year>" matches "in 2015".
 */
function phraseTokens(file: string, where: string, p: string): string[] {
  const out: string[] = [];
  for (const part of p.split(/(<[a-z]+>)/)) {
    if (/^<[a-z]+>$/.test(part)) {
      if (!(TOKEN_CLASSES as readonly string[]).includes(part)) fail(file, where, `unknown token class ${part} (known: ${TOKEN_CLASSES.join(', ')})`);
      out.push(part);
    } else out.push(...tokenizePhrase(part));
  }
  if (out.length === 0) fail(file, where, 'phrase has no tokens');
  return out;
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

/** The package's `mappings/nlp` (walking up from src/nlp or dist/nlp); a caller may pass another. */
export function defaultRulesDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'mappings', 'nlp');
    if (existsSync(join(candidate, 'findings.yaml'))) return candidate;
    dir = dirname(dir);
  }
  return resolve('mappings', 'nlp');
}

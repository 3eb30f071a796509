/** A token trie: phrases are sequences of normalized tokens; lookups return the longest match. */
export interface TrieNode<T> {
  next: Map<string, TrieNode<T>>;
  value?: T;
}

export function newTrie<T>(): TrieNode<T> {
  return { next: new Map() };
}

/** Inserts a phrase; returns the value already stored for exactly this phrase, if any (caller decides). */
export function trieInsert<T>(root: TrieNode<T>, tokens: readonly string[], value: T): T | undefined {
  let node = root;
  for (const t of tokens) {
    let child = node.next.get(t);
    if (!child) {
      child = { next: new Map() };
      node.next.set(t, child);
    }
    node = child;
  }
  const previous = node.value;
  node.value = value;
  return previous;
}

/** Longest phrase starting at `start` and ending before `limit`: [end (exclusive), value] or undefined. */
export function trieLongest<T>(root: TrieNode<T>, tokens: readonly string[], start: number, limit: number): [number, T] | undefined {
  let node: TrieNode<T> | undefined = root;
  let best: [number, T] | undefined;
  for (let i = start; i < limit; i++) {
    node = node.next.get(tokens[i]);
    if (!node) break;
    if (node.value !== undefined) best = [i + 1, node.value];
  }
  return best;
}

/** Expands `{a|b}` alternations (empty alternative allowed: `{the|}`) into every combination. */
export function expandAlternatives(phrase: string): string[] {
  return [...new Set(expand(phrase).map((p) => p.replace(/\s+/g, ' ').trim()))].filter((p) => p.length > 0);
}

function expand(phrase: string): string[] {
  const open = phrase.indexOf('{');
  if (open < 0) return [phrase];
  const close = phrase.indexOf('}', open);
  if (close < 0) throw new Error(`unbalanced "{" in ${JSON.stringify(phrase)}`);
  if (phrase.lastIndexOf('{', close) !== open) throw new Error(`nested "{" in ${JSON.stringify(phrase)}: write the alternatives as separate phrases`);
  const head = phrase.slice(0, open);
  const rests = expand(phrase.slice(close + 1));
  const out: string[] = [];
  for (const alt of phrase.slice(open + 1, close).split('|')) for (const rest of rests) out.push(head + alt + rest);
  return out;
}

/**
 * Longest phrase starting at `start`, where a phrase token may also be a token class (`<year>`)
 * matching `classes[i]`. Exact tokens and classes are both tried (depth-first; phrases are short).
 * Tokens flagged in `skip` end a match. Module-level functions only: this runs for every token.
 */
export function trieLongestClassed<T>(
  root: TrieNode<T>,
  tokens: readonly string[],
  classes: readonly (string | undefined)[],
  start: number,
  limit: number,
  skip?: Uint8Array,
): [number, T] | undefined {
  const best: Best<T> = { end: -1, value: undefined };
  walkClassed(root, tokens, classes, start, limit, skip, best);
  return best.end > start ? [best.end, best.value as T] : undefined;
}

interface Best<T> {
  end: number;
  value: T | undefined;
}

function walkClassed<T>(
  node: TrieNode<T>,
  tokens: readonly string[],
  classes: readonly (string | undefined)[],
  i: number,
  limit: number,
  skip: Uint8Array | undefined,
  best: Best<T>,
): void {
  for (;;) {
    if (node.value !== undefined && i > best.end) {
      best.end = i;
      best.value = node.value;
    }
    if (i >= limit || (skip !== undefined && skip[i] === 1)) return;
    const c = classes[i];
    if (c !== undefined) {
      const byClass = node.next.get(c);
      if (byClass) walkClassed(byClass, tokens, classes, i + 1, limit, skip, best);
    }
    const child = node.next.get(tokens[i]);
    if (!child) return;
    node = child;
    i++;
  }
}

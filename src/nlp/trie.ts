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
  const head = phrase.slice(0, open);
  const rests = expand(phrase.slice(close + 1));
  const out: string[] = [];
  for (const alt of phrase.slice(open + 1, close).split('|')) for (const rest of rests) out.push(head + alt + rest);
  return out;
}

/**
 * Longest phrase starting at `start`, where a phrase token may also be a token class (`<year>`)
 * matching `classes[i]`. Exact tokens and classes are both tried (depth-first; phrases are short).
 */
export function trieLongestClassed<T>(
  root: TrieNode<T>,
  tokens: readonly string[],
  classes: readonly (string | undefined)[],
  start: number,
  limit: number,
  skip?: Uint8Array,
): [number, T] | undefined {
  let bestEnd = -1;
  let bestValue: T | undefined;
  const walk = (node: TrieNode<T>, i: number) => {
    if (node.value !== undefined && i > bestEnd) {
      bestEnd = i;
      bestValue = node.value;
    }
    if (i >= limit || (skip && skip[i])) return;
    const child = node.next.get(tokens[i]);
    if (child) walk(child, i + 1);
    const c = classes[i];
    if (c !== undefined) {
      const byClass = node.next.get(c);
      if (byClass) walk(byClass, i + 1);
    }
  };
  if (skip && skip[start]) return undefined;
  const first = root.next.get(tokens[start]);
  if (first) walk(first, start + 1);
  const c0 = classes[start];
  if (c0 !== undefined) {
    const byClass = root.next.get(c0);
    if (byClass) walk(byClass, start + 1);
  }
  return bestEnd > start ? [bestEnd, bestValue as T] : undefined;
}

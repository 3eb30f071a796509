import winkNLP from 'wink-nlp';
import model from 'wink-eng-lite-web-model';

/**
 * One wink-nlp instance per process, with only sentence boundary detection in the pipe: POS tagging,
 * NER and sentiment are not used and would roughly double the cost of `readDoc`. Negation is ours
 * (ConText rules), not wink's per-token flag.
 */
type Wink = ReturnType<typeof winkNLP>;
let instance: Wink | undefined;

export function wink(): Wink {
  instance ??= winkNLP(model, ['sbd']);
  return instance;
}

/** A whitespace token (wink keeps runs of spaces and line breaks as tokens). */
export function isSpace(token: string): boolean {
  const c = token.charCodeAt(0);
  if (!(c === 32 || c === 10 || c === 13 || c === 9 || c === 12 || c === 11 || c === 160 || c > 0x2000)) return false;
  return token.trim().length === 0;
}

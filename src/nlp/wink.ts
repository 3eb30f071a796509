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

/** Token values of a phrase, tokenized exactly as report text is (used for lexicon and rule phrases). */
export function tokenizePhrase(phrase: string): string[] {
  const nlp = wink();
  return (nlp.readDoc(phrase).tokens().out(nlp.its.value) as string[]).filter((t) => !isSpace(t));
}

export function isSpace(token: string): boolean {
  return token.length > 0 && token.trim().length === 0;
}

/**
 * Normal form used for matching: lower case, typographic apostrophes folded, and a trailing period
 * dropped ("b." at the end of a text is one wink token), so "Pneumonia", "PNEUMONIA" and "pneumonia."
 * all match "pneumonia".
 */
export function normalizeToken(token: string): string {
  let t = token.toLowerCase();
  if (t.length > 1 && t.charCodeAt(t.length - 1) === 46 /* . */ && t.charCodeAt(0) !== 46) t = t.slice(0, -1);
  if (t.includes('\u2019')) t = t.replace(/\u2019/g, "'");
  return t;
}

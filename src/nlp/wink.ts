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

export function isSpace(token: string): boolean {
  return token.length > 0 && token.trim().length === 0;
}

/**
 * NDJSON as it streams in: bytes are split into lines as they arrive (UTF-8, a leading BOM and CRLF
 * accepted, blank lines skipped), so a file of any size holds memory for one line and a chunk. Each
 * line is parsed and checked; a bad line is reported by its number with what is wrong, never with its
 * content (it is patient data).
 */

const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;

/**
 * Calls `onLine` for every non-blank line, numbered from 1 as in the file. When `onLine` returns a
 * promise (a chunk to write), reading waits for it: the writer's pace bounds memory.
 */
export async function readLines(
  body: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>,
  onLine: (text: string, line: number) => void | Promise<void>,
): Promise<number> {
  const decoder = new TextDecoder('utf-8');
  let pending = '';
  let line = 0;
  const emit = async (raw: string) => {
    line += 1;
    let text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    if (text.trim() === '') return;
    const r = onLine(text, line);
    if (r) await r;
  };
  for await (const chunk of body as AsyncIterable<Uint8Array>) {
    const text = pending + decoder.decode(chunk, { stream: true });
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl < 0) break;
      await emit(text.slice(start, nl));
      start = nl + 1;
    }
    pending = text.slice(start);
  }
  pending += decoder.decode();
  if (pending !== '') await emit(pending);
  return line;
}

export interface CheckedResource {
  resourceType: string;
  id: string;
  resource: Record<string, unknown>;
}

/** Parses one line and checks it is a resource of `expectedType` with a valid id; otherwise says why. */
export function checkResourceLine(text: string, expectedType: string | undefined): CheckedResource | { problem: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { problem: 'not valid JSON' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { problem: 'not a JSON object' };
  const resource = value as Record<string, unknown>;
  const type = resource.resourceType;
  if (typeof type !== 'string' || !/^[A-Z][A-Za-z]{1,63}$/.test(type)) return { problem: 'no resourceType' };
  if (expectedType && type !== expectedType) return { problem: `a ${type} in a file of ${expectedType}` };
  const id = resource.id;
  if (typeof id !== 'string') return { problem: `${type} without an id` };
  if (!FHIR_ID.test(id)) return { problem: `${type} with an id that is not a valid FHIR id` };
  return { resourceType: type, id, resource };
}

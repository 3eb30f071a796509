/**
 * Every part of `npm run bench`, in the order they run. A new part is a file in this folder exporting a
 * BenchPart (see ../part.ts) and one line here.
 */
import type { BenchPart } from '../part.js';
import { nlpPart } from './nlp.js';
import { bulkPart, incrementalPart, jobsPart } from './service.js';
import { syncPart } from './sync.js';

export const PARTS: readonly BenchPart[] = [nlpPart, syncPart, incrementalPart, jobsPart, bulkPart];

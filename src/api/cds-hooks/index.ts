/**
 * CDS Hooks 2.0 (https://cds-hooks.hl7.org/2.0/): discovery, a `patient-view` service per model, feedback
 * (router.ts); the EHR's JWT (client-auth.ts); prefetch templates and the record from prefetch or the
 * request's FHIR server (prefetch.ts); cards (cards.ts); the spec's formats as zod schemas (schema.ts).
 */
export { mountCdsHooks, type CdsHooksDeps } from './router.js';
export { createCdsClientVerifier, type CdsClientVerifier, type VerifiedCdsClient } from './client-auth.js';
export { prefetchQueries, prefetchTemplates, gatherRecord, PreconditionFailed, type PrefetchQuery } from './prefetch.js';
export { riskCard, OVERRIDE_REASON_SYSTEM, MODEL_TOPIC_SYSTEM, type CardFacts } from './cards.js';
export { cardSchema, discoveryResponseSchema, feedbackSchema, hookRequestSchema, hookResponseSchema, type Card, type HookRequest, type HookResponse } from './schema.js';

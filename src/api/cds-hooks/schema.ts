import { z } from 'zod';

/**
 * The CDS Hooks 2.0 data formats as zod schemas, written from the specification
 * (https://cds-hooks.hl7.org/2.0/): discovery, the service request (with `fhirAuthorization`), the response
 * and its cards (source, suggestions, actions, links, override reasons), and feedback. Outgoing cards are
 * checked against these before they are sent; tests check responses against them. The spec forbids null
 * and empty values for optional fields: empty strings and arrays are refused.
 */

const nonEmpty = z.string().min(1);
const url = z.url({ protocol: /^https?$/ });

/** CDS Hooks Coding: code and system required; display required for override reasons. */
export const cdsCodingSchema = z.strictObject({ code: nonEmpty, system: nonEmpty, display: nonEmpty.optional() });

export const discoveryServiceSchema = z.strictObject({
  hook: nonEmpty,
  title: nonEmpty.optional(),
  description: nonEmpty,
  id: z.string().regex(/^[A-Za-z0-9._~-]+$/, 'a URL path segment'),
  prefetch: z.record(nonEmpty, nonEmpty).refine((p) => Object.keys(p).length > 0, 'prefetch must not be empty when present').optional(),
  usageRequirements: nonEmpty.optional(),
});
export const discoveryResponseSchema = z.strictObject({ services: z.array(discoveryServiceSchema) });

export const fhirAuthorizationSchema = z.looseObject({
  access_token: nonEmpty,
  token_type: z.literal('Bearer'),
  expires_in: z.number().int().nonnegative(),
  scope: nonEmpty,
  subject: nonEmpty,
  patient: nonEmpty.optional(),
});

export const hookRequestSchema = z
  .looseObject({
    hook: nonEmpty,
    hookInstance: nonEmpty,
    fhirServer: url.optional(),
    fhirAuthorization: fhirAuthorizationSchema.optional(),
    context: z.looseObject({
      userId: nonEmpty.optional(),
      patientId: z.string().regex(/^[A-Za-z0-9\-.]{1,64}$/, 'must be a FHIR id'),
      encounterId: nonEmpty.optional(),
    }),
    /** Per prefetch key: a resource, a Bundle, an OperationOutcome (the client could not fetch it), or null (nothing to give). */
    prefetch: z.record(z.string(), z.union([z.looseObject({ resourceType: nonEmpty }), z.null()])).optional(),
  })
  .refine((r) => !r.fhirAuthorization || !!r.fhirServer, { message: 'fhirServer is required with fhirAuthorization', path: ['fhirServer'] });
export type HookRequest = z.infer<typeof hookRequestSchema>;

export const actionSchema = z
  .strictObject({
    type: z.enum(['create', 'update', 'delete']),
    description: nonEmpty,
    resource: z.looseObject({ resourceType: nonEmpty }).optional(),
    resourceId: nonEmpty.optional(),
  })
  .refine((a) => a.type === 'delete' || !!a.resource, { message: 'create and update actions carry a resource', path: ['resource'] });

export const suggestionSchema = z.strictObject({
  label: nonEmpty,
  uuid: z.uuid().optional(),
  isRecommended: z.boolean().optional(),
  actions: z.array(actionSchema).min(1).optional(),
});

export const linkSchema = z
  .strictObject({
    label: nonEmpty,
    url,
    type: z.enum(['absolute', 'smart']),
    appContext: nonEmpty.optional(),
  })
  .refine((l) => l.type === 'smart' || l.appContext === undefined, { message: 'appContext is for smart links only', path: ['appContext'] });

export const sourceSchema = z.strictObject({
  label: nonEmpty,
  url: url.optional(),
  icon: url.optional(),
  topic: cdsCodingSchema.optional(),
});

export const cardSchema = z
  .strictObject({
    uuid: z.uuid().optional(),
    summary: nonEmpty.max(139, 'summary must be under 140 characters'),
    detail: nonEmpty.optional(),
    indicator: z.enum(['info', 'warning', 'critical']),
    source: sourceSchema,
    suggestions: z.array(suggestionSchema).min(1).optional(),
    selectionBehavior: z.enum(['at-most-one', 'any']).optional(),
    overrideReasons: z.array(cdsCodingSchema.required({ display: true })).min(1).optional(),
    links: z.array(linkSchema).min(1).optional(),
  })
  .refine((c) => !c.suggestions || !!c.selectionBehavior, { message: 'selectionBehavior is required with suggestions', path: ['selectionBehavior'] })
  .refine((c) => c.selectionBehavior !== 'at-most-one' || (c.suggestions?.filter((s) => s.isRecommended).length ?? 0) <= 1, {
    message: 'at most one suggestion may be recommended with at-most-one',
    path: ['suggestions'],
  });
export type Card = z.infer<typeof cardSchema>;

export const hookResponseSchema = z.strictObject({
  cards: z.array(cardSchema),
  systemActions: z.array(actionSchema).min(1).optional(),
});
export type HookResponse = z.infer<typeof hookResponseSchema>;

export const feedbackSchema = z.strictObject({
  feedback: z
    .array(
      z
        .strictObject({
          card: nonEmpty,
          outcome: z.enum(['accepted', 'overridden']),
          acceptedSuggestions: z.array(z.strictObject({ id: nonEmpty })).min(1).optional(),
          overrideReason: z.strictObject({ reason: cdsCodingSchema.optional(), userComment: z.string().optional() }).optional(),
          outcomeTimestamp: z.iso.datetime({ offset: true }),
        })
        .refine((f) => f.outcome !== 'accepted' || !!f.acceptedSuggestions, { message: 'accepted feedback names the accepted suggestions', path: ['acceptedSuggestions'] }),
    )
    .min(1),
});
export type Feedback = z.infer<typeof feedbackSchema>;

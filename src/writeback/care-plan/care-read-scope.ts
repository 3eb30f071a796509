import { lookbackStart } from '../../core/time.js';
import { applicableActivities } from './apply.js';
import type { AssessmentContext } from './context.js';
import type { CarePlanDefinitions } from './definitions.js';
import { satisfiedWithin } from './existing.js';

/**
 * What must be read of the patients' existing care before their proposals are planned, decided from
 * what would be proposed with no existing care at all: the codes of every applicable activity (a
 * request, procedure or result with one of them may make the activity redundant) and how far back
 * results count (the earliest start of the activities' "satisfied within" windows). The sync's CarePlan
 * step and the CDS Hooks suggestions read with it, so both omit on the same evidence.
 */

export interface CareReadAssessment {
  definitions: CarePlanDefinitions;
  context: AssessmentContext;
}

export interface CareReadScope {
  /** Per assessment (same order): whether any activity of its PlanDefinitions applies. */
  withActivities: boolean[];
  /** The applicable activities' codes, each `system|code` once, in the order first met. */
  codes: { system: string; code: string }[];
  /** Results are read from here to as-of; absent when no applicable activity has a window. */
  resultsSince?: Date;
}

export function careReadScope(assessments: readonly CareReadAssessment[], asOf: Date): CareReadScope {
  const codes = new Map<string, { system: string; code: string }>();
  let resultsSince: Date | undefined;
  const withActivities = assessments.map(({ definitions, context }) => {
    let any = false;
    for (const pd of definitions.planDefinitions) {
      for (const ad of applicableActivities(pd, definitions.activityDefinitions, context)) {
        any = true;
        for (const { system, code } of ad.code?.coding ?? []) if (system && code) codes.set(`${system}|${code}`, { system, code });
        const within = satisfiedWithin(ad);
        const since = within ? lookbackStart(within, asOf) : undefined;
        if (since && (!resultsSince || since < resultsSince)) resultsSince = since;
      }
    }
    return any;
  });
  return { withActivities, codes: [...codes.values()], ...(resultsSince ? { resultsSince } : {}) };
}

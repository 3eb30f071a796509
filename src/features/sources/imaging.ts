import type { ImagingStudy, ImagingStudySeries } from 'fhir/r4.js';
import { z } from 'zod';
import { lookbackStart } from '../../core/time.js';
import { codeKey } from '../exclusions.js';
import { coding } from '../mapping/fields.js';
import { beforeWindow, defineSource } from './plugin.js';

/**
 * `imaging`: measures over matching ImagingStudies (modality on series or study, body site on series)
 * in the window: count, days since the latest (missing when none), total matching series, their
 * instances. Basis: every matching study, except days-since-last (the latest only; others superseded).
 */

/** ImagingStudy statuses counted. */
export const IMAGING_STATUSES: ReadonlySet<string> = new Set(['available']);

const schema = z.strictObject({
  kind: z.literal('imaging'),
  measure: z.enum(['count', 'days-since-last', 'series', 'instances']),
  modalities: z.array(z.string()).optional(), // DICOM modality codes: CT, CR, DX, MR ...
  bodySites: z.array(coding).optional(),
});
type ImagingSource = z.output<typeof schema>;

function seriesMatches(s: ImagingSource, series: ImagingStudySeries): boolean {
  const modOk = !s.modalities?.length || s.modalities.includes(series.modality?.code ?? '');
  const siteOk = !s.bodySites?.length || s.bodySites.some((b) => codeKey(b) === codeKey(series.bodySite ?? {}));
  return modOk && siteOk;
}

/** Matching series count and instance count of a study, or undefined when the study does not match. */
function studyMatch(s: ImagingSource, st: ImagingStudy): { series: number; instances: number } | undefined {
  const series = st.series ?? [];
  if (series.length) {
    const m = series.filter((x) => seriesMatches(s, x));
    if (!m.length) return undefined;
    return { series: m.length, instances: m.reduce((n, x) => n + (x.numberOfInstances ?? x.instance?.length ?? 0), 0) };
  }
  // no series detail: study-level modality only; a body-site filter cannot be checked
  if (s.bodySites?.length) return undefined;
  if (s.modalities?.length && !st.modality?.some((m) => s.modalities!.includes(m.code ?? ''))) return undefined;
  return { series: st.numberOfSeries ?? 0, instances: st.numberOfInstances ?? 0 };
}

export const imagingSource = defineSource<typeof schema, undefined, ImagingStudy>({
  kind: 'imaging',
  schema,
  reads: 'ImagingStudy',
  lookback: 'required',
  aggregate: false,
  molarMass: false,
  oneHot: 'unused',
  neverMissing: (f) => f.source.measure !== 'days-since-last',
  compile: () => undefined,
  // Every study is considered: whether it matches is decided (and counted) per feature.
  considers: () => true,
  value(f, _c, { resources, asOf, log }) {
    const s = f.source;
    const start = lookbackStart(f.lookback!, asOf).getTime();
    const matched: { ref: string; time: number; series: number; instances: number }[] = [];
    for (const { resource: st, ref, time } of resources) {
      const m = studyMatch(s, st);
      if (!m) continue;
      if (!IMAGING_STATUSES.has(st.status)) {
        log.add(ref, 'status', f.id, `status ${st.status}`);
        continue;
      }
      if (beforeWindow(f.id, f.lookback!, ref, time, start, log)) continue;
      matched.push({ ref, time, ...m });
    }
    const refs = new Set(matched.map((m) => m.ref));
    switch (s.measure) {
      case 'count':
        return { value: matched.length, refs };
      case 'series':
        return { value: matched.reduce((n, m) => n + m.series, 0), refs };
      case 'instances':
        return { value: matched.reduce((n, m) => n + m.instances, 0), refs };
      case 'days-since-last': {
        if (!matched.length) return { value: null, refs: new Set() };
        matched.sort((a, b) => b.time - a.time || (a.ref < b.ref ? 1 : -1));
        for (const m of matched.slice(1)) log.add(m.ref, 'superseded', f.id, 'not the latest study');
        return { value: Math.floor((asOf.getTime() - matched[0].time) / 86_400_000), refs: new Set([matched[0].ref]) };
      }
    }
  },
});

import type { DiagnosticReport } from 'fhir/r4.js';
import type { MapContext, ReportAnalysis, ReportAnalyzer } from './sources/plugin.js';

/**
 * Builds the mapper's context. The report analyzer is memoised per report object, so a report read by
 * several features or several models' mappings in one batch is analysed once (the cache lets go of a
 * report with the record that holds it).
 */
export function createMapContext(options: { reportAnalyzer?: ReportAnalyzer } = {}): MapContext {
  const analyzer = options.reportAnalyzer;
  if (!analyzer) return {};
  const cache = new WeakMap<DiagnosticReport, ReportAnalysis>();
  return {
    reportAnalyzer: (report, binaries) => {
      let analysis = cache.get(report);
      if (!analysis) {
        analysis = analyzer(report, binaries);
        cache.set(report, analysis);
      }
      return analysis;
    },
  };
}

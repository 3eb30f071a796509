import type { Binary, Condition, DiagnosticReport, ImagingStudy, Observation, Patient } from 'fhir/r4.js';

/**
 * Why a fetched resource was not used. One list, used by every stage, so counts reconcile:
 * per patient and in total, fetched = used + excluded.
 */
export const EXCLUSION_REASONS = [
  'status', // entered-in-error, cancelled, registered, preliminary, unknown ...
  'data-absent', // dataAbsentReason present
  'non-numeric', // value is not a Quantity (string, CodeableConcept ...) where a number is needed
  'comparator', // valueQuantity.comparator (<5, >=200): the true value is unknown
  'unit-unconvertible', // missing unit or a unit UCUM cannot convert to the feature's unit
  'implausible', // outside the feature's plausibility range after conversion
  'outside-window', // before the feature's lookback window
  'after-as-of', // effective/issued after the as-of instant
  'no-subject', // no subject, or a subject outside the batch
  'malformed', // no usable code/date/structure
  'superseded', // valid, but the aggregate (e.g. latest) chose another value
  'unmatched', // returned by the search but matches no feature (e.g. a panel without the wanted component)
  // reports and imaging
  'empty-report',
  'bad-attachment',
  'unsupported-content-type',
  'unsafe-content',
] as const;
export type ExclusionReason = (typeof EXCLUSION_REASONS)[number];

export interface Exclusion {
  /** Relative reference, e.g. `Observation/123`. */
  reference: string;
  reason: ExclusionReason;
  /** Feature the resource was considered for, when known. */
  featureId?: string;
  /** Short human-readable detail safe to log (never a value or text from the resource). */
  detail?: string;
}

/** Everything fetched for one patient in one batch (never anything after as-of is used). */
export interface PatientRecord {
  patient: Patient;
  observations: Observation[];
  diagnosticReports: DiagnosticReport[];
  imagingStudies: ImagingStudy[];
  /** The patient's Conditions (any status: the consumers decide, src/clinical/condition-state.ts), when a model needs them. */
  conditions: Condition[];
  /** Binaries referenced by report attachments, fetched from the same server, keyed by `Binary/<id>`. */
  binaries?: Map<string, Binary>;
}

/** A model's ordered input vector for one patient, with its provenance. */
export interface FeatureRow {
  patientId: string;
  mappingId: string;
  mappingVersion: string;
  /** Expanded input column ids, in the order the model expects. */
  columns: string[];
  values: Float32Array;
  /** Per column: true when the value was imputed. */
  imputed: boolean[];
  /** Relative references of the resources whose values were used. */
  basis: string[];
  /** True when a value read from the Patient resource itself (birth date, gender) entered an input column. */
  usesPatient: boolean;
  exclusions: Exclusion[];
  /**
   * Parts dropped from resources that were still considered (a report with one undecodable attachment,
   * HTML with a removed script): counted with their reason, outside the fetched = used + excluded identity.
   */
  partIssues: Exclusion[];
  /** Counts that reconcile: fetched === used + excluded (unique resources). */
  counts: { fetched: number; used: number; excluded: number };
  /** When set, the patient cannot be scored (e.g. too little data, a required feature missing). */
  skipReason?: string;
  /** Pre-transform values per feature id (in the feature's unit), for explanations and debugging. */
  raw: Record<string, number | null>;
}

export type QualitativeRisk = 'negligible' | 'low' | 'moderate' | 'high' | 'certain';

export interface Prediction {
  patientId: string;
  modelId: string;
  modelVersion: string;
  probability: number;
  band: QualitativeRisk;
  /** The model's other outputs for this patient, by output name (e.g. CURB-65's `score`). */
  outputs?: Record<string, number>;
  /** Top contributions to the score (feature id, signed contribution on the logit scale). */
  explanation?: { featureId: string; contribution: number }[];
  /** The explanation for clinicians: each contribution with the measured value and unit behind it. */
  rationale?: PredictionRationale;
}

/** A clinician-readable rationale (src/models/rationale.ts builds it). */
export interface PredictionRationale {
  /** One sentence: "glucose 182 mg/dL raises the risk (+0.21 log-odds); ...". */
  text: string;
  items: {
    column: string;
    label: string;
    /** Measured value (log-transformed inputs in their measured unit), absent when imputed. */
    value?: number;
    unit?: string;
    imputed: boolean;
    contribution: number;
    direction: 'raises' | 'lowers' | 'does not change';
    text: string;
  }[];
}

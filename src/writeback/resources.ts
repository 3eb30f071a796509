import type { Coding, Device, Provenance, Reference, RiskAssessment } from 'fhir/r4.js';
import { horizonEnd } from '../core/time.js';
import type { Prediction } from '../core/types.js';
import { RISK_PROBABILITY_SYSTEM } from '../models/model-card.js';
import {
  MODEL_REGISTRY_SYSTEM,
  assessmentIdentifierValue,
  deviceIdentifierValue,
} from './identifiers.js';

/**
 * Pure builders for the resources the adapter writes. No I/O: same inputs, same resources.
 * Conventions (../shared/DESIGN.md): probabilityDecimal is a probability in 0..1; qualitativeRisk from
 * the HL7 risk-probability code system; every generated resource carries the AIAST security label.
 */

export const AIAST_LABEL: Coding = {
  system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue',
  code: 'AIAST',
  display: 'Artificial Intelligence asserted',
};

/** What write-back needs to know of a model (a subset of its model card). */
export interface WritebackModel {
  id: string;
  version: string;
  name?: string;
  outcome: { coding: Coding[]; text?: string };
  /** Prediction horizon as a UCUM duration, e.g. { value: 1, unit: 'a' } or { value: 30, unit: 'd' }. */
  horizon: { value: number; unit: string };
  manufacturer?: string;
}

export function buildDevice(model: WritebackModel, identifierSystem: string): Device {
  return {
    resourceType: 'Device',
    meta: { security: [AIAST_LABEL] },
    identifier: [{ system: identifierSystem, value: deviceIdentifierValue(model.id, model.version) }],
    status: 'active',
    manufacturer: model.manufacturer ?? 'fhir-ml-adapter',
    deviceName: [{ name: model.name ?? model.id, type: 'model-name' }],
    type: {
      coding: [{ system: MODEL_REGISTRY_SYSTEM, code: model.id, display: model.name ?? model.id }],
      text: 'Machine learning model',
    },
    version: [{ value: model.version }],
  };
}

export interface RiskAssessmentInput {
  model: WritebackModel;
  prediction: Prediction;
  patientId: string;
  asOf: Date;
  basis: string[];
  deviceReference: string;
  identifierSystem: string;
}

export function buildRiskAssessment(input: RiskAssessmentInput): RiskAssessment {
  const { model, prediction, patientId, asOf } = input;
  const methodCoding: Coding = { system: MODEL_REGISTRY_SYSTEM, code: model.id, version: model.version, display: model.name ?? model.id };
  const parts: string[] = [];
  if (prediction.outputs && Object.keys(prediction.outputs).length) {
    parts.push(Object.entries(prediction.outputs).map(([name, value]) => `${name} ${formatOutput(value)}`).join(', '));
  }
  if (prediction.rationale?.text) {
    // For clinicians: each contribution with the measured value and unit behind it.
    parts.push(prediction.rationale.text);
  } else if (prediction.explanation?.length) {
    parts.push(
      'largest contributions (log-odds): ' +
        prediction.explanation.map((c) => `${c.featureId} ${c.contribution >= 0 ? '+' : ''}${c.contribution.toFixed(3)}`).join(', '),
    );
  }
  const rationale = parts.length ? parts.join('; ') : undefined;
  return {
    resourceType: 'RiskAssessment',
    meta: { security: [AIAST_LABEL] },
    identifier: [
      {
        system: input.identifierSystem,
        value: assessmentIdentifierValue(model.id, model.version, patientId, asOf),
      },
    ],
    status: 'final',
    subject: { reference: `Patient/${patientId}` },
    occurrenceDateTime: asOf.toISOString(),
    code: { coding: [methodCoding], text: `${model.name ?? model.id} risk assessment` },
    method: { coding: [methodCoding], text: `${model.id} ${model.version}` },
    performer: { reference: input.deviceReference, display: `${model.id} ${model.version}` },
    basis: input.basis.map((reference): Reference => ({ reference })),
    prediction: [
      {
        outcome: model.outcome,
        // Probability in 0..1, as the R4 core examples do (ras-2 allows up to 100).
        probabilityDecimal: roundProbability(prediction.probability),
        qualitativeRisk: {
          coding: [{ system: RISK_PROBABILITY_SYSTEM, code: prediction.band, display: prediction.band }],
        },
        whenPeriod: { start: asOf.toISOString(), end: horizonEnd(asOf, model.horizon).toISOString() },
        rationale,
      },
    ],
  };
}

function formatOutput(value: number): string {
  return Number.isInteger(value) ? String(value) : String(Math.round(value * 1e6) / 1e6);
}

/**
 * float32 model outputs carry ~7 significant digits; more would suggest precision the model does not have.
 * Rounding to 1e-7 keeps the value within 1e-7 of the model output.
 */
function roundProbability(p: number): number {
  return Math.round(p * 1e7) / 1e7;
}

export function buildProvenance(args: {
  targetReference: string;
  deviceReference: string;
  sources: string[];
  recorded: Date;
  modelId: string;
  modelVersion: string;
}): Provenance {
  return {
    resourceType: 'Provenance',
    meta: { security: [AIAST_LABEL] },
    target: [{ reference: args.targetReference }],
    recorded: args.recorded.toISOString(),
    activity: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'CREATE', display: 'create' }],
      text: `Scored by ${args.modelId} ${args.modelVersion}`,
    },
    agent: [
      {
        type: {
          coding: [
            { system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'assembler', display: 'Assembler' },
          ],
        },
        who: { reference: args.deviceReference },
      },
    ],
    entity: args.sources.map((reference) => ({ role: 'source' as const, what: { reference } })),
  };
}

/**
 * Integration: the demo end to end over HTTP against the embedded FHIR server (medplum's implementation),
 * with the real ONNX model. Pins the foundation's acceptance criteria:
 * - every demo patient's written probability equals the model evaluated directly on its dataset row,
 *   including patients whose labs arrive in mmol/L and whose blood pressure arrives as a panel;
 * - every resource written validates against the R4 base StructureDefinitions;
 * - a second sync for the same as-of writes nothing new.
 */
import type { Resource } from '@medplum/fhirtypes';
import type { Provenance, RiskAssessment } from 'fhir/r4.js';
import { createApp } from '../../src/app.js';
import { runDemo, type DemoRun } from '../../src/demo/demo.js';
import { demoPatientId, demoVariant, DEMO_AS_OF } from '../../src/demo/seed.js';
import { validationIssues } from '../../src/server/repository.js';
import { runSync } from '../../src/sync/index.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../../src/writeback/identifiers.js';
import type { FhirClient } from '../../src/fhir/client.js';

async function searchAll<T extends fhir4.FhirResource>(client: FhirClient, type: string, params: Record<string, string> = {}): Promise<T[]> {
  const out: T[] = [];
  for await (const page of client.search<T>(type, { _count: '1000', ...params })) out.push(...page.resources);
  return out;
}

describe('demo sync (integration)', () => {
  let demo: DemoRun;

  beforeAll(async () => {
    demo = await runDemo(createApp({ env: {} }));
  }, 600_000);

  afterAll(async () => {
    await demo?.server.close();
  });

  it('scores every demo patient with the diabetes model and fails none', () => {
    const totals = demo.result.byModel['diabetes-progression'];
    expect(demo.result.failed).toBe(0);
    expect(totals.scored).toBe(demo.rows.length);
    expect(totals.created).toBe(demo.rows.length);
    expect(totals.fetched).toBe(totals.used + totals.excluded);
    // The seeded noise is excluded with its reason, never used.
    for (const reason of ['status', 'comparator', 'data-absent', 'implausible', 'non-numeric', 'unit-unconvertible', 'superseded'] as const) {
      expect(totals.excludedByReason[reason]).toBeGreaterThan(0);
    }
  });

  it('writes, for every demo patient, the probability of the model evaluated directly on its dataset row', async () => {
    const model = demo.models.find((m) => m.runner.card.id === 'diabetes-progression')!;
    const card = model.runner.card;
    // The dataset row -> model input, computed here independently of FHIR, UCUM and the mapping engine.
    const d = card.featureIds.length;
    const flat = new Float32Array(demo.rows.length * d);
    demo.rows.forEach((row, i) => {
      const raw: Record<string, number> = {
        age: row.age,
        'sex=male': row.sex === 2 ? 1 : 0,
        bmi: row.bmi,
        map: row.bp,
        tc: row.tc,
        ldl: row.ldl,
        hdl: row.hdl,
        tc_hdl_ratio: row.tc / row.hdl,
        ln_tg: row.ltg,
        glucose: row.glu,
      };
      card.featureIds.forEach((id, j) => {
        const std = card.preprocessing.columns[id];
        flat[i * d + j] = std ? (raw[id] - std.mean) / std.std : raw[id];
      });
    });
    const expected = await model.runner.predict(flat, demo.rows.length);

    const assessments = await searchAll<RiskAssessment>(demo.client, 'RiskAssessment', { method: `${'https://fhir-ml-adapter.dev/fhir/CodeSystem/model'}|diabetes-progression` });
    const byPatient = new Map(assessments.map((ra) => [ra.subject.reference!, ra]));
    expect(byPatient.size).toBe(demo.rows.length);
    const variantsSeen = { cholesterolInMmol: 0, glucoseInMmol: 0, bloodPressureAsPanel: 0, separateBp: 0, withNoise: 0 };
    demo.rows.forEach((_, i) => {
      const ra = byPatient.get(`Patient/${demoPatientId(i)}`);
      expect(ra).toBeDefined();
      const written = ra!.prediction![0].probabilityDecimal!;
      expect(Math.abs(written - expected[i])).toBeLessThan(1e-5);
      const v = demoVariant(i);
      if (v.cholesterolInMmol) variantsSeen.cholesterolInMmol++;
      if (v.glucoseInMmol) variantsSeen.glucoseInMmol++;
      if (v.bloodPressureAsPanel) variantsSeen.bloodPressureAsPanel++;
      else variantsSeen.separateBp++;
      if (v.withNoise) variantsSeen.withNoise++;
    });
    for (const n of Object.values(variantsSeen)) expect(n).toBeGreaterThan(10);
  });

  it('writes resources that validate against R4, with basis, performer and Provenance', async () => {
    const assessments = await searchAll<RiskAssessment>(demo.client, 'RiskAssessment');
    const provenances = await searchAll<Provenance>(demo.client, 'Provenance');
    const devices = await searchAll<fhir4.Device>(demo.client, 'Device');
    expect(devices).toHaveLength(demo.models.length);
    expect(provenances).toHaveLength(assessments.length);
    for (const r of [...assessments, ...provenances, ...devices]) {
      expect(validationIssues(r as unknown as Resource).filter((i) => i.severity === 'error')).toEqual([]);
    }
    const target = new Set(provenances.map((p) => p.target[0].reference));
    for (const ra of assessments) {
      expect(target.has(`RiskAssessment/${ra.id}`)).toBe(true);
      expect(ra.basis!.length).toBeGreaterThan(1);
      // Age and sex are inputs of both models, so the Patient is basis too.
      expect(ra.basis!.map((b) => b.reference)).toContain(ra.subject.reference);
      expect(ra.performer!.reference).toMatch(/^Device\//);
    }
  });

  it('writes nothing new when the same as-of is synced again', async () => {
    const before = {
      ra: (await searchAll(demo.client, 'RiskAssessment')).length,
      prov: (await searchAll(demo.client, 'Provenance')).length,
      dev: (await searchAll(demo.client, 'Device')).length,
    };
    const again = await runSync(demo.client, demo.models, { asOf: DEMO_AS_OF, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, explain: false });
    for (const totals of Object.values(again.byModel)) {
      expect(totals.created).toBe(0);
      expect(totals.alreadyPresent).toBe(totals.scored);
    }
    expect((await searchAll(demo.client, 'RiskAssessment')).length).toBe(before.ra);
    expect((await searchAll(demo.client, 'Provenance')).length).toBe(before.prov);
    expect((await searchAll(demo.client, 'Device')).length).toBe(before.dev);
  }, 300_000);
});

import { careReadScope } from './care-read-scope.js';
import { loadCarePlanDefinitions, type CarePlanDefinitions } from './definitions.js';
import { AS_OF, curb65Context, diabetesContext } from './testing/fixtures.js';

const SCT = 'http://snomed.info/sct';
const LOINC = 'http://loinc.org';

let diabetes: CarePlanDefinitions;
let curb65: CarePlanDefinitions;
beforeAll(() => {
  diabetes = loadCarePlanDefinitions('diabetes-progression')!;
  curb65 = loadCarePlanDefinitions('curb65')!;
});

describe('careReadScope', () => {
  it('collects the applicable activities\' codes and reads results from the earliest window start', () => {
    // High band, BMI 32, LDL 171, MAP 110: HbA1c (3 mo), dietitian (1 a), lipid review (3 mo), BP review (3 mo).
    const scope = careReadScope([{ definitions: diabetes, context: diabetesContext() }], AS_OF);
    expect(scope.withActivities).toEqual([true]);
    expect(scope.codes).toEqual([
      { system: SCT, code: '43396009' },
      { system: LOINC, code: '4548-4' },
      { system: SCT, code: '103699006' },
      { system: SCT, code: '182836005' },
      { system: SCT, code: '46973005' },
    ]);
    expect(scope.resultsSince).toEqual(new Date('2024-06-30T00:00:00Z'));
  });

  it('takes only what applies: without the referral, the earliest window is three months', () => {
    const scope = careReadScope([{ definitions: diabetes, context: diabetesContext({}, { bmi: { value: 24, unit: 'kg/m2' } }) }], AS_OF);
    expect(scope.codes.map((c) => c.code)).not.toContain('103699006');
    expect(scope.resultsSince).toEqual(new Date('2025-03-30T00:00:00Z'));
  });

  it('unions several assessments, each code once, and says which have something to propose', () => {
    const nothing = diabetesContext({ band: 'low' }, { bmi: { value: 24, unit: 'kg/m2' }, ldl: { value: 90, unit: 'mg/dL' }, map: { value: 90, unit: 'mm[Hg]' } });
    const scope = careReadScope(
      [
        { definitions: diabetes, context: nothing },
        { definitions: curb65, context: curb65Context(4) },
        { definitions: curb65, context: curb65Context(3) },
      ],
      AS_OF,
    );
    expect(scope.withActivities).toEqual([false, true, true]);
    // Hospital care and ICU assessment; hospital care's code appears in both assessments, listed once.
    expect(scope.codes).toEqual([
      { system: SCT, code: '32485007' },
      { system: SCT, code: '306106002' },
    ]);
    // No CURB-65 activity has a window: results never satisfy them, so none are read.
    expect(scope.resultsSince).toBeUndefined();
  });

  it('reads nothing for no assessments', () => {
    expect(careReadScope([], AS_OF)).toEqual({ withActivities: [], codes: [] });
  });
});

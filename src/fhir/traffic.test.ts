import { newTally, recordExchange, tallied } from './traffic.js';

const exchange = (attempt: number, op = 'search') => ({ op, resourceType: 'Observation', attempt, outcome: 'ok' as const, durationMs: 1 });

describe('request tallies', () => {
  it('count the exchanges of their own work only, nested tallies counting into the enclosing one', async () => {
    const run = newTally();
    const batch = newTally();
    const other = newTally();
    await Promise.all([
      tallied(run, async () => {
        recordExchange(exchange(1));
        await tallied(batch, async () => {
          await new Promise((r) => setTimeout(r, 5));
          recordExchange(exchange(1));
          recordExchange(exchange(2)); // a retry
        });
      }),
      tallied(other, async () => {
        await new Promise((r) => setTimeout(r, 1));
        recordExchange(exchange(1));
      }),
    ]);
    recordExchange(exchange(1)); // outside any tally: counted nowhere
    expect(run).toEqual({ requests: 3, retries: 1 });
    expect(batch).toEqual({ requests: 2, retries: 1 });
    expect(other).toEqual({ requests: 1, retries: 0 });
  });

  it('leave out the token and discovery requests of SMART auth', async () => {
    const t = newTally();
    await tallied(t, async () => {
      recordExchange(exchange(1, 'token'));
      recordExchange(exchange(1, 'discovery'));
    });
    expect(t.requests).toBe(0);
  });
});

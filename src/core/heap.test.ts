import { boundHeapGrowth, HEAP_GROWING_PERCENT } from './heap.js';

describe('boundHeapGrowth', () => {
  it('leaves a heap growing percentage given to node alone', () => {
    expect(boundHeapGrowth(HEAP_GROWING_PERCENT, ['--heap-growing-percent=80'])).toBe(false);
    expect(boundHeapGrowth(HEAP_GROWING_PERCENT, ['--heap_growing_percent', '80'])).toBe(false);
  });

  it('sets it otherwise', () => {
    expect(boundHeapGrowth(HEAP_GROWING_PERCENT, ['--enable-source-maps'])).toBe(true);
  });
});

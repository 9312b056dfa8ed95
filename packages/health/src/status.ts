/** Accepted HTTP statuses: `200-399`, `200,301-302`, `2xx`. */
export type StatusRanges = ReadonlyArray<readonly [number, number]>;

export const DEFAULT_STATUS: StatusRanges = [[200, 399]];

export class StatusSpecError extends Error {
  constructor(input: string) {
    super(`invalid status list "${input}" (expected e.g. 200-399 or 200,301-302 or 2xx)`);
    this.name = 'StatusSpecError';
  }
}

const ITEM = /^(\d{3})(?:-(\d{3}))?$/;
const CLASS = /^([1-5])xx$/;

export function parseStatusRanges(input: string | ReadonlyArray<readonly [number, number]>): StatusRanges {
  if (typeof input !== 'string') {
    for (const [low, high] of input) if (!validRange(low, high)) throw new StatusSpecError(JSON.stringify(input));
    return input.map(([low, high]) => [low, high] as const);
  }
  const ranges: Array<readonly [number, number]> = [];
  for (const raw of input.split(',')) {
    const item = raw.trim().toLowerCase();
    const range = ITEM.exec(item);
    if (range) {
      const low = Number(range[1]);
      const high = range[2] === undefined ? low : Number(range[2]);
      if (!validRange(low, high)) throw new StatusSpecError(input);
      ranges.push([low, high]);
      continue;
    }
    const klass = CLASS.exec(item);
    if (!klass) throw new StatusSpecError(input);
    ranges.push([Number(klass[1]) * 100, Number(klass[1]) * 100 + 99]);
  }
  return ranges;
}

function validRange(low: number, high: number): boolean {
  return Number.isInteger(low) && Number.isInteger(high) && low >= 100 && high <= 599 && low <= high;
}

export function statusMatches(ranges: StatusRanges, status: number): boolean {
  for (const [low, high] of ranges) if (status >= low && status <= high) return true;
  return false;
}

/** `200-399`, `200,301-302`: the form people wrote. */
export function formatStatusRanges(ranges: StatusRanges): string {
  return ranges.map(([low, high]) => (low === high ? String(low) : `${low}-${high}`)).join(',');
}

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_RETRIES, retryAllowed, type RetryState } from '../src/index.js';

const base: RetryState = { kind: 'connect', attempts: 1, elapsedMs: 0, method: 'GET', hasBody: false, bodySent: false, responseStarted: false };
const allowed = (overrides: Partial<RetryState>) => retryAllowed({ ...base, ...overrides }, DEFAULT_RETRIES);

test('a failed connect moves any request on, unless its body was being sent', () => {
  assert.equal(allowed({ method: 'POST', hasBody: true }), true);
  assert.equal(allowed({ method: 'POST', hasBody: true, bodySent: true }), false);
});

test('after the request went out, only idempotent requests without a body are replayed', () => {
  for (const kind of ['timeout', 'reset', 'status', 'bad'] as const) {
    assert.equal(allowed({ kind, method: 'GET' }), true, kind);
    assert.equal(allowed({ kind, method: 'DELETE' }), true, kind);
    assert.equal(allowed({ kind, method: 'POST' }), false, kind);
    assert.equal(allowed({ kind, method: 'PATCH' }), false, kind);
    assert.equal(allowed({ kind, method: 'PUT', hasBody: true }), false, kind);
  }
});

test('retries stop at the attempt count, the time budget, or once the client saw a response', () => {
  assert.equal(allowed({ attempts: 3 }), false);
  assert.equal(allowed({ elapsedMs: 10_000 }), false);
  assert.equal(allowed({ kind: 'status', responseStarted: true }), false);
  assert.equal(retryAllowed({ ...base, kind: 'timeout' }, { ...DEFAULT_RETRIES, onTimeout: false }), false);
});

test('a body kept in the replay buffer no longer blocks a retry of an idempotent request', () => {
  for (const kind of ['timeout', 'reset', 'status', 'bad'] as const) {
    assert.equal(allowed({ kind, method: 'PUT', hasBody: true, bodySent: true, bodyReplayable: true }), true, kind);
    assert.equal(allowed({ kind, method: 'POST', hasBody: true, bodySent: true, bodyReplayable: true }), false, kind);
  }
  assert.equal(allowed({ kind: 'connect', method: 'POST', hasBody: true, bodySent: true, bodyReplayable: true }), true);
});

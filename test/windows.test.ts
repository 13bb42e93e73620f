import test from 'ava';
import { Jobs } from '../daemon/schedule/jobs.js';
import { DEFAULTS, type Config } from '../daemon/config/config.js';
import { TokenBucket } from '../daemon/common/limits.js';
import { createLogger } from '../daemon/common/log.js';
import { inAnyWindow, inWindow, parseWindow } from '../daemon/schedule/windows.js';
import { ShoalError } from '../daemon/errors.js';

const at = (hh: number, mm = 0) => new Date(2026, 10, 22, hh, mm);

test('daily windows, including ones that wrap past midnight', (t) => {
  const night = parseWindow('22:00-06:00');
  t.true(inWindow(night, at(23, 30)));
  t.true(inWindow(night, at(5, 59)));
  t.false(inWindow(night, at(6, 0)));
  t.false(inWindow(night, at(12)));
  const office = parseWindow('08:00-18:00');
  t.true(inWindow(office, at(8)));
  t.false(inWindow(office, at(18)));
  t.true(inAnyWindow([], at(3)), 'no windows: always open');
  t.true(inAnyWindow([office, night], at(2)));
  for (const bad of ['8-18', '25:00-01:00', '10:00-10:00', '10:60-11:00']) t.throws(() => parseWindow(bad), { instanceOf: ShoalError }, bad);
});

test('the upload limit follows the schedule and falls back to uploadMaxBytesPerSec', (t) => {
  const bucket = new TokenBucket(0);
  const config: Config = { ...DEFAULTS, uploadMaxBytesPerSec: 50 << 20, uploadSchedule: [{ window: '08:00-18:00', bytesPerSec: 2 << 20 }, { window: '22:00-02:00', bytesPerSec: 0 }] };
  const jobs = new Jobs({ config, uploadBucket: bucket, log: createLogger('error', () => {}), fetches: undefined as never, store: undefined as never, state: undefined as never });
  t.is(jobs.applyUploadRate(at(9)), 2 << 20);
  t.true(bucket.limited);
  t.is(jobs.applyUploadRate(at(20)), 50 << 20);
  t.is(jobs.applyUploadRate(at(23)), 0, 'unlimited at night');
  t.false(bucket.limited);
});
